"""2D samples from 2D images and 3D volumes (slice-wise training, as the ACDC protocol)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from vessa.data.io import check_same_shape, load_image, load_label
from vessa.errors import DataError

_NORMALIZE = ("slice", "volume", "none")


def normalize_minmax(x: np.ndarray) -> np.ndarray:
    """Min-max scale to [0, 1] as float32; a constant array becomes zeros."""
    x = np.asarray(x, dtype=np.float32)
    lo, hi = float(x.min()), float(x.max())
    if hi - lo <= 0 or not np.isfinite(hi - lo):
        return np.zeros_like(x, dtype=np.float32)
    return ((x - lo) / (hi - lo)).astype(np.float32)


def normalize_image(image: np.ndarray, mode: str) -> np.ndarray:
    """Scale a (C, H, W) image or (C, X, Y, Z) volume to [0, 1]: "volume" as a whole, "slice" each 2D slice
    along the last axis on its own, "none" unchanged (float32)."""
    if mode not in _NORMALIZE:
        raise DataError(f"Unknown normalize mode {mode!r}; use one of {list(_NORMALIZE)}.")
    if mode == "volume" or (mode == "slice" and np.ndim(image) < 4):
        return normalize_minmax(image)
    if mode == "slice":
        return np.stack([normalize_minmax(image[..., z]) for z in range(image.shape[-1])], axis=-1)
    return np.asarray(image, dtype=np.float32)


def load_slices(
    items: list[dict],
    label_values: Sequence[int],
    normalize: str = "slice",
    with_labels: bool = True,
    axis: int = -1,
) -> list[dict]:
    """One dict per 2D slice: image (C,H,W) float32, label (H,W) int64 (if ``with_labels``), id, slice_index,
    slice_pos (z/(D-1), 0.5 for a single slice / 2D image), num_slices, and the case's ``text`` (its own
    sentence, e.g. MoNuSeg's LViT description) when the entry has one: a text is not a label, so unlabelled
    slices keep it too.

    ``normalize``: "slice" (each 2D slice min-max on its own), "volume" (whole volume min-max) or "none".
    With ``with_labels=False`` no label file is ever opened.
    """
    if normalize not in _NORMALIZE:
        raise DataError(f"Unknown normalize mode {normalize!r}; use one of {list(_NORMALIZE)}.")
    out: list[dict] = []
    for item in items:
        image = load_image(item["image"])
        label = None
        if with_labels:
            if not item.get("label"):
                raise DataError(
                    f"Entry {item.get('id', item['image'])} has no 'label' but labels were requested; "
                    "add the label path in dataset.json, or load it with with_labels=False."
                )
            label = load_label(item["label"], label_values)
            check_same_shape(image, label, item["image"], item["label"])
        entry_id = str(item.get("id", item["image"]))
        text = {"text": str(item["text"])} if item.get("text") else {}
        if image.ndim == 3:  # 2D image (C,H,W)
            img = image if normalize == "none" else normalize_minmax(image)
            rec = {"image": img, "id": entry_id, "slice_index": 0, "slice_pos": 0.5, "num_slices": 1, **text}
            if label is not None:
                rec["label"] = label
            out.append(rec)
            continue
        if image.ndim != 4:
            raise DataError(f"Image {item['image']} has shape {image.shape}; expected (C,H,W) or (C,X,Y,Z).")
        ax = axis % 3  # spatial axis
        vol = np.moveaxis(image, ax + 1, 1)  # (C, D, H, W)
        lab = np.moveaxis(label, ax, 0) if label is not None else None
        if normalize == "volume":
            vol = normalize_minmax(vol)
        depth = vol.shape[1]
        for z in range(depth):
            sl = np.ascontiguousarray(vol[:, z])
            if normalize == "slice":
                sl = normalize_minmax(sl)
            rec = {
                "image": sl.astype(np.float32, copy=False),
                "id": entry_id,
                "slice_index": z,
                "slice_pos": z / (depth - 1) if depth > 1 else 0.5,
                "num_slices": depth,
                **text,
            }
            if lab is not None:
                rec["label"] = np.ascontiguousarray(lab[z])
            out.append(rec)
    return out
