"""SemiSAM+'s use of frozen generalists: prompts from the student's mask, answers merged into pseudo-labels.

Merge (per pixel): label = argmax over ``[1 - max_k p_k, p_1, ..., p_K]`` (background scores the
absence of every prompted class; ties go to the lower index, i.e. background first). Weight = SemiSAM+
agreement between generalists/draws: ``1 - 2 * std`` over the S = models x draws binary answers of
the winning channel (the background channel's per-answer value is ``1 - max_k mask_k``); a binary
variable's std is at most 0.5, so the weight lies in [0, 1], and it is 1 with a single model and draw.

Classes whose student mask has fewer than ``min_area`` pixels are not prompted (too little to
prompt from, and SemiSAM+ asks the generalist only where the specialist found something): pixels
where the student predicts such a class keep the student's label with weight 0. An image with no
prompted class therefore gets background everywhere with weight 1, except those weight-0 pixels.
"""

from __future__ import annotations

import abc

import numpy as np
import torch
import torch.nn.functional as F

from vessa.assistants.base import Assistant
from vessa.errors import DataError

__all__ = ["PromptedGeneralist"]


class PromptedGeneralist(Assistant):
    """A SemiSAM+ assistant: frozen generalists answer prompts drawn from the student's mask of each class; the
    answers are merged as the module docstring says. Subclasses say how their generalists answer (:meth:`_answers`)
    and set ``min_area``."""

    min_area: int = 10

    @abc.abstractmethod
    def _answers(self, image: torch.Tensor, probs: torch.Tensor, student: np.ndarray, prompted: list[int]) -> torch.Tensor:
        """Binary masks (P, S, H, W) of the prompted classes of one (C, H, W) image: S answers per class (generalists x draws)."""

    @torch.no_grad()
    def refine(
        self, images: torch.Tensor, student_probs: torch.Tensor, meta: dict | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise DataError(f"this generalist expects (B, 1|3, H, W) images, got shape {tuple(images.shape)}.")
        if student_probs.ndim != 4 or student_probs.shape[0] != images.shape[0] or student_probs.shape[1] < 2:
            raise DataError(
                f"this generalist expects (B, K+1, H, W) student probabilities for images {tuple(images.shape)}, "
                f"got {tuple(student_probs.shape)}."
            )
        b, _, h, w = images.shape
        probs = student_probs.detach().float()
        if tuple(probs.shape[-2:]) != (h, w):
            probs = F.interpolate(probs, size=(h, w), mode="bilinear", align_corners=False)
        probs = probs.cpu()
        num_classes = probs.shape[1]
        student = probs.max(1).indices  # (B, H, W)
        labels = torch.zeros((b, h, w), dtype=torch.long)
        weights = torch.ones((b, h, w), dtype=torch.float32)
        for i in range(b):
            areas = torch.bincount(student[i].flatten(), minlength=num_classes)
            prompted = [k for k in range(1, num_classes) if int(areas[k]) >= self.min_area]
            small = [k for k in range(1, num_classes) if 0 < int(areas[k]) < self.min_area]
            if prompted:
                answers = self._answers(images[i], probs[i], student[i].numpy(), prompted)  # (P, S, H, W)
                scores = torch.cat([1 - answers.mean(1).amax(0, keepdim=True), answers.mean(1)])  # (1+P, H, W)
                samples = torch.cat([1 - answers.amax(0, keepdim=True), answers])  # (1+P, S, H, W)
                win = scores.max(0).indices  # index into [background, *prompted]
                spread = samples.std(1, unbiased=False)  # (1+P, H, W), <= 0.5 for binary answers
                wt = (1 - 2 * spread.gather(0, win[None])[0]).clamp(0, 1)
                lut = torch.tensor([0, *prompted], dtype=torch.long)
                labels[i] = lut[win]
                weights[i] = wt
            for k in small:
                where = student[i] == k
                labels[i][where] = k
                weights[i][where] = 0.0
        return labels.to(images.device), weights.to(images.device)
