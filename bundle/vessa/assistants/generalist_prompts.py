"""Point and box prompts for a frozen generalist (SAM2) from a student's binary mask, as in SemiSAM/SemiSAM+.

Choices (SemiSAM+ samples prompts from the specialist's prediction; we follow its recipe):

* **Interior points.** The mask is split into 8-connected components (``scipy.ndimage.label``).
  For each of the ``num_interior`` largest components (largest first) the positive point is the
  component's interior-most pixel: the argmax of its Euclidean distance transform, computed on the
  component padded with one background pixel so the image border counts as an edge. Ties go to the
  first pixel in raster order, so these points do not depend on the random generator.
* **Other positives.** The remaining ``num_points - (number of interior points)`` positives are drawn
  uniformly without replacement from the other mask pixels (all components); fewer if the mask is
  smaller.
* **Negatives.** ``num_negative`` points with label 0 are drawn uniformly from the background pixels
  inside the mask's bounding box dilated by ``margin = max(3, 10% of the box's longer side)``
  (clipped to the image): background near the object, where a generalist most needs to be told
  where to stop. If that region has no background the whole image's background is used; none if the
  mask covers the whole image.

Coordinates are (x, y) pixel positions, as ``SAM2ImagePredictor.predict`` takes them.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
import torch

from vessa.prompts import mask_boxes

__all__ = ["prompts_from_mask", "box_from_mask"]

_EIGHT = np.ones((3, 3), dtype=bool)


def _empty() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((0, 2), dtype=np.float32), np.zeros((0,), dtype=np.int32)


def box_from_mask(mask: np.ndarray) -> np.ndarray | None:
    """The tight box ``[x0, y0, x1, y1]`` (float32, inclusive pixel indices) of a 2D mask; None when empty."""
    box = mask_boxes(torch.from_numpy(np.asarray(mask, dtype=bool))[None])[0]
    return None if torch.isnan(box).any() else box.numpy().astype(np.float32)


def prompts_from_mask(
    mask: np.ndarray,
    num_points: int = 5,
    num_interior: int = 1,
    num_negative: int = 1,
    rng: np.random.Generator | int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Prompts for a (H, W) boolean mask: ``coords`` (N, 2) float32 as (x, y) and ``labels`` (N,) int32.

    Positives (label 1) come first: interior-most points of the largest components, then uniform
    samples from the rest of the mask; then negatives (label 0) from nearby background (see the
    module docstring). An empty mask gives empty arrays of shapes (0, 2) and (0,).
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"prompts_from_mask expects a 2D (H, W) mask, got shape {mask.shape}.")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    num_points, num_interior, num_negative = max(int(num_points), 0), max(int(num_interior), 0), max(int(num_negative), 0)
    comps, n = ndimage.label(mask, structure=_EIGHT)
    if n == 0:
        return _empty()

    positives: list[tuple[int, int]] = []  # (y, x)
    sizes = np.bincount(comps.ravel())[1:]
    order = np.argsort(-sizes, kind="stable")  # largest first; ties by label order
    for c in order[: min(num_interior, num_points, n)]:
        comp = np.pad(comps == c + 1, 1)
        dist = ndimage.distance_transform_edt(comp)
        y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
        positives.append((int(y) - 1, int(x) - 1))

    extra = num_points - len(positives)
    if extra > 0:
        rest = mask.copy()
        for y, x in positives:
            rest[y, x] = False
        ys, xs = np.nonzero(rest)
        if ys.size:
            pick = rng.choice(ys.size, size=min(extra, ys.size), replace=False)
            positives.extend(zip(ys[pick].tolist(), xs[pick].tolist()))

    negatives: list[tuple[int, int]] = []
    if num_negative > 0:
        h, w = mask.shape
        x0, y0, x1, y1 = box_from_mask(mask).astype(int)
        margin = max(3, int(round(0.1 * max(x1 - x0 + 1, y1 - y0 + 1))))
        near = np.zeros_like(mask)
        near[max(y0 - margin, 0) : min(y1 + margin, h - 1) + 1, max(x0 - margin, 0) : min(x1 + margin, w - 1) + 1] = True
        near &= ~mask
        if not near.any():
            near = ~mask
        ys, xs = np.nonzero(near)
        if ys.size:
            pick = rng.choice(ys.size, size=min(num_negative, ys.size), replace=False)
            negatives.extend(zip(ys[pick].tolist(), xs[pick].tolist()))

    points = positives + negatives
    if not points:
        return _empty()
    coords = np.array([(x, y) for y, x in points], dtype=np.float32)
    labels = np.array([1] * len(positives) + [0] * len(negatives), dtype=np.int32)
    return coords, labels
