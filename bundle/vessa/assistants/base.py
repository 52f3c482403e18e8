"""The one interface every stage-2 pseudo-label provider (assistant) implements."""

from __future__ import annotations

import abc

import torch

__all__ = ["Assistant"]


def _minmax_slices(x: torch.Tensor) -> torch.Tensor:
    """Each (C, H, W) image of a batch min-max scaled to [0, 1] on its own (the assistants see slices as stage 1 did)."""
    flat = x.flatten(1)
    lo, hi = flat.min(1).values, flat.max(1).values
    scale = (hi - lo).clamp(min=1e-6)
    return (x - lo.view(-1, 1, 1, 1)) / scale.view(-1, 1, 1, 1)


class Assistant(abc.ABC):
    """Turns a student's prediction on unlabelled images into pseudo-labels and per-pixel weights.

    Assistants segment 2D images; a 3D batch goes through them slice by slice along the last axis
    (:meth:`refine_volume`), every ``slice_stride``-th slice (the others keep the student's label with weight 0).
    An assistant may give more than one target (:meth:`refine_all`); the first is the pseudo-label.
    """

    slice_stride: int = 1
    slice_batch: int = 32

    @abc.abstractmethod
    def refine(
        self, images: torch.Tensor, student_probs: torch.Tensor, meta: dict | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, C, H, W) in [0, 1]; student_probs (B, K+1, H, W) softmax (channel 0 background).

        Returns pseudo-labels (B, H, W) long class indices 0..K and weights (B, H, W) float in [0, 1].
        """

    def refine_all(self, images: torch.Tensor, student_probs: torch.Tensor, meta: dict | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every target this assistant gives for the unlabelled loss of a 2D batch, the pseudo-label first.

        Default: the one :meth:`refine` result; an assistant with a second target (text_vlm's text-guided mask) overrides it.
        """
        return [self.refine(images, student_probs, meta)]

    def targets(self, images: torch.Tensor, student_probs: torch.Tensor, meta: dict | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """:meth:`refine_all` for 2D batches, slice by slice for 3D ones (B, C, X, Y, Z)."""
        if images.dim() == 5:
            return self.refine_volume(images, student_probs, meta)
        return self.refine_all(images, student_probs, meta)

    def __call__(self, images: torch.Tensor, student_probs: torch.Tensor, meta: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The pseudo-labels and weights (the first of :meth:`targets`)."""
        return self.targets(images, student_probs, meta)[0]

    def refine_volume(self, images: torch.Tensor, student_probs: torch.Tensor, meta: dict | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Slice-by-slice :meth:`refine_all` of 3D patches; ``meta["slice_pos"]`` may hold (B, Z) relative slice positions.

        Each slice is min-max scaled on its own before the assistant sees it.
        """
        b, c, x, y, depth = images.shape
        zs = torch.arange(0, depth, max(1, self.slice_stride), device=images.device)
        img2d = images[..., zs].permute(0, 4, 1, 2, 3).reshape(-1, c, x, y)
        prob2d = student_probs[..., zs].permute(0, 4, 1, 2, 3).reshape(-1, student_probs.shape[1], x, y)
        positions = (meta or {}).get("slice_pos")
        pos2d = torch.as_tensor(positions).reshape(b, depth)[:, zs.cpu()].reshape(-1) if positions is not None else None
        parts = []
        for start in range(0, len(img2d), self.slice_batch):
            part = slice(start, start + self.slice_batch)
            parts.append(self.refine_all(_minmax_slices(img2d[part]), prob2d[part], {"slice_pos": pos2d[part] if pos2d is not None else None}))
        out = []
        for n in range(len(parts[0])):
            labels = student_probs.max(1).indices
            weights = torch.zeros(labels.shape, device=images.device)
            labels[..., zs] = torch.cat([p[n][0] for p in parts]).reshape(b, len(zs), x, y).permute(0, 2, 3, 1)
            weights[..., zs] = torch.cat([p[n][1] for p in parts]).reshape(b, len(zs), x, y).permute(0, 2, 3, 1).to(weights.dtype)
            out.append((labels, weights))
        return out

    def train_step(self, batch: dict) -> dict:
        """Optional learning from the labelled part of each stage-2 batch (``image``, ``label``); returns logged values.
        The default does nothing and returns {}."""
        return {}

    def update(self, images: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, meta: dict | None = None) -> dict:
        """Optional online learning from the student's confident predictions (``labels`` where ``weights`` > 0);
        returns logged values. The default does nothing and returns {}."""
        return {}

    def state_dict(self) -> dict:
        """What a resumed run needs besides the student (an assistant that learns online has weights to keep)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""
