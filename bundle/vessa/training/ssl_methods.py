"""Semi-supervised methods the stage-2 trainer plugs in: supervised-only, Mean Teacher, UniMatch, UniMatch V2.

Each method computes the losses of one batch. Where an assistant is configured, it supplies the
pseudo-labels of the unlabelled images (refining the student's or teacher's prediction) and their
per-pixel weights, and the trainer's ``assistant_schedule`` shares the unlabelled loss between them and
the method's own targets (:meth:`Stage2Trainer.unlabeled_loss`); without one, each method uses its own targets.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Callable

import torch

from vessa.losses.ssl import ce_dice_loss, sigmoid_rampup, softmax_mse

if TYPE_CHECKING:
    from vessa.training.stage2 import Stage2Trainer


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


def unwrap(network: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DistributedDataParallel (or DataParallel) wrapper; the network itself otherwise."""
    return network.module if isinstance(network, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)) else network


class EMATeacher(SupervisedOnly):
    """Base of the methods with a teacher that is the exponential moving average of the student.

    Args:
        ema_decay: weight of the old teacher in the EMA (SSL4MIS / UniMatch V2 convention), warmed up as
            ``min(1 - 1 / (iteration + 1), ema_decay)``.
    """

    uses_unlabeled = True

    def __init__(self, ema_decay: float = 0.99) -> None:
        self.ema_decay = ema_decay
        self.teacher: torch.nn.Module | None = None

    def setup(self, trainer: "Stage2Trainer") -> None:
        self.teacher = copy.deepcopy(unwrap(trainer.network))
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    def teacher_logits(self, x: torch.Tensor, train_mode: bool) -> torch.Tensor:
        """The teacher's logits on ``x`` without autograd (``train_mode``: batch statistics and dropout on)."""
        self.teacher.train(train_mode)
        with torch.inference_mode():
            logits = self.teacher(x)
        return logits.clone()  # a normal tensor again: it enters losses that are differentiated

    def state_dict(self) -> dict:
        return {"teacher": self.teacher.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.teacher.load_state_dict(state["teacher"])

    @torch.no_grad()
    def after_step(self, trainer: "Stage2Trainer") -> None:
        decay = min(1 - 1 / (trainer.state.iteration + 1), self.ema_decay)
        student = unwrap(trainer.network)
        for t, s in zip(self.teacher.parameters(), student.parameters()):
            t.mul_(decay).add_(s.detach(), alpha=1 - decay)
        for t, s in zip(self.teacher.buffers(), student.buffers()):
            t.copy_(s)


class MeanTeacher(EMATeacher):
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

    def __init__(
        self, ema_decay: float = 0.99, noise: float = 0.1, consistency: float = 0.1, rampup_iterations: int = 200, assistant_consistency: float = 1.0
    ) -> None:
        super().__init__(ema_decay)
        self.noise = noise
        self.consistency = consistency
        self.assistant_consistency = assistant_consistency
        self.rampup_iterations = rampup_iterations

    def _noisy(self, x: torch.Tensor) -> torch.Tensor:
        return x + (torch.randn_like(x) * self.noise).clamp(-2 * self.noise, 2 * self.noise)

    def losses(self, trainer: "Stage2Trainer", batch: dict) -> dict:
        x, y, u = batch["image"], batch["label"], batch["u_image"]
        logits = trainer.network(torch.cat([x, self._noisy(u)]))
        sup = ce_dice_loss(logits[: len(x)], y)
        t_logits = self.teacher_logits(self._noisy(u), train_mode=True)
        ramp = sigmoid_rampup(trainer.state.iteration, self.rampup_iterations)

        def assistant_loss() -> torch.Tensor:
            # DuSSS: the mean of the losses on the merged pseudo-label and on the text-guided mask
            targets = trainer.pseudo_targets(u, torch.softmax(t_logits, 1), batch)
            return self.assistant_consistency * sum(ce_dice_loss(logits[len(x) :], labels, weights) for labels, weights in targets) / len(targets)

        unsup = trainer.unlabeled_loss(lambda: self.consistency * softmax_mse(logits[len(x) :], t_logits), assistant_loss)
        return {"sup": sup, "unsup": ramp * unsup}


def cutmix_views(batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The two strong views of the unlabelled images, each CutMix'ed with the next image of the batch, and their boxes."""
    box1, box2 = batch["u_box1"].unsqueeze(1), batch["u_box2"].unsqueeze(1)
    s1 = torch.where(box1 > 0, batch["u_strong1"].roll(1, 0), batch["u_strong1"])
    s2 = torch.where(box2 > 0, batch["u_strong2"].roll(1, 0), batch["u_strong2"])
    return s1, s2, box1[:, 0], box2[:, 0]


def strong_loss(logits_s1: torch.Tensor, logits_s2: torch.Tensor, box1: torch.Tensor, box2: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean loss of the two CutMix'ed strong views against the weak view's target and weight, mixed the same way."""
    mix = lambda box, t: torch.where(box > 0, t.roll(1, 0), t)  # noqa: E731
    return 0.5 * (ce_dice_loss(logits_s1, mix(box1, target), mix(box1, weight)) + ce_dice_loss(logits_s2, mix(box2, target), mix(box2, weight)))


def weak_view_loss(
    trainer: "Stage2Trainer", u: torch.Tensor, probs: torch.Tensor, batch: dict, threshold: float, loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """``loss_of(pseudo-label, weight)`` of the weak view's targets: the method's own (the argmax kept where its confidence
    reaches ``threshold``) handed over to the assistant's refinement as the trainer schedules it."""

    def own_loss() -> torch.Tensor:
        conf, target = probs.max(1)
        return loss_of(target, (conf >= threshold).float())

    return trainer.unlabeled_loss(own_loss, lambda: loss_of(*trainer.pseudo_labels(u, probs, batch)))


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
        s1, s2, box1, box2 = cutmix_views(batch)
        logits, logits_fp = net(torch.cat([x, u]), perturb="fp")
        sup = ce_dice_loss(logits[: len(x)], y)
        logits_s1, logits_s2 = net(torch.cat([s1, s2])).chunk(2)

        def loss_of(target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
            strong = strong_loss(logits_s1, logits_s2, box1, box2, target, weight)
            return self.weight_strong * strong + self.weight_fp * ce_dice_loss(logits_fp[len(x) :], target, weight)

        return {"sup": sup, "unsup": weak_view_loss(trainer, u, torch.softmax(logits[len(x) :].detach(), 1), batch, self.threshold, loss_of)}


class UniMatchV2(EMATeacher):
    """UniMatch V2 (Yang et al., 2024), VESSA's host: an EMA teacher labels the weak view (kept above a confidence
    threshold), and one strong stream carries both perturbations: the two CutMix'ed strong views go through the
    student together, their features under Complementary Dropout (complementary channel masks for the two views).

    With an assistant, the teacher's prediction is refined into the pseudo-label and the assistant's per-pixel
    weight replaces the threshold, as in UniMatch (V1). Its DINOv2 encoder cannot be had offline: the student is
    the same UNet as for the other methods.

    Args:
        threshold: confidence threshold of the teacher's pseudo-labels (0.95).
        ema_decay: the teacher's momentum (0.996 in UniMatch V2).
        weight_strong: weight of the strong stream's loss (V2: the labelled and the strong losses count alike).
    """

    def __init__(self, threshold: float = 0.95, ema_decay: float = 0.996, weight_strong: float = 1.0) -> None:
        super().__init__(ema_decay)
        self.threshold = threshold
        self.weight_strong = weight_strong

    def losses(self, trainer: "Stage2Trainer", batch: dict) -> dict:
        net = trainer.network
        x, y, u = batch["image"], batch["label"], batch["u_image"]
        s1, s2, box1, box2 = cutmix_views(batch)
        sup = ce_dice_loss(net(x), y)
        probs = torch.softmax(self.teacher_logits(u, train_mode=False), 1)
        logits_s1, logits_s2 = net(torch.cat([s1, s2]), perturb="complementary").chunk(2)
        loss_of = lambda target, weight: self.weight_strong * strong_loss(logits_s1, logits_s2, box1, box2, target, weight)  # noqa: E731
        return {"sup": sup, "unsup": weak_view_loss(trainer, u, probs, batch, self.threshold, loss_of)}


METHODS = {"supervised": SupervisedOnly, "mean_teacher": MeanTeacher, "unimatch": UniMatch, "unimatch_v2": UniMatchV2}


def build_method(name: str, **kwargs) -> SupervisedOnly:
    """The SSL method called ``name`` (supervised, mean_teacher, unimatch, unimatch_v2) with its settings."""
    if name not in METHODS:
        raise ValueError(f"unknown SSL method '{name}': choose one of {sorted(METHODS)} (config id 'method')")
    return METHODS[name](**kwargs)
