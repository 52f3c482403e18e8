"""Evaluation: validation during training, the published test protocols, diagnostics and figures."""
