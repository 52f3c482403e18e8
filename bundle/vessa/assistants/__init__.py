"""Stage-2 pseudo-label providers behind one interface: VESSA, SAM2 generalist (SemiSAM+), ..."""

from vessa.assistants.base import Assistant
from vessa.assistants.generalist_prompts import box_from_mask, prompts_from_mask
from vessa.assistants.sam2_generalist import Sam2Generalist

__all__ = ["Assistant", "Sam2Generalist", "prompts_from_mask", "box_from_mask"]
