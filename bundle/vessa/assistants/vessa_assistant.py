"""The VESSA assistant in the loop: the student's prediction becomes prompts, the assistant refines it,
and (optionally) the assistant keeps learning from the student's confident predictions."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vessa.assistants.base import Assistant
from vessa.data.template_bank import TemplateBank
from vessa.prompts import mask_boxes, simulate_prompts
from vessa.losses.assistant_loss import AssistantLoss
from vessa.networks.assistant import VessaAssistant, merge_classes
from vessa.networks.image_text import ImageTextPrompts


def boxes_from_probs(probs: torch.Tensor) -> torch.Tensor:
    """Boxes (B, K, 4) of each foreground class of the argmax of (B, K+1, S, S) probabilities; NaN where a class is absent."""
    b, k1 = probs.shape[:2]
    onehot = F.one_hot(probs.max(1).indices, k1).movedim(-1, 1)[:, 1:]
    return mask_boxes(onehot.flatten(0, 1)).view(b, k1 - 1, 4)


class VessaPseudoLabeler(Assistant):
    """Pseudo-labels from the stage-1 assistant prompted by the student.

    For each unlabelled image the templates are retrieved from the bank, the student's class
    probabilities become the coarse-mask prompt and the boxes of its predicted regions the box prompt.
    The refined mask is the pseudo-label; each pixel is weighted by the assistant's predicted IoU of
    the class it was given (background pixels by the mean over classes).

    Dynamic interaction (``update_lr > 0``): :meth:`update` fine-tunes the assistant on unlabelled images
    whose student prediction is confident on at least ``update_coverage`` of the pixels, with the
    student's mask as target and stage 1's simulated prompts (so the assistant adapts to the unlabelled
    images without learning to copy its coarse-mask prompt).

    ``image_texts``: where the unlabelled images carry their own sentence (``meta["text"]``), the text token is
    made from it joined with the class text, as stage 1 trained it (None: the class text only).
    """

    def __init__(
        self,
        model: VessaAssistant,
        bank: TemplateBank,
        num_templates: int = 1,
        use_box: bool = True,
        update_lr: float = 0.0,
        update_coverage: float = 0.9,
        seed: int = 0,
        image_texts: ImageTextPrompts | None = None,
    ) -> None:
        self.model = model
        self.bank = bank
        self.num_templates = num_templates
        self.use_box = use_box
        self.update_coverage = update_coverage
        self.image_texts = image_texts
        self.optimizer = torch.optim.Adam(model.parameters(), lr=update_lr) if update_lr > 0 else None
        self.loss = AssistantLoss(align_weight=0.0)
        self.generator = torch.Generator().manual_seed(seed)
        self._bank_features: torch.Tensor | None = None
        for p in self.model.parameters():
            p.requires_grad_(self.optimizer is not None)

    def _templates(self, x: torch.Tensor, positions) -> tuple[torch.Tensor, torch.Tensor, list[list[int]]]:
        """Template images, masks and bank indices retrieved for each image of ``x``."""
        t_img, t_mask, indices = [], [], []
        for i in range(len(x)):
            pos = float(positions[i]) if positions is not None else None
            idx = self.bank.retrieve(x[i].cpu(), self.num_templates, pos)
            ti, tm = self.bank.gather(idx)
            t_img.append(ti)
            t_mask.append(tm)
            indices.append(idx)
        return torch.stack(t_img).to(x.device), torch.stack(t_mask).to(x.device), indices

    def bank_features(self, device: torch.device) -> torch.Tensor | None:
        """Embeddings of every bank exemplar, computed once while the assistant is frozen (None when it learns
        online: its encoder changes)."""
        if self.optimizer is not None:
            return None
        if self._bank_features is None or len(self._bank_features) != len(self.bank):
            images = torch.stack(self.bank.images).float()
            with torch.inference_mode():
                self._bank_features = torch.cat([self.model.encode(part.to(device))[0] for part in images.split(32)])
        return self._bank_features

    def text_prompts(self, texts: list[str] | None) -> torch.Tensor | None:
        """(B, K, text_dim) per-image prompts from the images' own sentences; None without texts (the class text is used)."""
        if self.image_texts is None or not self.model.has_class_text:
            return None
        return self.image_texts(self.model.class_text, texts)

    def refine(self, images: torch.Tensor, student_probs: torch.Tensor, meta: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        self.model.eval()
        size, (h, w) = self.bank.image_size, images.shape[-2:]
        with torch.inference_mode():
            x = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
            probs = F.interpolate(student_probs, size=(size, size), mode="bilinear", align_corners=False)
            t_img, t_mask, indices = self._templates(x, (meta or {}).get("slice_pos"))
            features = self.bank_features(x.device)
            t_feat = features[torch.tensor(indices, device=features.device)] if features is not None else None
            out = self.model(
                x, t_img, t_mask, text_embeddings=self.text_prompts((meta or {}).get("text")),
                coarse_mask=probs[:, 1:], boxes=boxes_from_probs(probs) if self.use_box else None, template_features=t_feat,
            )
            logits = F.interpolate(out["best"], size=(h, w), mode="bilinear", align_corners=False)
            labels = merge_classes(logits)
            iou = out["iou"].max(-1).values.clamp(0, 1)  # (B, K)
            per_class = torch.cat([iou.mean(1, keepdim=True), iou], dim=1)  # background first
            weights = torch.gather(per_class, 1, labels.flatten(1)).view_as(labels)
        return labels.clone(), weights.clone()  # normal tensors again: they weight losses that are differentiated

    def update(self, images: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, meta: dict | None = None) -> dict:
        if self.optimizer is None or images.dim() != 4:
            return {}
        keep = (weights.flatten(1) > 0).float().mean(1) >= self.update_coverage
        if not keep.any():
            return {"assistant_update_images": 0.0}
        size, k = self.bank.image_size, len(self.bank.foreground)
        x = F.interpolate(images[keep], size=(size, size), mode="bilinear", align_corners=False)
        y = F.interpolate(labels[keep][:, None].float(), size=(size, size), mode="nearest")[:, 0].long()
        target = F.one_hot(y, k + 1).movedim(-1, 1)[:, 1:].float()
        positions = (meta or {}).get("slice_pos")
        t_img, t_mask, _ = self._templates(x, positions[keep.cpu()] if positions is not None else None)
        prompts = {n: (p.to(x.device) if p is not None else None) for n, p in simulate_prompts(target.cpu(), self.generator).items()}
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        terms = self.loss(self.model(x, t_img, t_mask, **prompts), target)
        terms["loss"].backward()
        self.optimizer.step()
        self.model.eval()
        return {"assistant_update_loss": float(terms["loss"].detach()), "assistant_update_images": float(keep.sum())}

    def state_dict(self) -> dict:
        state = {"model": self.model.state_dict()}
        if self.optimizer is not None:
            state["optimizer"] = self.optimizer.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        if self.optimizer is not None and "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
