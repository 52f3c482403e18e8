"""Pre-training episodes of VESSA-base: a data set, a binary task (one class, at times two merged or one inverted),
a query showing it and 1 to k templates of the same data set showing it, under strong augmentation, so that the
assistant learns to follow its templates rather than to remember the data sets."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vessa.data.corpus import CorpusSet
from vessa.data.episodes import augment_pair, draw_templates
from vessa.data.streams import RandomStreamDataset
from vessa.networks.text_encoder import class_prompts

CHANNELS = 3  # gray and RGB sets in one model: a gray image is repeated to three channels


def as_rgb(image: torch.Tensor) -> torch.Tensor:
    """(C, S, S) -> (3, S, S): a gray image repeated; an RGB one unchanged."""
    return image.expand(CHANNELS, -1, -1) if image.shape[0] == 1 else image


def task_text(names: list[str], inverted: bool) -> str:
    """The text of a binary task, in the words of the stage-1 class prompts (:func:`class_prompts`)."""
    text = class_prompts({1: " and the ".join(names)})[0]
    return text.replace("showing the", "showing everything except the") if inverted else text


class PretrainEpisodeDataset(RandomStreamDataset):
    """Random binary-task episodes across the data sets of a corpus (:func:`vessa.data.corpus.load_corpus`).

    Items: ``image`` (3, S, S), ``label`` (1, S, S), ``templates`` (max_templates, 3, S, S) of which 1 to
    ``max_templates`` distinct, ``template_masks`` (max_templates, 1, S, S) and ``task`` (its text).

    Args:
        corpus: the data sets; ``weight`` sets how often each is drawn.
        max_templates: templates per episode at most (each episode draws how many, 1 to this).
        retrieve_k: templates are drawn among this many most similar exemplars of other cases showing the task.
        p_merge: probability of a task that merges the class with another class of the data set.
        p_invert_task: probability of the inverted task (everything except the class).
        p_invert_intensity: probability that query and templates are all shown with inverted intensities.
        p_channel_shuffle: probability that an RGB episode has its colour channels permuted (the same way throughout).
        p_mosaic: probability that query and templates each become one quadrant of a 2 x 2 mosaic with images of other
            data sets: with one class per data set, a model could otherwise segment "the structure of this kind of
            image" and ignore its templates (it then does not transfer to a new data set).
        length, seed, rank: the random stream (:class:`RandomStreamDataset`).
    """

    def __init__(
        self,
        corpus: list[CorpusSet],
        max_templates: int = 3,
        retrieve_k: int = 8,
        length: int = 1000,
        p_merge: float = 0.15,
        p_invert_task: float = 0.05,
        p_invert_intensity: float = 0.1,
        p_channel_shuffle: float = 0.2,
        p_mosaic: float = 0.5,
        seed: int = 0,
        rank: int = 0,
    ) -> None:
        super().__init__(length, seed, rank)
        self.corpus = corpus
        self.weights = torch.tensor([c.weight for c in corpus], dtype=torch.float)
        if not (self.weights >= 0).all() or self.weights.sum() <= 0:
            raise ValueError(f"data set weights must be non-negative with a positive sum, got {self.weights.tolist()}")
        self.showing = [{v: c.with_class(v) for v in c.classes} for c in corpus]
        self.max_templates = max_templates
        self.retrieve_k = max(retrieve_k, max_templates)
        self.p_merge, self.p_invert_task = p_merge, p_invert_task
        self.p_invert_intensity, self.p_channel_shuffle, self.p_mosaic = p_invert_intensity, p_channel_shuffle, p_mosaic

    def _mosaics(self, images: torch.Tensor, masks: torch.Tensor, d: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Each of the (1 + T) images shrunk into a random quadrant of a 2 x 2 mosaic whose other quadrants hold images
        of other data sets, its mask in its quadrant only: which quadrant holds the task only the templates tell."""
        others = [i for i in range(len(self.corpus)) if i != d]
        half = images.shape[-1] // 2
        shrink = lambda x: F.interpolate(x[None], size=(half, half), mode="bilinear", align_corners=False)[0]  # noqa: E731
        out_images, out_masks = torch.zeros_like(images), torch.zeros_like(masks)
        for n in range(images.shape[0]):
            place = int(torch.randint(0, 4, (1,), generator=g))
            for quadrant in range(4):
                if quadrant == place:
                    tile, tile_mask = shrink(images[n]), shrink(masks[n][None])[0].round()
                else:
                    bank = self.corpus[others[int(torch.randint(0, len(others), (1,), generator=g))]].bank
                    tile, tile_mask = shrink(as_rgb(bank.images[int(torch.randint(0, len(bank), (1,), generator=g))].float())), 0.0
                y, x = divmod(quadrant, 2)
                out_images[n, :, y * half : (y + 1) * half, x * half : (x + 1) * half] = tile
                out_masks[n, y * half : (y + 1) * half, x * half : (x + 1) * half] = tile_mask
        return out_images, out_masks

    def __getitem__(self, index: int) -> dict:
        g = self.generator(index)
        chance = lambda: float(torch.rand(1, generator=g))  # noqa: E731
        pick = lambda seq: seq[int(torch.randint(0, len(seq), (1,), generator=g))]  # noqa: E731
        d = int(torch.multinomial(self.weights, 1, generator=g))
        data, showing = self.corpus[d], self.showing[d]
        bank = data.bank
        value = pick(list(showing))
        task = [value]
        others = [v for v in showing if v != value]
        if others and chance() < self.p_merge:
            task.append(pick(others))
        inverted = chance() < self.p_invert_task  # not in a mosaic, where the complement would take in the other images
        q = pick(showing[value])
        candidates = bank.retrieve(bank.images[q].float(), self.retrieve_k, bank.positions[q], exclude_id=bank.ids[q], among=showing[value])
        count = 1 + int(torch.randint(0, self.max_templates, (1,), generator=g))
        templates, template_masks = draw_templates(bank, candidates, count, self.max_templates, g)
        channels = [bank.foreground.index(v) for v in task]
        template_masks = template_masks[:, channels].amax(1)  # (T, S, S) the task's mask of each template
        query, label = augment_pair(bank.images[q].float(), bank.masks[q].long(), g)
        target = torch.isin(label, torch.tensor(task)).float()
        pairs = [augment_pair(t, m.long(), g) for t, m in zip(templates, template_masks)]
        templates, template_masks = torch.stack([t for t, _ in pairs]), torch.stack([m for _, m in pairs]).float()
        images = torch.cat([as_rgb(query)[None], torch.stack([as_rgb(t) for t in templates])])
        masks = torch.cat([target[None], template_masks])
        if len(self.corpus) > 1 and chance() < self.p_mosaic:
            images, masks = self._mosaics(images, masks, d, g)
            inverted = False
        elif inverted:
            masks = 1 - masks
        target, template_masks = masks[0], masks[1:]
        if chance() < self.p_invert_intensity:
            images = 1 - images
        if query.shape[0] == CHANNELS and chance() < self.p_channel_shuffle:
            images = images[:, torch.randperm(CHANNELS, generator=g)]
        return {
            "image": images[0].contiguous(),
            "label": target[None],
            "templates": images[1:].contiguous(),
            "template_masks": template_masks[:, None],
            "task": task_text([bank.labels[v] for v in task], inverted),
        }
