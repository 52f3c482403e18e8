"""Cached pseudo-labels: the assistant refines each unlabelled image at most once every N iterations.

Entries live in the frame of the un-augmented image (``u_plain``) and are warped into each iteration's
weak view with the view's affine (``u_theta``), so one refinement serves every later augmentation
of the same image until it is refreshed.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def warp(maps: torch.Tensor, theta: torch.Tensor, mode: str) -> torch.Tensor:
    """(B, H, W) maps of the un-augmented images resampled into the augmented views given by ``theta`` (B, 2, 3)."""
    grid = F.affine_grid(theta.to(maps.device, torch.float32), [maps.shape[0], 1, *maps.shape[-2:]], align_corners=False)
    return F.grid_sample(maps[:, None].float(), grid, mode=mode, padding_mode="border", align_corners=False)[:, 0]


class PseudoLabelCache:
    """Pseudo-label and weight per unlabelled index, with the iteration it was computed at.

    Args:
        refresh_every: an entry older than this many iterations is recomputed.
    """

    def __init__(self, refresh_every: int) -> None:
        if refresh_every < 1:
            raise ValueError(f"refresh_every must be >= 1 (got {refresh_every}); set it to 0 in the config to turn the cache off")
        self.refresh_every = refresh_every
        self.entries: dict[int, tuple[torch.Tensor, torch.Tensor, int]] = {}
        self.refinements = 0

    def stale(self, indices: list[int], iteration: int) -> list[int]:
        """Positions in ``indices`` whose entry is missing or due for a refresh (an index repeated in the batch once)."""
        rows, picked = [], set()
        for i, u in enumerate(indices):
            if u not in picked and (u not in self.entries or iteration - self.entries[u][2] >= self.refresh_every):
                rows.append(i)
                picked.add(u)
        return rows

    def lookup(
        self,
        batch: dict,
        iteration: int,
        refine_plain: Callable[[torch.Tensor, list[int]], tuple[torch.Tensor, torch.Tensor]],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pseudo-labels and weights of the batch's weak views; ``refine_plain(images, rows)`` refines the
        un-augmented images of the given batch rows (student prediction + assistant) for stale entries."""
        indices = [int(u) for u in batch["u_index"]]
        rows = self.stale(indices, iteration)
        if rows:
            labels, weights = refine_plain(batch["u_plain"][rows], rows)
            self.refinements += len(rows)
            for r, lab, w in zip(rows, labels, weights):
                self.entries[indices[r]] = (lab.cpu(), w.cpu(), iteration)
        labels = torch.stack([self.entries[u][0] for u in indices]).to(batch["u_image"].device)
        weights = torch.stack([self.entries[u][1] for u in indices]).to(batch["u_image"].device)
        return warp(labels, batch["u_theta"], "nearest").long(), warp(weights, batch["u_theta"], "bilinear")
