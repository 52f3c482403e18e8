"""DuSSS's assistant: a text-guided vision-language segmenter that refines the student's pseudo-labels.

It learns from the labelled part of every stage-2 batch (text-guided mask loss plus dual contrastive
learning with semantic-similarity supervision) and, for unlabelled images, gives two targets: the merged
pseudo-label (student or teacher probabilities averaged with its text-guided mask) and the text-guided
mask itself; Mean Teacher, DuSSS's host, averages the losses on both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vessa.assistants.base import Assistant, _minmax_slices
from vessa.losses.contrastive import DualContrastiveLoss, text_mask_loss
from vessa.networks.text_encoder import TextEncoder
from vessa.networks.text_vlm import TextGuidedSegmenter, region_gaussians


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

    def class_embeddings(self, text_mu: torch.Tensor | None = None) -> torch.Tensor:
        """(K, D) class text embeddings: the mean of each class's description means (``text_mu``, computed when not given)."""
        mu = text_mu if text_mu is not None else self.model.texts(self.text_features)[0]
        return torch.stack([mu[self.text_class == k].mean(0) for k in range(self.num_classes)])

    def _labelled_2d(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch["image"], batch["label"]
        if x.dim() == 5:  # a few slices of each 3D patch, each min-max scaled as refine_volume does
            depth = x.shape[-1]
            zs = torch.randint(0, depth, (self.train_slices,), generator=self.generator).to(x.device)
            x = _minmax_slices(x[..., zs].permute(0, 4, 1, 2, 3).flatten(0, 1))
            y = y[..., zs].permute(0, 3, 1, 2).flatten(0, 1)
        return x, y

    def losses(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Text-guided mask loss on two views of labelled images and the dual contrastive loss of their class regions and the class texts."""
        target = F.one_hot(labels.long(), self.num_classes + 1).movedim(-1, 1)[:, 1:].float()
        views = torch.cat([images, _views(images, self.generator)])
        p_mu, p_var = self.model.pixels(views)
        t_mu, t_var = self.model.texts(self.text_features)
        mask = text_mask_loss(self.model.mask_logits(p_mu, self.class_embeddings(t_mu)), torch.cat([target, target]))
        r_mu, r_var, r_cls, r_img = region_gaussians(p_mu, p_var, torch.cat([target, target]))
        dual = self.contrastive((r_mu, r_var, r_cls), (t_mu, t_var, self.text_class), view_of=(r_img >= len(images)).long())
        loss = self.mask_weight * mask + self.contrastive_weight * dual["loss"]
        return {"loss": loss, "mask": mask, **{k: v for k, v in dual.items() if k != "loss"}}

    def train_step(self, batch: dict) -> dict:
        x, y = self._labelled_2d(batch)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        terms = self.losses(x, y)
        terms["loss"].backward()
        self.optimizer.step()
        return {f"vlm_{k}": float(v.detach()) for k, v in terms.items()}

    @torch.no_grad()
    def text_guided_probs(self, images: torch.Tensor) -> torch.Tensor:
        """(B, K+1, H, W) class probabilities from the text-guided masks (background logit 0, as K sigmoids would give for K = 1)."""
        self.model.eval()
        p_mu, _ = self.model.pixels(images)
        logits = self.model.mask_logits(p_mu, self.class_embeddings())
        return torch.softmax(torch.cat([torch.zeros_like(logits[:, :1]), logits], 1), 1)

    def refine_all(self, images: torch.Tensor, student_probs: torch.Tensor, meta: dict | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        text_probs = self.text_guided_probs(images)
        merged = (1 - self.merge_weight) * student_probs + self.merge_weight * text_probs
        targets = []
        for probs in (merged, text_probs):
            conf, label = probs.max(1)
            targets.append((label, conf * (conf >= self.confidence_threshold)))
        return targets

    def refine(self, images: torch.Tensor, student_probs: torch.Tensor, meta: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.refine_all(images, student_probs, meta)[0]

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
