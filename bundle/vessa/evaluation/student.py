"""Student inference and evaluation by the published protocols: ACDC slice by slice (SSL4MIS
``test_single_volume``), LA by 3D sliding window (UA-MT ``test_all_case``)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference
from tqdm.auto import tqdm

from vessa.data.datalist import Datalist
from vessa.data.io import check_same_shape, load_image, load_label
from vessa.data.slices import normalize_image
from vessa.training.checkpoints import atomic_write_json
from vessa.errors import DataError
from vessa.metrics.segmentation import case_metrics, format_metrics_table, summarize

MODES = ("slicewise", "sliding")


def _logits(network: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The network's logits; a tuple/list/dict output (deep supervision, auxiliary heads) gives its first item."""
    out = network(x)
    if isinstance(out, (tuple, list)):
        out = out[0]
    elif isinstance(out, dict):
        out = next(iter(out.values()))
    return out


@torch.no_grad()
def predict_volume_slicewise(
    network: torch.nn.Module,
    volume: np.ndarray,
    patch_size: int = 256,
    device: str | torch.device = "cpu",
    image_mode: str = "bilinear",
) -> np.ndarray:
    """Class-index map (H, W, D) of a (C, H, W, D) volume, or (H, W) of a (C, H, W) image.

    SSL4MIS's ACDC ``test_single_volume``: each 2D slice is resized to ``patch_size`` x ``patch_size``,
    the network (eval mode, no grad; logits (1, K + 1, p, p)) predicts it, argmax, and the class map is
    resized back with nearest neighbour. The image is resized with ``image_mode`` ("bilinear" by default,
    as this project's training resizes slices; SSL4MIS itself zooms with order 0, i.e. "nearest").
    The result holds channel indices; map them to label values with ``np.asarray(label_values)[pred]``.
    """
    network.eval()
    x = torch.as_tensor(np.asarray(volume, dtype=np.float32))
    if x.dim() not in (3, 4):
        raise ValueError(f"expected a (C, H, W) image or a (C, H, W, D) volume, got shape {tuple(x.shape)}")
    squeeze = x.dim() == 3
    if squeeze:
        x = x[..., None]
    h, w, depth = x.shape[1:]
    align = False if image_mode in ("bilinear", "bicubic") else None
    out = np.zeros((h, w, depth), dtype=np.int64)
    for z in range(depth):
        s = F.interpolate(x[None, :, :, :, z].to(device), size=(patch_size, patch_size), mode=image_mode, align_corners=align)
        pred = _logits(network, s).max(1, keepdim=True).indices.float()  # max, not argmax: 15x faster on the CPU
        out[..., z] = F.interpolate(pred, size=(h, w), mode="nearest")[0, 0].long().cpu().numpy()
    return out[..., 0] if squeeze else out


@torch.no_grad()
def predict_volume_sliding(
    network: torch.nn.Module,
    volume: np.ndarray,
    patch_size: int | Sequence[int] = (112, 112, 80),
    overlap: float | Sequence[float] = 0.5,
    device: str | torch.device = "cpu",
    sw_batch_size: int = 1,
) -> np.ndarray:
    """Class-index map (X, Y, Z) of a (C, X, Y, Z) volume by 3D sliding window (UA-MT's LA protocol).

    :func:`monai.inferers.sliding_window_inference` over ``patch_size`` windows (the volume is zero-padded
    where it is smaller than the patch, and cropped back), the softmax of overlapping windows averaged with
    constant weights (as UA-MT's ``score_map / cnt``), then argmax. UA-MT's published test used strides
    18 (x, y) and 4 (z) on 112 x 112 x 80, i.e. ``overlap=(0.84, 0.84, 0.95)``; 0.5 is a cheaper default.
    """
    network.eval()
    x = torch.as_tensor(np.asarray(volume, dtype=np.float32))
    if x.dim() != 4:
        raise ValueError(f"expected a (C, X, Y, Z) volume, got shape {tuple(x.shape)}")
    roi = (int(patch_size),) * 3 if isinstance(patch_size, (int, np.integer)) else tuple(int(p) for p in patch_size)

    def predictor(patch: torch.Tensor) -> torch.Tensor:
        return torch.softmax(_logits(network, patch), dim=1)

    prob = sliding_window_inference(
        x[None].to(device), roi, sw_batch_size, predictor, overlap=overlap, mode="constant", padding_mode="constant", cval=0.0
    )
    return prob.max(1).indices[0].long().cpu().numpy()


def evaluate_student(
    network: torch.nn.Module,
    volumes: list[dict],
    label_values: Sequence[int],
    class_names: Mapping[int, str],
    mode: str = "slicewise",
    patch_size: int | Sequence[int] | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    overlap: float | Sequence[float] = 0.5,
) -> dict:
    """Predict every volume (``{"id", "image" (C, ...), "label"}``) and score it per class.

    ``mode="slicewise"`` (ACDC, ``patch_size`` int, default 256) or ``"sliding"`` (LA, ``patch_size``
    3-tuple, default (112, 112, 80), ``overlap``). Output channel k of the network is label value
    ``sorted(label_values)[k]``. Returns ``{"per_case": [{"id", "metrics": {class name: {dice, jaccard,
    hd95, asd}}}], "summary": summarize(...)}`` (JSON-serialisable; metric conventions in
    :func:`vessa.metrics.case_metrics`).
    """
    if mode not in MODES:
        raise ValueError(f"unknown evaluation mode {mode!r}; use one of {list(MODES)}")
    values = sorted(int(v) for v in label_values)
    lut = np.asarray(values, dtype=np.int64)
    names = {int(k): str(v) for k, v in class_names.items()}
    per_case = []
    for vol in tqdm(volumes, desc=f"evaluate ({mode})", disable=not progress, leave=False):
        image = np.asarray(vol["image"], dtype=np.float32)
        if mode == "slicewise":
            index = predict_volume_slicewise(network, image, 256 if patch_size is None else int(patch_size), device)
        else:
            index = predict_volume_sliding(network, image, (112, 112, 80) if patch_size is None else patch_size, overlap, device)
        if index.max(initial=0) >= len(values):
            raise ValueError(f"the network predicts {int(index.max()) + 1}+ classes but the data set has {len(values)} label values")
        metrics = case_metrics(lut[index], np.asarray(vol["label"]), values)
        per_case.append({"id": str(vol.get("id", len(per_case))), "metrics": {names.get(v, str(v)): m for v, m in metrics.items()}})
    return {"per_case": per_case, "summary": summarize(per_case, {v: names.get(v, str(v)) for v in values})}


def load_eval_volumes(datalist: Datalist, split: str = "test", normalize: str = "volume") -> list[dict]:
    """Whole labelled volumes of a split: ``[{"id", "image" (C, ...) float32, "label" int64}]``.

    ``normalize``: "volume" min-max scales the whole image to [0, 1] (ACDC test volumes), "slice" each
    2D slice along the last axis on its own, "none" keeps the stored intensities (LA is z-scored already).
    """
    if normalize not in ("volume", "slice", "none"):
        raise DataError(f"Unknown normalize mode {normalize!r}; use 'volume', 'slice' or 'none'.")
    if split not in ("training", "validation", "test"):
        raise DataError(f"Unknown split {split!r}; use 'training', 'validation' or 'test'.")
    items = getattr(datalist, split)
    if not items:
        raise DataError(f"The data list in {datalist.dataset_dir} has no '{split}' entries to evaluate on.")
    out = []
    for item in items:
        if not item.get("label"):
            raise DataError(f"Entry {item.get('id', item['image'])} of '{split}' has no 'label'; evaluation needs labels.")
        image = load_image(item["image"])
        label = load_label(item["label"], datalist.label_values)
        check_same_shape(image, label, item["image"], item["label"])
        out.append({"id": str(item.get("id", item["image"])), "image": np.ascontiguousarray(normalize_image(image, normalize)), "label": label})
    return out


def write_student_report(results: dict, out_dir: str | Path, split: str) -> Path:
    """Write ``student_<split>.json`` (per case and summary, atomically) and print the metrics table; returns the path."""
    path = atomic_write_json(results, Path(out_dir) / f"student_{split}.json")
    print(f"Student on the '{split}' split ({len(results['per_case'])} cases; Dice and Jaccard in %, HD95 and ASD in voxels):")
    print(format_metrics_table(results["summary"]))
    print(f"(written to {path})")
    return path
