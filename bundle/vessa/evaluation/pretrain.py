"""Held-out Dice of VESSA-base during pre-training: fixed episodes of each data set's held-out cases, templates
from its training cases, scored with MONAI's DiceMetric."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from ignite.engine import Engine, Events
from monai.metrics import DiceMetric

from vessa.data.corpus import CorpusSet
from vessa.data.pretrain_episodes import as_rgb, task_text
from vessa.training.checkpoints import atomic_write_json
from vessa.networks.text_encoder import TextEncoder

logger = logging.getLogger(__name__)


def heldout_episodes(data: CorpusSet, queries_per_class: int, num_templates: int) -> list[dict]:
    """Up to ``queries_per_class`` held-out slices per class (evenly spaced), each with the ``num_templates`` most
    similar training exemplars showing that class; no augmentation, so every evaluation sees the same episodes."""
    if data.heldout is None:
        return []
    episodes = []
    for value in data.classes:
        rows = data.with_class(value, data.heldout)
        step = max(1, len(rows) // queries_per_class)
        channel = data.bank.foreground.index(value)
        showing = data.with_class(value)
        for q in rows[::step][:queries_per_class]:
            image = data.heldout.images[q].float()
            found = data.bank.retrieve(image, num_templates, data.heldout.positions[q], among=showing)
            templates, masks = data.bank.gather([found[i % len(found)] for i in range(num_templates)])
            episodes.append({
                "image": as_rgb(image),
                "label": (data.heldout.masks[q] == value).float()[None],
                "templates": torch.stack([as_rgb(t) for t in templates]),
                "template_masks": masks[:, channel : channel + 1],
                "task": task_text([data.bank.labels[value]], inverted=False),
            })
    return episodes


class HeldoutDice:
    """Every ``interval`` epochs: the assistant's mean Dice on each data set's held-out episodes, written to the
    trainer's ``state.metrics`` (``heldout_dice_<name>`` and their mean ``heldout_dice``, which TensorBoard
    handlers and a best-checkpoint saver attached after this one read) and appended to ``curve_path``."""

    def __init__(
        self,
        corpus: list[CorpusSet],
        encoder: TextEncoder,
        queries_per_class: int = 8,
        num_templates: int = 3,
        interval: int = 1,
        batch_size: int = 16,
        curve_path: str | Path | None = None,
    ) -> None:
        self.episodes = {c.name: heldout_episodes(c, queries_per_class, num_templates) for c in corpus}
        self.episodes = {name: eps for name, eps in self.episodes.items() if eps}
        if not self.episodes:
            raise ValueError("no data set of the corpus has held-out cases to score the pre-training on")
        self.encoder = encoder
        self.interval = interval
        self.batch_size = batch_size
        self.curve_path = Path(curve_path) if curve_path is not None else None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self)

    @torch.no_grad()
    def evaluate(self, network: torch.nn.Module, device: torch.device | str) -> dict[str, float]:
        """Mean Dice per data set of ``network`` on the held-out episodes."""
        network.eval()
        scores = {}
        for name, episodes in self.episodes.items():
            metric = DiceMetric(include_background=True, reduction="mean")
            for start in range(0, len(episodes), self.batch_size):
                chunk = episodes[start : start + self.batch_size]
                batch = {k: torch.stack([e[k] for e in chunk]).to(device) for k in ("image", "label", "templates", "template_masks")}
                text = self.encoder.encode_cached([e["task"] for e in chunk]).to(device)[:, None]
                out = network(batch["image"], batch["templates"], batch["template_masks"], text_embeddings=text)
                metric((out["best"] > 0).float(), batch["label"])
            scores[name] = float(metric.aggregate())
        return scores

    def __call__(self, engine: Engine) -> None:
        scores = self.evaluate(engine.network, engine.state.device)
        mean = sum(scores.values()) / len(scores)
        engine.state.metrics.update({f"heldout_dice_{k}": v for k, v in scores.items()})
        engine.state.metrics["heldout_dice"] = mean
        logger.info(f"Held-out Dice at iteration {engine.state.iteration}: mean {mean:.3f} (" + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()) + ")")
        if self.curve_path is not None:
            curve = json.loads(self.curve_path.read_text()) if self.curve_path.is_file() else []
            curve = [p for p in curve if p["iteration"] < engine.state.iteration]  # a resumed run rewrites what it repeats
            curve.append({"iteration": engine.state.iteration, "epoch": engine.state.epoch, "mean": mean, **scores})
            atomic_write_json(curve, self.curve_path)
