"""SemiSAM+ with VESSA-base as the frozen generalist: where no SAM2 weights can be had, the assistant pre-trained
across data sets (configs/pretrain.json) answers the prompts SemiSAM+ gives SAM2 (points, optionally the box,
and the student's probability as the mask prompt), one class at a time, with the class prompt as its text."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from vessa.assistants.generalist import PromptedGeneralist
from vessa.assistants.generalist_prompts import box_from_mask, prompts_from_mask
from vessa.data.template_bank import TemplateBank, resize_image
from vessa.networks.pretrained import assistant_from_base
from vessa.networks.text_encoder import TextEncoder, class_text_embeddings

__all__ = ["BaseGeneralist", "TEMPLATES"]

TEMPLATES = ("bank", "self")


class BaseGeneralist(PromptedGeneralist):
    """Frozen VESSA-base prompted as SemiSAM+ prompts SAM2.

    Args:
        checkpoint: the VESSA-base file (``models/vessa_base_no_acdc.pt`` for ACDC figures).
        labels: the data set's labels (value -> name); each foreground class is asked for on its own.
        in_channels: the data set's image channels.
        templates: ``bank``: the ``num_templates`` most similar labelled slices showing the class (from
            ``labeled_slices``); ``self``: the image itself with the student's mask as its only template
            (positional prompts alone, as SemiSAM+ uses SAM2).
        num_points, use_box, use_mask_prompt, draws, min_area, seed: SemiSAM+'s prompting, as for SAM2
            (:class:`vessa.assistants.sam2_generalist.Sam2Generalist`).
    """

    def __init__(
        self,
        checkpoint: str,
        labels: dict[int, str],
        in_channels: int = 1,
        templates: str = "bank",
        labeled_slices: list[dict] | None = None,
        num_templates: int = 3,
        num_points: int = 5,
        use_box: bool = False,
        use_mask_prompt: bool = True,
        draws: int = 1,
        min_area: int = 10,
        text_model_path: str | None = None,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        if templates not in TEMPLATES:
            raise ValueError(f"templates must be one of {TEMPLATES}, got {templates!r}")
        if int(draws) < 1 or int(num_points) < 1:
            raise ValueError(f"draws and num_points must be >= 1, got draws={draws}, num_points={num_points}.")
        labels = {int(k): v for k, v in labels.items()}
        self.device = torch.device(device)
        encoder = TextEncoder(text_model_path)
        self.class_text = class_text_embeddings(encoder, labels).to(self.device)  # (K, T), one row per foreground class
        self.model = assistant_from_base(checkpoint, {0: "background", 1: "class"}, in_channels, encoder).to(self.device)  # asked one class at a time
        self.model.requires_grad_(False)
        self.size = self.model.image_size
        self.bank = TemplateBank.from_slices(labeled_slices or [], labels, self.size) if templates == "bank" else None
        self.showing = {k: [i for i, m in enumerate(self.bank.masks) if bool((m == k).any())] or None for k in self.bank.foreground} if self.bank else {}
        self.templates, self.num_templates = templates, int(num_templates)
        self.num_points, self.use_box, self.use_mask_prompt = int(num_points), bool(use_box), bool(use_mask_prompt)
        self.draws, self.min_area = int(draws), int(min_area)
        self.rng = np.random.default_rng(seed)

    def _templates(self, x: torch.Tensor, mask: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, T, C, S, S) templates and (1, T, 1, S, S) masks of class ``k`` for the (1, C, S, S) image ``x``."""
        if self.bank is None:
            return x[:, None], mask[None, None, None]
        found = self.bank.retrieve(x[0].cpu(), self.num_templates, among=self.showing[k])
        images, masks = self.bank.gather(found)
        channel = self.bank.foreground.index(k)
        return images[None].to(self.device), masks[None, :, channel : channel + 1].to(self.device)

    @torch.no_grad()
    def _answers(self, image: torch.Tensor, probs: torch.Tensor, student: np.ndarray, prompted: list[int]) -> torch.Tensor:
        h, w = student.shape
        x = resize_image(image.cpu(), self.size)[None].to(self.device)
        features = self.model.encode(x)
        scale = np.array([self.size / w, self.size / h], dtype=np.float32)
        out = []
        for k in prompted:
            mask = torch.from_numpy(student == k).float()
            small = F.interpolate(mask[None, None], size=(self.size, self.size), mode="nearest")[0, 0].to(self.device)
            templates, template_masks = self._templates(x, small, k)
            coarse = F.interpolate(probs[k][None, None].float(), size=(self.size, self.size), mode="bilinear", align_corners=False).to(self.device) if self.use_mask_prompt else None
            box = box_from_mask(student == k) if self.use_box else None
            boxes = torch.from_numpy(np.concatenate([box[:2] * scale, box[2:] * scale]))[None, None].to(self.device) if box is not None else None
            draws = []
            for _ in range(self.draws):
                coords, point_labels = prompts_from_mask(student == k, self.num_points, rng=self.rng)
                answer = self.model(
                    x, templates, template_masks, text_embeddings=self.class_text[k - 1][None], coarse_mask=coarse,
                    points=torch.from_numpy(coords * scale)[None, None].to(self.device), point_labels=torch.from_numpy(point_labels)[None, None].to(self.device),
                    boxes=boxes, query_features=features,
                )
                logits = F.interpolate(answer["best"], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
                draws.append((logits > 0).float().cpu())
            out.append(torch.stack(draws))
        return torch.stack(out)
