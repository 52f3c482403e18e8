"""Stage-1 loss of the assistant: mask (Dice + BCE, best candidate), IoU prediction, presence, image-text alignment."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice over the last two axes, per mask."""
    prob = torch.sigmoid(logits)
    inter = (prob * target).sum((-1, -2))
    return 1 - (2 * inter + eps) / (prob.sum((-1, -2)) + target.sum((-1, -2)) + eps)


class AssistantLoss(nn.Module):
    """Loss of one episode batch.

    The mask loss takes, for each class, the candidate mask with the lowest loss (as SAM does) and is
    computed only where the class is present in the query; the IoU head regresses the true IoU of every
    candidate; the presence head learns whether the class is there; the alignment term is the
    cross-entropy of each present class region against all class texts.
    """

    def __init__(self, dice_weight: float = 1.0, bce_weight: float = 1.0, iou_weight: float = 1.0, presence_weight: float = 0.5, align_weight: float = 0.1) -> None:
        super().__init__()
        self.dice_weight = dice_weight
        self.bce_weight = bce_weight
        self.iou_weight = iou_weight
        self.presence_weight = presence_weight
        self.align_weight = align_weight

    def forward(self, out: dict[str, torch.Tensor], target: torch.Tensor, align_logits: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``out`` from :meth:`VessaAssistant.forward`, ``target`` (B, K, S, S) binary class masks."""
        masks = out["masks"]  # (B, K, M, S, S)
        tgt = target.float().unsqueeze(2).expand_as(masks)
        present = (target.flatten(2).sum(-1) > 0).float()  # (B, K)
        per_candidate = self.dice_weight * soft_dice_loss(masks, tgt) + self.bce_weight * F.binary_cross_entropy_with_logits(
            masks, tgt, reduction="none"
        ).mean((-1, -2))
        best = per_candidate.min(dim=-1).values
        n_present = present.sum().clamp(min=1)
        mask_loss = (best * present).sum() / n_present
        with torch.no_grad():
            pred = (masks > 0).float()
            inter = (pred * tgt).sum((-1, -2))
            union = ((pred + tgt) > 0).float().sum((-1, -2))
            true_iou = inter / union.clamp(min=1)
        iou_loss = (((out["iou"] - true_iou) ** 2).mean(-1) * present).sum() / n_present
        presence_loss = F.binary_cross_entropy_with_logits(out["object_logits"], present)
        loss = mask_loss + self.iou_weight * iou_loss + self.presence_weight * presence_loss
        terms = {"mask": mask_loss, "iou": iou_loss, "presence": presence_loss}
        if align_logits is not None and self.align_weight > 0:
            k = align_logits.shape[-1]
            ce = F.cross_entropy(align_logits.flatten(0, 1), torch.arange(k, device=align_logits.device).repeat(align_logits.shape[0]), reduction="none")
            align = (ce * present.flatten()).sum() / n_present
            loss = loss + self.align_weight * align
            terms["align"] = align
        terms["loss"] = loss
        return terms
