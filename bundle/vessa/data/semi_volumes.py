"""Stage-2 batches for 3D students: random patches of a labelled volume and of an unlabelled one."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from vessa.data.io import check_same_shape, load_image, load_label
from vessa.data.semi import cutmix_box, strong_view
from vessa.data.streams import RandomStreamDataset
from vessa.data.slices import normalize_minmax
from vessa.errors import DataError


def load_volumes(items: list[dict], label_values: Sequence[int], normalize: str = "none", with_labels: bool = True) -> list[dict]:
    """Whole volumes: ``{"id", "image" (C, X, Y, Z) float32, "label" (X, Y, Z) int64 (if with_labels)}``.

    ``normalize``: "none" keeps stored intensities (LA is z-scored already), "volume" min-max scales each
    volume to [0, 1]. With ``with_labels=False`` no label file is opened.
    """
    if normalize not in ("none", "volume"):
        raise DataError(f"Unknown normalize mode {normalize!r} for 3D training; use 'none' or 'volume'.")
    out = []
    for item in items:
        image = load_image(item["image"])
        if image.ndim != 4:
            raise DataError(f"Image {item['image']} has shape {image.shape}: 3D training needs (X, Y, Z) volumes; use configs/stage2.json alone for 2D images.")
        rec = {"id": str(item.get("id", item["image"])), "image": normalize_minmax(image) if normalize == "volume" else image}
        if with_labels:
            if not item.get("label"):
                raise DataError(f"Entry {rec['id']} has no 'label' but labels were requested; add the label path in dataset.json.")
            rec["label"] = load_label(item["label"], label_values)
            check_same_shape(image, rec["label"], item["image"], item["label"])
        out.append(rec)
    return out


def random_patch(shape: Sequence[int], patch: Sequence[int], generator: torch.Generator) -> tuple[slice, ...]:
    """A random window of size ``patch`` inside ``shape`` (where the volume is smaller, the whole axis)."""
    starts = [int(torch.randint(0, max(1, n - p) + 1, (1,), generator=generator)) if n > p else 0 for n, p in zip(shape, patch)]
    return tuple(slice(s, s + p) for s, p in zip(starts, patch))


def crop_pad(array: np.ndarray, window: tuple[slice, ...], patch: Sequence[int]) -> np.ndarray:
    """``array[..., window]`` zero-padded at the end of each spatial axis up to ``patch``."""
    lead = array.ndim - len(patch)
    out = array[(slice(None),) * lead + window]
    pad = [(0, 0)] * lead + [(0, p - n) for n, p in zip(out.shape[lead:], patch)]
    return np.pad(out, pad) if any(p[1] for p in pad) else out


def flip_rot(tensors: list[torch.Tensor], generator: torch.Generator) -> list[torch.Tensor]:
    """The same random in-plane rot90 and flips of (C, X, Y, Z) images and (X, Y, Z) labels (UA-MT's RandomRotFlip)."""
    k = int(torch.randint(0, 4, (1,), generator=generator))
    axes = [int(a) for a in (0, 1) if torch.rand(1, generator=generator) < 0.5]
    out = []
    for t in tensors:
        off = t.dim() - 3
        t = torch.rot90(t, k, (off, off + 1)) if t.shape[off] == t.shape[off + 1] else t
        out.append(t.flip([off + a for a in axes]) if axes else t)
    return out


class SemiSupervisedVolumeDataset(RandomStreamDataset):
    """Random pairs of a labelled patch (with its label) and an unlabelled patch (never with a label).

    Items as :class:`vessa.data.semi.SemiSupervisedDataset`, in 3D: ``image`` (C, X, Y, Z), ``label``,
    ``u_image``, ``u_strong1``/``u_strong2``, ``u_box1``/``u_box2``, ``u_index``, and ``u_pos`` (Z,):
    the relative position of each patch slice in its volume (for template retrieval, slice by slice).
    """

    def __init__(self, labeled_volumes: list[dict], unlabeled_volumes: list[dict], patch_size: Sequence[int], length: int = 100, seed: int = 0, rank: int = 0) -> None:
        super().__init__(length, seed, rank)
        if any("label" in v for v in unlabeled_volumes):
            raise ValueError("unlabelled volumes must not carry labels: load them with load_volumes(..., with_labels=False)")
        if not labeled_volumes:
            raise DataError("No labelled volumes: the labelled split is empty.")
        self.labeled = labeled_volumes
        self.unlabeled = unlabeled_volumes
        self.patch = tuple(int(p) for p in patch_size)
        if len(self.patch) != 3:
            raise DataError(f"patch_size {patch_size} must have three sizes (X, Y, Z) for 3D training.")

    def __getitem__(self, index: int) -> dict:
        g, patch = self.generator(index), self.patch
        vol = self.labeled[int(torch.randint(0, len(self.labeled), (1,), generator=g))]
        window = random_patch(vol["label"].shape, patch, g)
        image = torch.from_numpy(np.ascontiguousarray(crop_pad(vol["image"], window, patch)))
        label = torch.from_numpy(np.ascontiguousarray(crop_pad(vol["label"], window, patch))).long()
        image, label = flip_rot([image, label], g)
        item = {"image": image.contiguous(), "label": label.contiguous()}
        if self.unlabeled:
            u_index = int(torch.randint(0, len(self.unlabeled), (1,), generator=g))
            u_vol = self.unlabeled[u_index]["image"]
            window = random_patch(u_vol.shape[1:], patch, g)
            (weak,) = flip_rot([torch.from_numpy(np.ascontiguousarray(crop_pad(u_vol, window, patch)))], g)
            weak = weak.contiguous()
            depth = u_vol.shape[-1]
            z = torch.arange(window[2].start, window[2].start + patch[2], dtype=torch.float32)
            item.update(
                u_image=weak,
                u_strong1=strong_view(weak, g, clamp=False),
                u_strong2=strong_view(weak, g, clamp=False),
                u_box1=cutmix_box(patch, g),
                u_box2=cutmix_box(patch, g),
                u_index=u_index,
                u_pos=(z / max(1, depth - 1)).clamp(0, 1),
            )
        return item
