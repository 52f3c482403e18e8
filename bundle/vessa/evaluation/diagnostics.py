"""Benchmark-only diagnostics: is the assistant's pseudo-label better than the student's own prediction?

This is the one place where labels of unlabelled cases are read, through
:meth:`vessa.data.splits.Split.hidden_label_paths`; the benchmarks attach it, user training never does.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from ignite.engine import Engine, Events
from monai.metrics import compute_dice

from vessa.data.io import load_image, load_label
from vessa.data.slices import load_slices
from vessa.data.splits import Split
from vessa.data.template_bank import resize_image, resize_label

logger = logging.getLogger(__name__)


def foreground_patch(entry: dict, label_values: list[int], patch_size) -> tuple[np.ndarray, np.ndarray]:
    """A (C, X, Y, Z) image patch and its (X, Y, Z) class-index label, centred on the label's foreground (zero-padded)."""
    image = load_image(entry["image"]).astype(np.float32)
    label = np.searchsorted(np.asarray(label_values), load_label(entry["label"], label_values))
    fg = np.argwhere(label > 0)
    centre = fg.mean(0).round().astype(int) if len(fg) else np.asarray(label.shape) // 2
    img_out = np.zeros((image.shape[0], *patch_size), np.float32)
    lab_out = np.zeros(tuple(patch_size), np.int64)
    src, dst = [], []
    for c, p, n in zip(centre, patch_size, label.shape):
        lo = c - p // 2
        s0, s1 = max(lo, 0), min(lo + p, n)
        src.append(slice(s0, s1))
        dst.append(slice(s0 - lo, s1 - lo))
    img_out[(slice(None), *dst)] = image[(slice(None), *src)]
    lab_out[tuple(dst)] = label[tuple(src)]
    return img_out, lab_out


def _mean_dice(pred: torch.Tensor, truth: torch.Tensor, num_classes: int) -> float:
    p = F.one_hot(pred.long(), num_classes).movedim(-1, 1).float()
    t = F.one_hot(truth.long(), num_classes).movedim(-1, 1).float()
    return float(np.nanmean(compute_dice(p, t, include_background=False, ignore_empty=True).numpy()))


class PseudoLabelDiagnostics:
    """Every ``interval`` iterations, the mean Dice of the student's prediction and of the pseudo-label the
    trainer makes of it with its assistant (refined, fused as configured) on a fixed sample of unlabelled
    images, against their hidden labels; written to a CSV.

    ``images`` (N, C, ...spatial) and ``labels`` (N, ...spatial, class indices 0..K as the student's
    output channels) are 2D slices or 3D patches; ``positions`` the slices' relative positions (2D) or None.
    Build it with :meth:`for_split`.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, positions: torch.Tensor | None, num_classes: int, csv_path: str | Path, interval: int = 100) -> None:
        self.images = images
        self.labels = labels
        self.positions = positions
        self.num_classes = num_classes
        self.csv_path = Path(csv_path)
        self.interval = interval
        self.rows: list[dict] = []

    @classmethod
    def for_split(
        cls, split: Split, label_values: list[int], patch_size, csv_path: str | Path, num_images: int = 48, interval: int = 100, seed: int = 0, normalize: str = "slice"
    ) -> "PseudoLabelDiagnostics":
        """A fixed sample of the unlabelled cases of ``split`` with their hidden labels: ``num_images`` 2D slices
        showing foreground resized to ``patch_size`` (int), or, for a 3D ``patch_size`` (X, Y, Z), one patch per
        volume (at most ``num_images // 8``) centred on its foreground, with the stored intensities."""
        hidden = split.hidden_label_paths()
        entries = [{**e, "label": hidden[e["id"]]} for e in split.unlabeled if e["id"] in hidden]
        rng = np.random.default_rng(seed)
        if isinstance(patch_size, (list, tuple)):
            pick = rng.choice(len(entries), size=min(max(1, num_images // 8), len(entries)), replace=False)
            crops = [foreground_patch(entries[i], label_values, patch_size) for i in pick]
            images = torch.stack([torch.as_tensor(c[0]) for c in crops])
            labels = torch.stack([torch.as_tensor(c[1]) for c in crops])
            return cls(images, labels, None, len(label_values), csv_path, interval)
        slices = [s for s in load_slices(entries, label_values, normalize=normalize) if (s["label"] > 0).any()]
        pick = rng.choice(len(slices), size=min(num_images, len(slices)), replace=False)
        images = torch.stack([resize_image(slices[i]["image"], patch_size) for i in pick])
        labels = torch.stack([resize_label(slices[i]["label"], patch_size) for i in pick])
        positions = torch.tensor([slices[i]["slice_pos"] for i in pick])
        return cls(images, labels, positions, len(label_values), csv_path, interval)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.interval), self)

    @torch.no_grad()
    def __call__(self, engine: Engine) -> None:
        net = engine.network
        was_training = net.training
        net.eval()
        device = engine.state.device
        images = self.images.to(device)
        probs = torch.cat([torch.softmax(net(chunk), 1) for chunk in images.split(8)])
        row = {"iteration": engine.state.iteration, "student_dice": _mean_dice(probs.max(1).indices.cpu(), self.labels, self.num_classes)}
        if engine.assistant is not None:
            positions = self.positions.split(8) if self.positions is not None else [None] * len(probs.split(8))
            labels = torch.cat([engine.pseudo_labels(img, p, {"u_pos": pos})[0].cpu() for img, p, pos in zip(images.split(8), probs.split(8), positions)])
            engine._last_unlabeled = None  # not a training batch: the assistant must not learn from it
            row["assistant_dice"] = _mean_dice(labels, self.labels, self.num_classes)
        net.train(was_training)
        self.rows.append(row)
        engine.state.metrics.update({f"pseudo_{k}": v for k, v in row.items() if k != "iteration"})
        self.csv_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.csv_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(self.rows[-1]))
            writer.writeheader()
            writer.writerows(self.rows)
        logger.info("pseudo-label diagnostics: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items() if k != "iteration"))
