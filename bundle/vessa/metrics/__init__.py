"""Segmentation metrics of the SSL4MIS (ACDC) and UA-MT (LA) evaluation protocols."""

from vessa.metrics.segmentation import METRICS, case_metrics, format_metrics_table, summarize

__all__ = ["METRICS", "case_metrics", "summarize", "format_metrics_table"]
