"""Regroup loaded slices into volumes for per-volume evaluation."""

from __future__ import annotations

import numpy as np


def group_volumes(slices: list[dict]) -> list[dict]:
    """Group :func:`vessa.data.load_slices` output by case id, slices in order.

    Returns one dict per case: ``id``, ``images`` (list of (C, H, W)), ``positions`` (relative slice
    positions), and ``label`` ((H, W) for a 2D image, (H, W, D) for a volume) when the slices carry labels.
    """
    cases: dict[str, list[dict]] = {}
    for s in slices:
        cases.setdefault(s["id"], []).append(s)
    volumes = []
    for case, items in cases.items():
        items = sorted(items, key=lambda s: s.get("slice_index", 0))
        vol = {"id": case, "images": [s["image"] for s in items], "positions": [s.get("slice_pos", 0.5) for s in items]}
        if "label" in items[0]:
            labels = [s["label"] for s in items]
            vol["label"] = labels[0] if len(items) == 1 else np.stack(labels, axis=-1)
        volumes.append(vol)
    return volumes


def first_item(batch: list):
    """Collate function for loaders that hand over one volume at a time, unbatched."""
    return batch[0]
