"""VESSA: a reference-guided, vision-language segmentation assistant for semi-supervised training."""

__version__ = "0.1.0"
