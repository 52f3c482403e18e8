"""VESSA: a reference-guided, vision-language segmentation assistant for semi-supervised training."""

from vessa.errors import install_excepthook

__version__ = "0.1.0"

# `python -m monai.bundle run ...` imports vessa from the configs: a failing config expression then ends the
# command with our error's message as its last line instead of MONAI's wrapper around it.
install_excepthook()
