"""Held-out evaluation of the assistant against the template-copy floor, per class and per volume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from monai.metrics import compute_dice
from tqdm import tqdm

from vessa.inference.predictor import AssistantPredictor
from vessa.training.checkpoints import atomic_write_json
from vessa.evaluation.evaluator import one_hot
from vessa.prompts import perturb_masks

MODES = ("assistant", "assistant+coarse", "template")


def simulated_coarse_label(label: np.ndarray, foreground: list[int], generator: torch.Generator) -> torch.Tensor:
    """A degraded copy of a (H, W) label, as an imperfect student would predict it (the coarse-mask prompt)."""
    lab = torch.as_tensor(label)
    masks = torch.stack([(lab == v) for v in foreground]).float()
    noisy = perturb_masks(masks, generator)
    score, idx = noisy.max(0)
    values = torch.tensor([0] + foreground)
    return torch.where(score >= 0.5, values[idx + 1], torch.zeros_like(idx))


def evaluate_assistant(predictor: AssistantPredictor, volumes: list[dict], modes: tuple[str, ...] = MODES, seed: int = 0, progress: bool = True) -> dict:
    """Dice per class of each mode, computed per volume and averaged over volumes.

    Modes: ``assistant`` (templates only), ``assistant+coarse`` (plus a coarse-mask prompt made by
    degrading the true label, standing in for a student's prediction), ``template`` (copying the
    retrieved exemplar's mask). Returns ``{mode: {"per_class": {name: dice}, "mean": dice}}`` plus
    ``per_volume`` lists.
    """
    unknown = set(modes) - set(MODES)
    if unknown:
        raise ValueError(f"unknown evaluation modes {sorted(unknown)}; choose from {MODES}")
    bank = predictor.bank
    values = [0] + bank.foreground
    generator = torch.Generator().manual_seed(seed)
    scores: dict[str, list[np.ndarray]] = {m: [] for m in modes}
    for vol in tqdm(volumes, desc="evaluating", disable=not progress):
        label = torch.as_tensor(vol["label"])
        for mode in modes:
            coarse = None
            if mode == "assistant+coarse":
                slice_labels = [vol["label"]] if label.ndim == 2 else [vol["label"][..., i] for i in range(label.shape[-1])]
                coarse = [simulated_coarse_label(s, bank.foreground, generator) for s in slice_labels]
            pred = predictor.predict_volume(vol, "template" if mode == "template" else "assistant", coarse)
            dice = compute_dice(one_hot(pred, values), one_hot(label, values), include_background=False, ignore_empty=True)
            scores[mode].append(dice[0].numpy())
    results: dict = {}
    for mode, rows in scores.items():
        arr = np.stack(rows)
        per_class = {name: float(np.nanmean(arr[:, k])) if not np.all(np.isnan(arr[:, k])) else float("nan") for k, name in enumerate(bank.class_names)}
        results[mode] = {"per_class": per_class, "mean": float(np.nanmean(list(per_class.values()))), "per_volume": arr.tolist()}
    return results


def format_table(results: dict) -> str:
    """A readable Dice table (percent) of :func:`evaluate_assistant` results."""
    modes = list(results)
    names = list(results[modes[0]]["per_class"])
    lines = ["| mode | " + " | ".join(names) + " | mean |", "|---" * (len(names) + 2) + "|"]
    for m in modes:
        cells = [f"{100 * results[m]['per_class'][n]:.1f}" for n in names]
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {100 * results[m]['mean']:.1f} |")
    return "\n".join(lines)


def write_report(results: dict, out_dir: str | Path, split: str) -> Path:
    """Write ``assistant_<split>.json`` and print the Dice table; returns the JSON path."""
    path = atomic_write_json(results, Path(out_dir) / f"assistant_{split}.json")
    print(f"Assistant Dice (%) on the '{split}' split, per volume then averaged:\n{format_table(results)}\n(written to {path})")
    return path
