"""DuSSS's text-guided segmenter: pixel and text embeddings as Gaussians in one space; a class mask is the
sigmoid of the class text's embedding against every pixel's embedding."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from monai.networks.nets import UNet
from torch import nn

__all__ = ["GaussianHead", "TextGuidedSegmenter", "region_gaussians"]


class GaussianHead(nn.Module):
    """Mean and variance (softplus, >= 0) of an embedding; ``conv=True`` acts per pixel on (B, C, H, W) maps."""

    def __init__(self, in_dim: int, out_dim: int, conv: bool = False) -> None:
        super().__init__()
        layer = (lambda: nn.Conv2d(in_dim, out_dim, 1)) if conv else (lambda: nn.Linear(in_dim, out_dim))
        self.mean = layer()
        self.log_var = layer()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mean(x), F.softplus(self.log_var(x))


def region_gaussians(mu: torch.Tensor, var: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Masked averages of per-pixel Gaussians: one region per (image, present class).

    mu, var (B, D, h, w); masks (B, K, H, W) binary (resized to h, w). Returns mean (N, D), variance
    (N, D), class index (N,) in 0..K-1 and image index (N,).
    """
    small = F.adaptive_avg_pool2d(masks.float(), mu.shape[-2:])
    area = small.sum((-1, -2))  # (B, K)
    present = area > 1e-3
    r_mu = torch.einsum("bdhw,bkhw->bkd", mu, small) / area.clamp(min=1e-6).unsqueeze(-1)
    r_var = torch.einsum("bdhw,bkhw->bkd", var, small) / area.clamp(min=1e-6).unsqueeze(-1)
    image, cls = present.nonzero(as_tuple=True)
    return r_mu[image, cls], r_var[image, cls], cls, image


class TextGuidedSegmenter(nn.Module):
    """Image encoder (a small MONAI UNet giving per-pixel features) and Gaussian heads for pixels and texts.

    Args:
        in_channels: image channels.
        text_dim: width of the (frozen) sentence embeddings of the class descriptions.
        embed_dim: width of the joint image-text space.
        channels: UNet channels per level.
    """

    def __init__(self, in_channels: int, text_dim: int, embed_dim: int = 32, channels: tuple[int, ...] = (16, 32, 64, 128)) -> None:
        super().__init__()
        self.backbone = UNet(2, in_channels, embed_dim, channels=channels, strides=(2,) * (len(channels) - 1), num_res_units=1)
        self.image_head = GaussianHead(embed_dim, embed_dim, conv=True)
        self.global_head = GaussianHead(2 * embed_dim, embed_dim)  # whole-image embedding, for image-text pairs
        self.text_head = nn.Sequential(nn.Linear(text_dim, text_dim), nn.GELU())
        self.text_gauss = GaussianHead(text_dim, embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self.logit_bias = nn.Parameter(torch.tensor(-2.0))

    def pixels(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-pixel Gaussian embeddings (B, D, H, W) mean and variance."""
        return self.image_head(self.backbone(images))

    def images(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Whole-image Gaussian embeddings (B, D) mean and variance, from the mean and spread of the backbone's
        per-pixel features (how much of the image is tissue of each kind, and how it varies)."""
        feats = self.backbone(images).flatten(2)
        return self.global_head(torch.cat([feats.mean(-1), feats.std(-1)], 1))

    def texts(self, text_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gaussian embeddings (M, D) of sentence features (M, text_dim)."""
        return self.text_gauss(self.text_head(text_features))

    def mask_logits(self, pixel_mu: torch.Tensor, class_mu: torch.Tensor) -> torch.Tensor:
        """Text-guided mask logits (B, K, H, W): scaled cosine of each class text (K, D), or of each image's own
        class prompts (B, K, D), against each pixel, plus a bias."""
        equation = "bdhw,kd->bkhw" if class_mu.dim() == 2 else "bdhw,bkd->bkhw"
        cos = torch.einsum(equation, F.normalize(pixel_mu, dim=1), F.normalize(class_mu, dim=-1))
        return self.logit_scale.exp().clamp(max=100) * cos + self.logit_bias
