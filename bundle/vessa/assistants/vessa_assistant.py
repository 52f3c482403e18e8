"""The VESSA assistant in the loop: the student's prediction becomes prompts, the assistant refines it."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vessa.assistants.base import Assistant
from vessa.data.template_bank import TemplateBank
from vessa.networks.assistant import VessaAssistant, merge_classes


def boxes_from_probs(probs: torch.Tensor) -> torch.Tensor:
    """Boxes (B, K, 4) of each foreground class of the argmax of (B, K+1, S, S) probabilities; NaN where a class is absent."""
    b, k1, s, _ = probs.shape
    pred = probs.argmax(1)
    boxes = torch.full((b, k1 - 1, 4), float("nan"), device=probs.device)
    for i in range(b):
        for k in range(1, k1):
            ys, xs = (pred[i] == k).nonzero(as_tuple=True)
            if ys.numel():
                boxes[i, k - 1] = torch.stack([xs.min(), ys.min(), xs.max(), ys.max()]).float()
    return boxes


class VessaPseudoLabeler(Assistant):
    """Pseudo-labels from the stage-1 assistant prompted by the student.

    For each unlabelled image the templates are retrieved from the bank, the student's class
    probabilities become the coarse-mask prompt and the boxes of its predicted regions the box prompt.
    The refined mask is the pseudo-label; each pixel is weighted by the assistant's predicted IoU of
    the class it was given (background pixels by the mean over classes).
    """

    def __init__(self, model: VessaAssistant, bank: TemplateBank, num_templates: int = 1, use_box: bool = True) -> None:
        self.model = model
        self.bank = bank
        self.num_templates = num_templates
        self.use_box = use_box
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def refine(self, images: torch.Tensor, student_probs: torch.Tensor, meta: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        self.model.eval()
        size, (h, w) = self.bank.image_size, images.shape[-2:]
        x = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
        probs = F.interpolate(student_probs, size=(size, size), mode="bilinear", align_corners=False)
        positions = (meta or {}).get("slice_pos")
        t_img, t_mask = [], []
        for i in range(len(x)):
            pos = float(positions[i]) if positions is not None else None
            ti, tm = self.bank.gather(self.bank.retrieve(x[i].cpu(), self.num_templates, pos))
            t_img.append(ti)
            t_mask.append(tm)
        device = images.device
        out = self.model(
            x,
            torch.stack(t_img).to(device),
            torch.stack(t_mask).to(device),
            coarse_mask=probs[:, 1:],
            boxes=boxes_from_probs(probs) if self.use_box else None,
        )
        logits = F.interpolate(out["best"], size=(h, w), mode="bilinear", align_corners=False)
        labels = merge_classes(logits)
        iou = out["iou"].max(-1).values.clamp(0, 1)  # (B, K)
        per_class = torch.cat([iou.mean(1, keepdim=True), iou], dim=1)  # background first
        weights = torch.gather(per_class, 1, labels.flatten(1)).view_as(labels)
        return labels, weights
