"""The one interface every stage-2 pseudo-label provider (assistant) implements."""

from __future__ import annotations

import abc

import torch

__all__ = ["Assistant"]


class Assistant(abc.ABC):
    """Turns a student's prediction on unlabelled images into pseudo-labels and per-pixel weights."""

    @abc.abstractmethod
    def refine(
        self, images: torch.Tensor, student_probs: torch.Tensor, meta: dict | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, C, H, W) in [0, 1]; student_probs (B, K+1, H, W) softmax (channel 0 background).

        Returns pseudo-labels (B, H, W) long class indices 0..K and weights (B, H, W) float in [0, 1].
        """

    def update(self, images: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> dict:
        """Optional online learning from confident pseudo-labels; the default does nothing and returns {}."""
        return {}
