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

from vessa.data.slices import load_slices
from vessa.data.splits import Split
from vessa.data.template_bank import resize_image, resize_label

logger = logging.getLogger(__name__)


def _mean_dice(pred: torch.Tensor, truth: torch.Tensor, num_classes: int) -> float:
    p = F.one_hot(pred.long(), num_classes).movedim(-1, 1).float()
    t = F.one_hot(truth.long(), num_classes).movedim(-1, 1).float()
    return float(np.nanmean(compute_dice(p, t, include_background=False, ignore_empty=True).numpy()))


class PseudoLabelDiagnostics:
    """Every ``interval`` iterations, the mean Dice of the student's prediction and of the assistant's
    pseudo-label on a fixed sample of unlabelled slices, against their hidden labels; written to a CSV.

    Labels are assumed to be the class indices 0..K (as the student's output channels).
    """

    def __init__(self, split: Split, label_values: list[int], patch_size: int, csv_path: str | Path, num_slices: int = 48, interval: int = 100, seed: int = 0, normalize: str = "slice") -> None:
        hidden = split.hidden_label_paths()
        entries = [{**e, "label": hidden[e["id"]]} for e in split.unlabeled if e["id"] in hidden]
        slices = [s for s in load_slices(entries, label_values, normalize=normalize) if (s["label"] > 0).any()]
        pick = np.random.default_rng(seed).choice(len(slices), size=min(num_slices, len(slices)), replace=False)
        self.images = torch.stack([resize_image(slices[i]["image"], patch_size) for i in pick])
        self.labels = torch.stack([resize_label(slices[i]["label"], patch_size) for i in pick])
        self.positions = torch.tensor([slices[i]["slice_pos"] for i in pick])
        self.num_classes = len(label_values)
        self.csv_path = Path(csv_path)
        self.interval = interval
        self.rows: list[dict] = []

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
        row = {"iteration": engine.state.iteration, "student_dice": _mean_dice(probs.argmax(1).cpu(), self.labels, self.num_classes)}
        if engine.assistant is not None:
            labels = torch.cat(
                [engine.assistant.refine(img, p, {"slice_pos": pos})[0].cpu() for img, p, pos in zip(images.split(8), probs.split(8), self.positions.split(8))]
            )
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
