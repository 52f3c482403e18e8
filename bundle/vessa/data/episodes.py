"""Stage-1 episodes: a labelled query slice and templates retrieved for it from the bank."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vessa.data.streams import RandomStreamDataset
from vessa.data.template_bank import TemplateBank, resize_image, resize_label


def augment_pair(image: torch.Tensor, label: torch.Tensor, generator: torch.Generator, return_theta: bool = False):
    """Random rotation, scale, shift and gamma of a (C, S, S) image and its (S, S) label.

    With ``return_theta`` also returns the (2, 3) affine of :func:`torch.nn.functional.affine_grid` that
    maps the output to the input, so maps of the un-augmented image (cached pseudo-labels) can follow.
    """
    r = lambda lo, hi: float(lo + (hi - lo) * torch.rand(1, generator=generator))  # noqa: E731
    angle, scale = math.radians(r(-15, 15)), r(0.85, 1.15)
    theta = torch.tensor(
        [[math.cos(angle) / scale, -math.sin(angle) / scale, r(-0.08, 0.08)], [math.sin(angle) / scale, math.cos(angle) / scale, r(-0.08, 0.08)]]
    )[None]
    grid = F.affine_grid(theta, [1, 1, *image.shape[-2:]], align_corners=False)
    img = F.grid_sample(image[None], grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
    lab = F.grid_sample(label[None, None].float(), grid, mode="nearest", align_corners=False)[0, 0].long()
    img = img.clamp(0, 1) ** r(0.7, 1.5)
    return (img, lab, theta[0]) if return_theta else (img, lab)


def draw_templates(bank: TemplateBank, candidates: list[int], count: int, slots: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Templates (slots, C, S, S) and their class masks (slots, K, S, S): ``count`` exemplars drawn from the retrieved
    ``candidates``, repeated to fill ``slots`` (a repeated template adds nothing new to the matching)."""
    pick = torch.randperm(len(candidates), generator=generator)[:count].tolist()
    chosen = [candidates[i] for i in pick]
    return bank.gather([chosen[i % len(chosen)] for i in range(slots)])


class EpisodeDataset(RandomStreamDataset):
    """Random (query, templates) episodes drawn from labelled slices only.

    Args:
        slices: labelled slices from :func:`vessa.data.load_slices` (with labels).
        bank: template bank built from the same labelled split.
        num_templates: templates per episode, drawn from the ``retrieve_k`` most similar exemplars of
            other cases.
        length: episodes of the whole run; ``seed``, ``rank``: its random stream (:class:`RandomStreamDataset`).
    """

    def __init__(
        self, slices: list[dict], bank: TemplateBank, num_templates: int = 1, retrieve_k: int = 3, length: int = 100, augment: bool = True, seed: int = 0, rank: int = 0
    ) -> None:
        super().__init__(length, seed, rank)
        self.slices = [s for s in slices if (s["label"] > 0).any()]
        self.bank = bank
        self.num_templates = num_templates
        self.retrieve_k = max(retrieve_k, num_templates)
        self.augment = augment
        self.has_text = any(s.get("text") for s in self.slices)

    def __getitem__(self, index: int) -> dict:
        g = self.generator(index)
        s = self.slices[int(torch.randint(0, len(self.slices), (1,), generator=g))]
        size = self.bank.image_size
        image, label = resize_image(s["image"], size), resize_label(s["label"], size)
        if self.augment:
            image, label = augment_pair(image, label, g)
        candidates = self.bank.retrieve(image, self.retrieve_k, s.get("slice_pos"), exclude_id=s["id"])
        templates, template_masks = draw_templates(self.bank, candidates, self.num_templates, self.num_templates, g)
        target = torch.stack([(label == v) for v in self.bank.foreground]).float()
        item = {"image": image, "label": target, "templates": templates, "template_masks": template_masks}
        if self.has_text:
            item["text"] = s.get("text", "")  # the query's own sentence ("" for a case without one)
        return item
