"""Simulated noisy prompts for stage-1 episodes: what an imperfect student would hand the assistant."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def perturb_masks(masks: torch.Tensor, generator: torch.Generator, max_radius: int = 4, max_shift: float = 0.06) -> torch.Tensor:
    """Degrade binary masks (N, S, S) as an imperfect student would: dilation or erosion, shift, coarse
    resampling and blob noise, all scaled by one severity drawn per call, so that prompts range from
    nearly right to badly wrong."""
    n, s, _ = masks.shape
    severity = float(torch.rand(1, generator=generator))
    out = masks.float().unsqueeze(1).clone()
    for i in range(n):
        r = int(torch.randint(0, round(severity * max_radius) + 1, (1,), generator=generator))
        if r > 0:
            k = 2 * r + 1
            if torch.rand(1, generator=generator) < 0.5:
                out[i] = F.max_pool2d(out[i : i + 1], k, 1, r)[0]
            else:
                out[i] = -F.max_pool2d(-out[i : i + 1], k, 1, r)[0]
    shift = ((torch.rand(n, 2, generator=generator) * 2 - 1) * severity * max_shift * 2).float()
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(out.shape), align_corners=False)
    out = F.grid_sample(out, grid, mode="nearest", align_corners=False)
    coarse = 1 + int(torch.randint(0, round(severity * 15) + 1, (1,), generator=generator))
    out = F.interpolate(F.adaptive_avg_pool2d(out, max(2, s // coarse)), size=(s, s), mode="bilinear", align_corners=False)
    noise = F.interpolate(torch.rand(n, 1, 8, 8, generator=generator), size=(s, s), mode="bilinear", align_corners=False)
    flip = (noise > 1.0 - 0.07 * severity).float()
    out = (out + flip * (1 - 2 * out)).clamp(0, 1)
    return out[:, 0]


def random_clicks(masks: torch.Tensor, generator: torch.Generator, max_clicks: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Random foreground clicks inside and background clicks outside each mask (N, S, S).

    Returns coords (N, 2 * max_clicks, 2) as (x, y) and labels (N, 2 * max_clicks) with -1 padding.
    """
    n, s, _ = masks.shape
    coords = torch.zeros(n, 2 * max_clicks, 2)
    labels = -torch.ones(n, 2 * max_clicks)
    for i in range(n):
        for j, region in enumerate((masks[i] > 0.5, masks[i] <= 0.5)):
            idx = region.flatten().nonzero().flatten()
            if idx.numel() == 0:
                continue
            count = int(torch.randint(0, max_clicks + 1, (1,), generator=generator))
            pick = idx[torch.randint(0, idx.numel(), (count,), generator=generator)]
            sl = slice(j * max_clicks, j * max_clicks + count)
            coords[i, sl, 0] = (pick % s).float()
            coords[i, sl, 1] = (pick // s).float()
            labels[i, sl] = 1.0 if j == 0 else 0.0
    return coords, labels


def corrective_clicks(pred: torch.Tensor, truth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One click per mask (N, S, S) that corrects a prediction, as an annotator would (and SAM's training does):
    at the interior-most pixel of the larger error, foreground (1) where the mask was missed, background (0)
    where it spilled over; label -1 where the prediction is right.

    Returns coords (N, 1, 2) as (x, y) and labels (N, 1).
    """
    from scipy.ndimage import distance_transform_edt

    n, _, w = pred.shape
    coords, labels = torch.zeros(n, 1, 2), -torch.ones(n, 1)
    missed, spilled = (truth & ~pred).numpy(), (pred & ~truth).numpy()
    for i in range(n):
        error, label = (missed[i], 1.0) if missed[i].sum() >= spilled[i].sum() else (spilled[i], 0.0)
        if not error.any():
            continue
        depth = distance_transform_edt(np.pad(error, 1))[1:-1, 1:-1]
        y, x = divmod(int(depth.argmax()), w)
        coords[i, 0] = torch.tensor([float(x), float(y)])
        labels[i, 0] = label
    return coords, labels


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight boxes (N, 4) ``[x0, y0, x1, y1]`` (inclusive pixel indices) of (N, H, W) masks (> 0.5); NaN rows for empty masks."""
    m = masks > 0.5
    _, h, w = m.shape
    rows, cols = m.any(2), m.any(1)
    ys, xs = torch.arange(h, device=m.device), torch.arange(w, device=m.device)
    boxes = torch.stack(
        [
            torch.where(cols, xs, w).min(1).values,
            torch.where(rows, ys, h).min(1).values,
            torch.where(cols, xs, -1).max(1).values,
            torch.where(rows, ys, -1).max(1).values,
        ],
        dim=1,
    ).float()
    boxes[~rows.any(1)] = float("nan")
    return boxes


def jittered_boxes(masks: torch.Tensor, generator: torch.Generator, jitter: float = 0.1) -> torch.Tensor:
    """Bounding boxes (N, 4) of each mask with each side moved by up to ``jitter`` of the box size; NaN for empty masks."""
    s = masks.shape[-1]
    boxes = mask_boxes(masks)
    size = torch.stack([boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1] * 2, dim=1)
    return (boxes + (torch.rand(boxes.shape, generator=generator) * 2 - 1) * jitter * size).clamp(0, s - 1)


def simulate_prompts(
    masks: torch.Tensor, generator: torch.Generator, p_coarse: float = 0.5, p_clicks: float = 0.3, p_box: float = 0.3, max_clicks: int = 3
) -> dict[str, torch.Tensor | None]:
    """Draw the optional prompts of one batch of episodes from the true class masks (B, K, S, S).

    Each prompt type is used for the whole batch with its probability, so the assistant learns to work
    with and without each of them. Returns keyword arguments for :meth:`VessaAssistant.forward`.
    """
    b, k, s, _ = masks.shape
    flat = masks.flatten(0, 1)
    out: dict[str, torch.Tensor | None] = {"coarse_mask": None, "points": None, "point_labels": None, "boxes": None}
    if torch.rand(1, generator=generator) < p_coarse:
        out["coarse_mask"] = perturb_masks(flat, generator).view(b, k, s, s)
    if torch.rand(1, generator=generator) < p_clicks:
        coords, labels = random_clicks(flat, generator, max_clicks)
        out["points"], out["point_labels"] = coords.view(b, k, -1, 2), labels.view(b, k, -1)
    if torch.rand(1, generator=generator) < p_box:
        out["boxes"] = jittered_boxes(flat, generator).view(b, k, 4)
    return out
