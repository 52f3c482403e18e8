"""The template bank: labelled exemplars (image, class masks, class texts) the assistant is guided by."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vessa.errors import CheckpointError, DataError
from vessa.torch_files import atomic_torch_save, load_plain

THUMB = 32


def resize_image(image: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """(C, H, W) image -> (C, size, size) float tensor, bilinear."""
    x = torch.as_tensor(np.asarray(image, dtype=np.float32))
    return F.interpolate(x[None], size=(size, size), mode="bilinear", align_corners=False)[0]


def resize_label(label: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """(H, W) class-index map -> (size, size) long tensor, nearest."""
    x = torch.as_tensor(np.asarray(label)).float()
    return F.interpolate(x[None, None], size=(size, size), mode="nearest")[0, 0].long()


def thumbnail_embedding(image: torch.Tensor) -> torch.Tensor:
    """Retrieval embedding of a (C, H, W) or (B, C, H, W) image: zero-mean unit-norm 32x32 grayscale thumbnail."""
    x = image if image.dim() == 4 else image[None]
    x = F.adaptive_avg_pool2d(x.float().mean(1, keepdim=True), THUMB).flatten(1)
    x = x - x.mean(1, keepdim=True)
    return F.normalize(x, dim=1)


class TemplateBank:
    """Exemplars at the assistant's working size, retrievable by similarity and relative slice position.

    Args:
        labels: class names by label value (0 is background), e.g. ``{0: "background", 1: "cavity"}``.
        image_size: side of the square exemplars (the assistant's ``image_size``).
        position_weight: how much a difference in relative slice position lowers the similarity.
    """

    def __init__(self, labels: dict[int, str], image_size: int, position_weight: float = 0.5) -> None:
        self.labels = {int(k): v for k, v in labels.items()}
        self.image_size = image_size
        self.position_weight = position_weight
        self.images: list[torch.Tensor] = []
        self.masks: list[torch.Tensor] = []
        self.ids: list[str] = []
        self.positions: list[float] = []
        self._embeddings: torch.Tensor | None = None

    @property
    def foreground(self) -> list[int]:
        """Foreground label values, in order: class channel k of a template mask is label ``foreground[k]``."""
        return sorted(v for v in self.labels if v != 0)

    @property
    def class_names(self) -> list[str]:
        return [self.labels[v] for v in self.foreground]

    def __len__(self) -> int:
        return len(self.images)

    def add(self, image: np.ndarray | torch.Tensor, label: np.ndarray | torch.Tensor, case_id: str, slice_pos: float = 0.5) -> None:
        """Add one exemplar: a (C, H, W) image in [0, 1] and its (H, W) class-index label."""
        lab = torch.as_tensor(np.asarray(label))
        unknown = sorted(set(torch.unique(lab).tolist()) - set(self.labels))
        if unknown:
            raise DataError(f"Template '{case_id}' has label values {unknown} not in the bank's labels {sorted(self.labels)}; fix the mask or the data set's 'labels'.")
        if not bool((lab > 0).any()):
            raise DataError(f"Template '{case_id}' has an empty mask: a template needs at least one labelled structure.")
        self.images.append(resize_image(image, self.image_size).half())
        self.masks.append(resize_label(lab, self.image_size).to(torch.uint8))
        self.ids.append(str(case_id))
        self.positions.append(float(slice_pos))
        self._embeddings = None

    def remove(self, case_id: str) -> int:
        """Drop every exemplar of ``case_id`` (e.g. before adding its corrected label again); returns how many."""
        keep = [i for i, c in enumerate(self.ids) if c != str(case_id)]
        removed = len(self.ids) - len(keep)
        self.images, self.masks = [self.images[i] for i in keep], [self.masks[i] for i in keep]
        self.ids, self.positions = [self.ids[i] for i in keep], [self.positions[i] for i in keep]
        self._embeddings = None
        return removed

    @classmethod
    def from_slices(cls, slices: list[dict], labels: dict[int, str], image_size: int, position_weight: float = 0.5) -> "TemplateBank":
        """Build from :func:`vessa.data.load_slices` output (labelled split only); slices with no foreground are skipped."""
        bank = cls(labels, image_size, position_weight)
        for s in slices:
            if np.any(s["label"] > 0):
                bank.add(s["image"], s["label"], s["id"], s.get("slice_pos", 0.5))
        if len(bank) == 0:
            raise DataError("No labelled slice with any foreground structure: the template bank would be empty. Check the labelled split and its masks.")
        return bank

    def embeddings(self) -> torch.Tensor:
        if self._embeddings is None:
            self._embeddings = thumbnail_embedding(torch.stack(self.images).float())
        return self._embeddings

    def retrieve(
        self, image: torch.Tensor, k: int = 1, slice_pos: float | None = None, exclude_id: str | None = None, among: list[int] | None = None
    ) -> list[int]:
        """Indices of the ``k`` exemplars most similar to a (C, H, W) query, optionally excluding one case and
        restricted to the exemplars ``among`` (e.g. those showing one class)."""
        if len(self) == 0:
            raise DataError("The template bank is empty: build it from a labelled split or add exemplars first.")
        score = self.embeddings() @ thumbnail_embedding(resize_image(image, self.image_size))[0]
        if slice_pos is not None:
            score = score - self.position_weight * (torch.tensor(self.positions) - slice_pos).abs()
        allowed = torch.ones(len(self), dtype=torch.bool)
        if among is not None:
            allowed = torch.zeros(len(self), dtype=torch.bool)
            allowed[among] = True
        if exclude_id is not None:
            others = allowed & ~torch.tensor([i == exclude_id for i in self.ids])
            allowed = others if others.any() else allowed  # a bank of one case: its own other slices
        score = torch.where(allowed, score, torch.full_like(score, -1e9))
        k = max(1, min(k, int(allowed.sum())))
        return score.topk(k).indices.tolist()

    def class_masks(self, index: int) -> torch.Tensor:
        """(K, S, S) binary masks of exemplar ``index``, one channel per foreground class."""
        m = self.masks[index].long()
        return torch.stack([(m == v) for v in self.foreground]).float()

    def gather(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Template images (T, C, S, S) and class masks (T, K, S, S) of the given exemplars."""
        return torch.stack([self.images[i].float() for i in indices]), torch.stack([self.class_masks(i) for i in indices])

    def state_dict(self) -> dict:
        return {
            "labels": self.labels,
            "image_size": self.image_size,
            "position_weight": self.position_weight,
            "images": torch.stack(self.images) if self.images else None,
            "masks": torch.stack(self.masks) if self.masks else None,
            "ids": self.ids,
            "positions": self.positions,
        }

    def save(self, path: str | Path) -> None:
        """Save atomically."""
        atomic_torch_save(self.state_dict(), path)

    @classmethod
    def load(cls, path: str | Path) -> "TemplateBank":
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"Template bank not found: {path}. Train stage 1 first (python -m monai.bundle run training --config_file configs/stage1.json) or point 'bank_path' at an existing bank.pt.")
        state = load_plain(path, "template bank")
        bank = cls(state["labels"], state["image_size"], state["position_weight"])
        if state["images"] is not None:
            bank.images = list(state["images"])
            bank.masks = list(state["masks"])
        bank.ids = list(state["ids"])
        bank.positions = list(state["positions"])
        return bank
