"""DuSSS's assistant: a text-guided vision-language segmenter that refines the student's pseudo-labels.

It learns from the labelled part of every stage-2 batch (text-guided mask loss plus dual contrastive
learning with semantic-similarity supervision) and, for unlabelled images, gives two targets: the merged
pseudo-label (student or teacher probabilities averaged with its text-guided mask) and the text-guided
mask itself; Mean Teacher, DuSSS's host, averages the losses on both. Where the images carry their own sentence,
the text of class k for image b joins it with the class description (:mod:`vessa.networks.image_text`).
Before stage 2, :meth:`TextVLMAssistant.pretrain` is DuSSS's first step: vision-language pre-training on the
image-text pairs of every training image.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from vessa.assistants.base import Assistant, _minmax_slices
from vessa.data.template_bank import resize_image, resize_label
from vessa.torch_files import atomic_torch_save
from vessa.training.checkpoints import as_flag
from vessa.losses.contrastive import DualContrastiveLoss, text_mask_loss
from vessa.networks.image_text import ImageTextPrompts
from vessa.networks.text_encoder import TextEncoder, class_text_embeddings
from vessa.networks.text_vlm import TextGuidedSegmenter, region_gaussians

logger = logging.getLogger(__name__)


def _views(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A second view for the image-image contrast: random gamma and contrast, plus Gaussian noise."""
    b = len(x)
    gamma = torch.exp(torch.empty(b, 1, 1, 1).uniform_(-0.4, 0.4, generator=generator)).to(x.device)
    contrast = torch.empty(b, 1, 1, 1).uniform_(0.8, 1.2, generator=generator).to(x.device)
    noise = torch.randn(x.shape, generator=generator).to(x.device) * 0.03
    return (x.clamp(min=0) ** gamma) * contrast + noise


class TextVLMAssistant(Assistant):
    """Text-guided pseudo-label refinement (DuSSS).

    Args:
        num_classes: foreground classes K.
        in_channels: image channels.
        descriptions: K lists of class descriptions (text prompts), e.g. from :func:`vessa.data.text_prompts.class_descriptions`.
        text_model_path: local folder of the ``transformers`` sentence model (None: the packaged all-MiniLM-L6-v2).
        embed_dim: width of the joint image-text space.
        temperature, sss_lambda, cross_weight, image_weight, text_weight: :class:`DualContrastiveLoss`.
        mask_weight, contrastive_weight: weights of the text-guided mask loss and of the dual contrastive loss.
        learning_rate: Adam learning rate of the segmenter.
        merge_weight: weight of the text-guided probabilities in the merged pseudo-label (the rest is the student's).
        train_slices: on 3D batches, the number of slices per labelled patch it learns from each step.
        confidence_threshold: pixels whose target confidence is below it get weight 0 (0: every pixel, weighted by its confidence).
        use_image_text: join each image's own sentence (``text`` of its case) with the class description; off: the
            class descriptions only.
        use_text_target: give the text-guided mask as a second target of the unlabelled loss (DuSSS's text-guided loss);
            off: the merged pseudo-label only.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        descriptions: list[list[str]],
        text_model_path: str | None = None,
        embed_dim: int = 32,
        temperature: float = 0.07,
        sss_lambda: float = 0.5,
        cross_weight: float = 1.0,
        image_weight: float = 0.5,
        text_weight: float = 0.5,
        mask_weight: float = 1.0,
        contrastive_weight: float = 0.1,
        learning_rate: float = 1e-3,
        merge_weight: float = 0.5,
        train_slices: int = 4,
        confidence_threshold: float = 0.0,
        use_image_text: bool = True,
        use_text_target: bool = True,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        if len(descriptions) != num_classes:
            raise ValueError(f"text_vlm needs one list of descriptions per foreground class: got {len(descriptions)} for {num_classes} classes")
        self.device = torch.device(device)
        encoder = TextEncoder(text_model_path)
        texts = [t for class_texts in descriptions for t in class_texts]
        self.text_features = encoder.encode_cached(texts).to(self.device)  # frozen: encoded once
        self.text_class = torch.tensor([k for k, class_texts in enumerate(descriptions) for _ in class_texts], device=self.device)
        self.class_features = class_text_embeddings(encoder, {}, descriptions).to(self.device)  # the class texts the prompts start from
        self.image_texts = ImageTextPrompts(encoder=encoder) if use_image_text else None
        self.use_text_target = use_text_target
        self.descriptions = descriptions
        self.model = TextGuidedSegmenter(in_channels, int(self.text_features.shape[-1]), embed_dim).to(self.device)
        self.contrastive = DualContrastiveLoss(temperature, sss_lambda, cross_weight, image_weight, text_weight)
        self.mask_weight = mask_weight
        self.contrastive_weight = contrastive_weight
        self.merge_weight = merge_weight
        self.train_slices = train_slices
        self.confidence_threshold = confidence_threshold
        self.num_classes = num_classes
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=learning_rate)
        self.generator = torch.Generator().manual_seed(seed)
        self.seed = seed

    def class_embeddings(self, text_mu: torch.Tensor | None = None) -> torch.Tensor:
        """(K, D) class text embeddings: the mean of each class's description means (``text_mu``, computed when not given)."""
        mu = text_mu if text_mu is not None else self.model.texts(self.text_features)[0]
        return torch.stack([mu[self.text_class == k].mean(0) for k in range(self.num_classes)])

    def image_prompts(self, texts: list[str] | None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Gaussian embeddings (mean, variance; each (B, K, D)) of the per-image class prompts of a batch whose images
        have ``texts``; None when no image has one or per-image texts are off."""
        prompts = self.image_texts(self.class_features, texts) if self.image_texts is not None else None
        if prompts is None:
            return None
        b, k, t = prompts.shape
        mu, var = self.model.texts(prompts.reshape(b * k, t))
        return mu.view(b, k, -1), var.view(b, k, -1)

    def _class_mu(self, t_mu: torch.Tensor, prompts: tuple[torch.Tensor, torch.Tensor] | None, has_text: torch.Tensor | None) -> torch.Tensor:
        """(K, D) class embeddings, or (B, K, D) where the batch has per-image prompts (images without a text keep the class's)."""
        class_mu = self.class_embeddings(t_mu)
        if prompts is None:
            return class_mu
        return torch.where(has_text[:, None, None], prompts[0], class_mu[None].expand_as(prompts[0]))

    def _labelled_2d(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, list[str] | None]:
        x, y, texts = batch["image"], batch["label"], batch.get("text")
        if x.dim() == 5:  # a few slices of each 3D patch, each min-max scaled as refine_volume does
            depth = x.shape[-1]
            zs = torch.randint(0, depth, (self.train_slices,), generator=self.generator).to(x.device)
            x = _minmax_slices(x[..., zs].permute(0, 4, 1, 2, 3).flatten(0, 1))
            y = y[..., zs].permute(0, 3, 1, 2).flatten(0, 1)
            texts = [t for t in texts for _ in range(self.train_slices)] if texts else None
        return x, y, texts

    def losses(self, images: torch.Tensor, labels: torch.Tensor, texts: list[str] | None = None) -> dict[str, torch.Tensor]:
        """Text-guided mask loss on two views of labelled images and the dual contrastive loss of their class regions
        against the class descriptions and (with ``texts``) the images' own prompts."""
        b = len(images)
        target = F.one_hot(labels.long(), self.num_classes + 1).movedim(-1, 1)[:, 1:].float()
        views = torch.cat([images, _views(images, self.generator)])
        p_mu, p_var = self.model.pixels(views)
        t_mu, t_var = self.model.texts(self.text_features)
        prompts = self.image_prompts(texts)
        sentence = _sentence_ids(texts, b, images.device)
        class_mu = self._class_mu(t_mu, prompts, sentence >= 0)
        class_mu2 = torch.cat([class_mu, class_mu]) if class_mu.dim() == 3 else class_mu
        mask = text_mask_loss(self.model.mask_logits(p_mu, class_mu2), torch.cat([target, target]))
        r_mu, r_var, r_cls, r_img = region_gaussians(p_mu, p_var, torch.cat([target, target]))
        texts_g, text_id = (t_mu, t_var, self.text_class), torch.full_like(self.text_class, -1)
        if prompts is not None:  # the prompts of the images that have a sentence join the class descriptions
            rows = (sentence >= 0).nonzero(as_tuple=True)[0]
            cls = torch.arange(self.num_classes, device=images.device).repeat(len(rows))
            texts_g = (
                torch.cat([t_mu, prompts[0][rows].flatten(0, 1)]),
                torch.cat([t_var, prompts[1][rows].flatten(0, 1)]),
                torch.cat([self.text_class, cls]),
            )
            text_id = torch.cat([text_id, sentence[rows].repeat_interleave(self.num_classes)])
        dual = self.contrastive(
            (r_mu, r_var, r_cls), texts_g, view_of=(r_img >= b).long(), region_text=sentence[r_img % b], text_id=text_id
        )
        loss = self.mask_weight * mask + self.contrastive_weight * dual["loss"]
        return {"loss": loss, "mask": mask, **{k: v for k, v in dual.items() if k != "loss"}}

    def pair_losses(self, images: torch.Tensor, texts: list[str]) -> dict[str, torch.Tensor]:
        """DuSSS's vision-language pre-training objective on image-text pairs (no masks needed): the dual contrastive
        loss of whole-image Gaussian embeddings (two views; :meth:`TextGuidedSegmenter.images`, sharing the backbone
        of the text-guided masks) against the Gaussian embeddings of the images' sentences.
        Each distinct sentence is its own class: an image matches its sentence and the images described alike."""
        sentence = _sentence_ids(texts, len(images), images.device)
        keep = sentence >= 0
        images, sentence = images[keep], sentence[keep]
        unique = list(dict.fromkeys(t for t in texts if t))
        views = torch.cat([images, _views(images, self.generator)])
        r_mu, r_var = self.model.images(views)
        s_mu, s_var = self.model.texts(self.image_texts.encoder.encode_cached(unique).to(images.device))
        ids = torch.arange(len(unique), device=images.device)
        view = (torch.arange(len(views), device=views.device) >= len(images)).long()
        dual = self.contrastive((r_mu, r_var, torch.cat([sentence, sentence])), (s_mu, s_var, ids), view_of=view)
        return {f"pair_{k}": v for k, v in dual.items()}

    def pretrain(
        self,
        slices: list[dict],
        labeled_slices: list[dict],
        iterations: int,
        image_size: int,
        batch_size: int = 4,
        path: str | Path | None = None,
        resume: bool | str = True,
    ) -> dict:
        """DuSSS's first step, before stage 2: ``iterations`` steps of vision-language pre-training on the image-text
        pairs of every training image in ``slices`` (labelled and unlabelled alike: a text is not a label, no
        unlabelled mask is read), each step adding the labelled losses of :meth:`losses` on a batch of
        ``labeled_slices``; both are drawn epoch-wise (every image once per pass, in a new order). Written atomically
        to ``path`` and, with ``resume``, loaded from it instead when it exists (a resumed run does not pre-train
        twice). Returns the first and last losses."""
        path = Path(path) if path is not None else None
        if as_flag(resume, "resume") and path is not None and path.is_file():
            state = torch.load(path, map_location=self.device, weights_only=True)
            self.load_state_dict(state)
            logger.info(f"VLM pre-training loaded from {path} ({state['iterations']} iterations).")
            return state["summary"]
        paired = [s for s in slices if s.get("text")] if self.image_texts is not None else []
        if not paired:
            logger.warning("VLM pre-training: no training image has a text (or use_image_text is off): only the labelled losses train.")
        g = torch.Generator().manual_seed(self.seed + 1)
        streams = {"paired": _shuffled(len(paired), g), "labeled": _shuffled(len(labeled_slices), g)}
        draw = lambda pool, name: [pool[next(streams[name])] for _ in range(batch_size)]  # noqa: E731
        self.model.train()
        history = []
        for _ in tqdm(range(iterations), desc="VLM pre-training", leave=False):
            self.optimizer.zero_grad(set_to_none=True)
            terms = {}
            if paired:
                pairs = draw(paired, "paired")
                images = torch.stack([resize_image(s["image"], image_size) for s in pairs]).to(self.device)
                terms.update(self.pair_losses(images, [s["text"] for s in pairs]))
            if labeled_slices:
                picked = draw(labeled_slices, "labeled")
                x = torch.stack([resize_image(s["image"], image_size) for s in picked]).to(self.device)
                y = torch.stack([resize_label(s["label"], image_size) for s in picked]).to(self.device)
                terms.update(self.losses(x, y, [s.get("text", "") for s in picked]))
            loss = terms.get("pair_loss", 0.0) + terms.get("loss", 0.0)
            loss.backward()
            self.optimizer.step()
            history.append({k: float(v.detach()) for k, v in terms.items()})
        summary = {"iterations": iterations, "first": history[0] if history else {}, "last": history[-1] if history else {}}
        logger.info(f"VLM pre-training: {iterations} iterations, losses first {summary['first']} last {summary['last']}.")
        if path is not None:
            atomic_torch_save({**self.state_dict(), "iterations": iterations, "summary": summary}, path)
        return summary

    def train_step(self, batch: dict) -> dict:
        x, y, texts = self._labelled_2d(batch)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        terms = self.losses(x, y, texts)
        terms["loss"].backward()
        self.optimizer.step()
        return {f"vlm_{k}": float(v.detach()) for k, v in terms.items()}

    @torch.no_grad()
    def text_guided_probs(self, images: torch.Tensor, texts: list[str] | None = None) -> torch.Tensor:
        """(B, K+1, H, W) class probabilities from the text-guided masks (background logit 0, as K sigmoids would give
        for K = 1); with ``texts``, each image's mask follows its own prompt."""
        self.model.eval()
        p_mu, _ = self.model.pixels(images)
        prompts = self.image_prompts(texts)
        class_mu = self._class_mu(self.model.texts(self.text_features)[0], prompts, _sentence_ids(texts, len(images), images.device) >= 0)
        logits = self.model.mask_logits(p_mu, class_mu)
        return torch.softmax(torch.cat([torch.zeros_like(logits[:, :1]), logits], 1), 1)

    def refine_all(self, images: torch.Tensor, student_probs: torch.Tensor, meta: dict | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        text_probs = self.text_guided_probs(images, (meta or {}).get("text"))
        merged = (1 - self.merge_weight) * student_probs + self.merge_weight * text_probs
        targets = []
        for probs in (merged, text_probs) if self.use_text_target else (merged,):
            conf, label = probs.max(1)
            targets.append((label, conf * (conf >= self.confidence_threshold)))
        return targets

    def refine(self, images: torch.Tensor, student_probs: torch.Tensor, meta: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.refine_all(images, student_probs, meta)[0]

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        missing, unexpected = self.model.load_state_dict(state["model"], strict=False)
        if unexpected or any(not k.startswith("global_head.") for k in missing):
            raise RuntimeError(f"text_vlm state does not match the segmenter: missing {missing}, unexpected {unexpected}")
        if missing:  # saved before the whole-image head existed: the segmenter's optimiser state is per parameter group
            return
        self.optimizer.load_state_dict(state["optimizer"])


def _shuffled(n: int, generator: torch.Generator):
    """Indices 0..n-1 in a new random order every pass, without end (each pass sees every item once, as an epoch does)."""
    while n:
        yield from torch.randperm(n, generator=generator).tolist()


def _sentence_ids(texts: list[str] | None, n: int, device) -> torch.Tensor:
    """(n,) index of each image's sentence among the batch's distinct sentences; -1 for an image without one."""
    if not texts:
        return torch.full((n,), -1, dtype=torch.long, device=device)
    ids = {t: i for i, t in enumerate(dict.fromkeys(t for t in texts if t))}
    return torch.tensor([ids.get(t, -1) if t else -1 for t in texts], dtype=torch.long, device=device)
