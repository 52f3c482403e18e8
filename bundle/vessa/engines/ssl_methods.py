"""Semi-supervised methods the stage-2 trainer plugs in: supervised-only, Mean Teacher, UniMatch.

Each method computes the losses of one batch. Where an assistant is configured, it supplies the
pseudo-labels of the unlabelled images (refining the student's or teacher's prediction) and their
per-pixel weights; without one, each method uses its own targets.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch

from vessa.losses.ssl import ce_dice_loss, sigmoid_rampup, softmax_mse

if TYPE_CHECKING:
    from vessa.engines.stage2 import Stage2Trainer


class SupervisedOnly:
    """Labelled loss only: the lower baseline (and, with every case labelled, the fully supervised ceiling)."""

    uses_unlabeled = False

    def setup(self, trainer: "Stage2Trainer") -> None:
        """Called once before training."""

    def losses(self, trainer: "Stage2Trainer", batch: dict) -> dict:
        return {"sup": ce_dice_loss(trainer.network(batch["image"]), batch["label"])}

    def after_step(self, trainer: "Stage2Trainer") -> None:
        """Called after each optimiser step."""

    def state_dict(self) -> dict:
        """State to checkpoint besides the student (the teacher of Mean Teacher)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""


class MeanTeacher(SupervisedOnly):
    """Mean Teacher (Tarvainen & Valpola; SSL4MIS): an EMA teacher's prediction on noisy unlabelled input is the target.

    With an assistant the teacher's prediction is refined into the assistant's targets; the unlabelled loss
    is the mean of the losses on each (one for vessa; the merged pseudo-label and the text-guided mask for text_vlm).

    Args:
        ema_decay: weight of the old teacher in the EMA (SSL4MIS convention, 0.99).
        noise: std of the Gaussian input noise (clipped to +-2 std).
        consistency: weight of the unlabelled loss (the MSE to the teacher), ramped up over ``rampup_iterations`` (sigmoid).
        assistant_consistency: its weight when an assistant gives the targets: a cross-entropy + Dice loss on
            pseudo-labels, on another scale than the MSE of softmax maps (ramped up the same way).
    """

    uses_unlabeled = True

    def __init__(
        self, ema_decay: float = 0.99, noise: float = 0.1, consistency: float = 0.1, rampup_iterations: int = 200, assistant_consistency: float = 1.0
    ) -> None:
        self.ema_decay = ema_decay
        self.noise = noise
        self.consistency = consistency
        self.assistant_consistency = assistant_consistency
        self.rampup_iterations = rampup_iterations
        self.teacher: torch.nn.Module | None = None

    def setup(self, trainer: "Stage2Trainer") -> None:
        self.teacher = copy.deepcopy(trainer.network)
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    def _noisy(self, x: torch.Tensor) -> torch.Tensor:
        return x + (torch.randn_like(x) * self.noise).clamp(-2 * self.noise, 2 * self.noise)

    def losses(self, trainer: "Stage2Trainer", batch: dict) -> dict:
        x, y, u = batch["image"], batch["label"], batch["u_image"]
        logits = trainer.network(torch.cat([x, self._noisy(u)]))
        sup = ce_dice_loss(logits[: len(x)], y)
        with torch.no_grad():
            self.teacher.train()
            t_logits = self.teacher(self._noisy(u))
        ramp = sigmoid_rampup(trainer.state.iteration, self.rampup_iterations)
        targets = trainer.pseudo_targets(u, torch.softmax(t_logits, 1), batch)
        if targets is None:
            return {"sup": sup, "unsup": self.consistency * ramp * softmax_mse(logits[len(x) :], t_logits)}
        # DuSSS: the mean of the losses on the merged pseudo-label and on the text-guided mask
        unsup = sum(ce_dice_loss(logits[len(x) :], labels, weights) for labels, weights in targets) / len(targets)
        return {"sup": sup, "unsup": self.assistant_consistency * ramp * unsup}

    def state_dict(self) -> dict:
        return {"teacher": self.teacher.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.teacher.load_state_dict(state["teacher"])

    @torch.no_grad()
    def after_step(self, trainer: "Stage2Trainer") -> None:
        decay = min(1 - 1 / (trainer.state.iteration + 1), self.ema_decay)
        for t, s in zip(self.teacher.parameters(), trainer.network.parameters()):
            t.mul_(decay).add_(s.detach(), alpha=1 - decay)
        for t, s in zip(self.teacher.buffers(), trainer.network.buffers()):
            t.copy_(s)


class UniMatch(SupervisedOnly):
    """UniMatch (Yang et al., CVPR 2023): weak-to-strong consistency with two CutMix'ed strong image views
    and a feature-perturbation stream, pseudo-labels from the weak view kept above a confidence threshold.

    With an assistant, the weak view's pseudo-label is the assistant's refinement of the student's
    prediction and the assistant's per-pixel weight replaces the confidence threshold (the VESSA setting).
    """

    uses_unlabeled = True

    def __init__(self, threshold: float = 0.95, weight_strong: float = 0.5, weight_fp: float = 0.5) -> None:
        self.threshold = threshold
        self.weight_strong = weight_strong
        self.weight_fp = weight_fp

    def losses(self, trainer: "Stage2Trainer", batch: dict) -> dict:
        net = trainer.network
        x, y, u = batch["image"], batch["label"], batch["u_image"]
        box1, box2 = batch["u_box1"].unsqueeze(1), batch["u_box2"].unsqueeze(1)
        # CutMix partners: every unlabelled image mixes with the next one in the batch
        s1 = torch.where(box1 > 0, batch["u_strong1"].roll(1, 0), batch["u_strong1"])
        s2 = torch.where(box2 > 0, batch["u_strong2"].roll(1, 0), batch["u_strong2"])
        logits, logits_fp = net.forward_with_fp(torch.cat([x, u]))
        sup = ce_dice_loss(logits[: len(x)], y)
        pred_u = logits[len(x) :].detach()
        probs = torch.softmax(pred_u, 1)
        pseudo = trainer.pseudo_labels(u, probs, batch)
        if pseudo is None:
            conf, target = probs.max(1)
            weight = (conf >= self.threshold).float()
        else:
            target, weight = pseudo
        logits_s1, logits_s2 = net(torch.cat([s1, s2])).chunk(2)
        t1 = torch.where(box1[:, 0] > 0, target.roll(1, 0), target)
        t2 = torch.where(box2[:, 0] > 0, target.roll(1, 0), target)
        w1 = torch.where(box1[:, 0] > 0, weight.roll(1, 0), weight)
        w2 = torch.where(box2[:, 0] > 0, weight.roll(1, 0), weight)
        strong = 0.5 * (ce_dice_loss(logits_s1, t1, w1) + ce_dice_loss(logits_s2, t2, w2))
        fp = ce_dice_loss(logits_fp[len(x) :], target, weight)
        return {"sup": sup, "unsup": self.weight_strong * strong + self.weight_fp * fp}


METHODS = {"supervised": SupervisedOnly, "mean_teacher": MeanTeacher, "unimatch": UniMatch}


def build_method(name: str, **kwargs) -> SupervisedOnly:
    """The SSL method called ``name`` (supervised, mean_teacher, unimatch) with its settings."""
    if name not in METHODS:
        raise ValueError(f"unknown SSL method '{name}': choose one of {sorted(METHODS)} (config id 'method')")
    return METHODS[name](**kwargs)
