"""Shared semi-supervised losses and ramps (after SSL4MIS's utils/losses.py and utils/ramps.py)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def sigmoid_rampup(current: float, length: float) -> float:
    """exp(-5 (1 - t)^2), t = current / length clipped to [0, 1] (Laine & Aila; SSL4MIS)."""
    if length <= 0:
        return 1.0
    t = min(max(current, 0.0), length) / length
    return float(math.exp(-5.0 * (1.0 - t) ** 2))


def sigmoid_rampdown(current: float, length: float) -> float:
    """1 at the start, falling to exp(-5) ~ 0 at ``length`` (SemiSAM's schedule for the generalist's weight)."""
    return sigmoid_rampup(length - min(current, length), length) if length > 0 else 1.0


def dice_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:
    """Soft multi-class Dice loss over the foreground channels; ``target`` holds class indices, ``weight`` per pixel."""
    prob = torch.softmax(logits, dim=1)
    onehot = F.one_hot(target.long(), logits.shape[1]).movedim(-1, 1).float()
    w = torch.ones_like(target, dtype=prob.dtype) if weight is None else weight
    w = w.unsqueeze(1)
    dims = tuple(range(2, logits.dim()))
    inter = (prob * onehot * w).sum(dims)
    denom = ((prob + onehot) * w).sum(dims)
    return 1.0 - ((2 * inter + eps) / (denom + eps))[:, 1:].mean()


def ce_dice_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """(cross-entropy + Dice) / 2, optionally weighted per pixel: SSL4MIS's supervised loss."""
    ce = F.cross_entropy(logits, target.long(), reduction="none")
    ce = ce.mean() if weight is None else (ce * weight).sum() / weight.sum().clamp(min=1.0)
    return 0.5 * (ce + dice_loss(logits, target, weight))


def softmax_mse(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the two softmax maps (Mean Teacher's consistency)."""
    return F.mse_loss(torch.softmax(student_logits, 1), torch.softmax(teacher_logits, 1))
