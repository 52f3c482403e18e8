"""DuSSS's dual contrastive learning with semantic-similarity supervision (Pan et al., AAAI 2025).

Every embedding is a diagonal Gaussian (a mean and a variance). The uncertainty of a pair is their
2-Wasserstein distance ``D_u``; relative to the batch's typical distance ``D_s`` it gives the weight
``w = exp(-lambda * D_u / D_s)`` that softens the cosine similarity to ``1 - (1 - cos) * w``: an uncertain
pair is pulled less hard towards or pushed less hard from its partner, so one text may match several
targets. InfoNCE on the softened similarities runs across modalities (image regions against texts) and
within each (regions of two views of an image; several descriptions of one class).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["gaussian_w2", "sss_similarity", "info_nce", "DualContrastiveLoss", "text_mask_loss"]


def gaussian_w2(mu_a: torch.Tensor, var_a: torch.Tensor, mu_b: torch.Tensor, var_b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pairwise 2-Wasserstein distances (N, M) between diagonal Gaussians N(mu_a, var_a) (N, D) and N(mu_b, var_b) (M, D).

    Closed form: W2^2 = ||mu_a - mu_b||^2 + ||sqrt(var_a) - sqrt(var_b)||^2. ``eps`` keeps the square
    roots differentiable where a variance or a distance is zero.
    """
    sd_a, sd_b = (var_a.clamp(min=0) + eps).sqrt(), (var_b.clamp(min=0) + eps).sqrt()
    return (_sq_dist(mu_a, mu_b) + _sq_dist(sd_a, sd_b) + eps).sqrt()


def _sq_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # expanded form: unlike torch.cdist its gradient is finite at zero distance
    return ((a * a).sum(-1, keepdim=True) - 2 * a @ b.t() + (b * b).sum(-1)).clamp(min=0)


def sss_similarity(mu_a: torch.Tensor, var_a: torch.Tensor, mu_b: torch.Tensor, var_b: torch.Tensor, lam: float = 0.5) -> torch.Tensor:
    """Softened cosine similarities (N, M): ``1 - (1 - cos) * exp(-lam * D_u / D_s)``.

    ``D_u`` is the pairwise 2-Wasserstein distance and ``D_s`` its mean over the pairs (no gradient), so
    the weight depends on how uncertain a pair is compared with the others. ``lam = 0`` gives plain cosines.
    """
    cos = F.normalize(mu_a, dim=-1) @ F.normalize(mu_b, dim=-1).t()
    if lam == 0:
        return cos
    d_u = gaussian_w2(mu_a, var_a, mu_b, var_b)
    d_s = d_u.detach().mean().clamp(min=1e-6)
    return 1 - (1 - cos) * torch.exp(-lam * d_u / d_s)


def info_nce(similarity: torch.Tensor, positives: torch.Tensor, temperature: float = 0.07, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-positive InfoNCE: mean over anchors (rows) with a positive of -log(sum_pos e^(s/t) / sum_valid e^(s/t)).

    similarity (N, M); positives (N, M) bool; valid (N, M) bool marks the candidates of each row
    (default all; pass ``~eye`` to leave an anchor out of its own row). Rows without a positive are skipped;
    with none at all the loss is 0 (still attached to the graph).
    """
    valid = torch.ones_like(positives) if valid is None else valid
    positives = positives & valid
    logits = (similarity / temperature).masked_fill(~valid, float("-inf"))
    log_all = torch.logsumexp(logits, dim=1)
    log_pos = torch.logsumexp(logits.masked_fill(~positives, float("-inf")), dim=1)
    rows = positives.any(1)
    if not rows.any():
        return similarity.sum() * 0.0
    return (log_all[rows] - log_pos[rows]).mean()


class DualContrastiveLoss(nn.Module):
    """Cross-modal (region-text, both directions) and intra-modal (region-region across views, text-text)
    InfoNCE on semantic-similarity-supervised similarities.

    Args:
        temperature: InfoNCE temperature (DuSSS, CLIP: 0.07).
        sss_lambda: lambda of the uncertainty weight (0 turns semantic-similarity supervision off).
        cross_weight, image_weight, text_weight: weights of the three terms.
    """

    def __init__(self, temperature: float = 0.07, sss_lambda: float = 0.5, cross_weight: float = 1.0, image_weight: float = 0.5, text_weight: float = 0.5) -> None:
        super().__init__()
        self.temperature = temperature
        self.sss_lambda = sss_lambda
        self.cross_weight = cross_weight
        self.image_weight = image_weight
        self.text_weight = text_weight

    def forward(
        self,
        regions: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        texts: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        view_of: torch.Tensor | None = None,
        region_text: torch.Tensor | None = None,
        text_id: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """regions: (mean (N, D), variance (N, D), class (N,)) of image-region embeddings, from one or more views;
        texts: (mean (M, D), variance (M, D), class (M,)) of the class descriptions and any per-image prompts;
        view_of: (N,) view index of each region: image-image pairs are taken across views only (default: any pair);
        region_text (N,) and text_id (M,): which image sentence a region's image has and a text was made from
        (-1: none, a class description). A region and a text, or two texts, of one class are positives unless both
        carry different sentences: a per-image prompt matches the regions of images described by the same sentence.

        Returns ``cross``, ``image``, ``text`` and their weighted sum ``loss``.
        """
        (r_mu, r_var, r_cls), (t_mu, t_var, t_cls) = regions, texts
        t = self.temperature
        rt = sss_similarity(r_mu, r_var, t_mu, t_var, self.sss_lambda)
        same_rt = (r_cls[:, None] == t_cls[None, :]) & _compatible(region_text, text_id, len(r_cls), len(t_cls), r_cls.device)
        cross = 0.5 * (info_nce(rt, same_rt, t) + info_nce(rt.t(), same_rt.t(), t))

        rr = sss_similarity(r_mu, r_var, r_mu, r_var, self.sss_lambda)
        not_self = ~torch.eye(len(r_mu), dtype=torch.bool, device=r_mu.device)
        other_view = not_self if view_of is None else view_of[:, None] != view_of[None, :]
        image = info_nce(rr, (r_cls[:, None] == r_cls[None, :]) & other_view, t, valid=not_self)

        tt = sss_similarity(t_mu, t_var, t_mu, t_var, self.sss_lambda)
        t_not_self = ~torch.eye(len(t_mu), dtype=torch.bool, device=t_mu.device)
        same_tt = (t_cls[:, None] == t_cls[None, :]) & _compatible(text_id, text_id, len(t_cls), len(t_cls), t_cls.device)
        text = info_nce(tt, same_tt, t, valid=t_not_self)
        loss = self.cross_weight * cross + self.image_weight * image + self.text_weight * text
        return {"cross": cross, "image": image, "text": text, "loss": loss}


def _compatible(a: torch.Tensor | None, b: torch.Tensor | None, n: int, m: int, device) -> torch.Tensor:
    """(n, m) pairs whose sentence ids agree or where either side has none (-1)."""
    if a is None or b is None:
        return torch.ones(n, m, dtype=torch.bool, device=device)
    return (a[:, None] < 0) | (b[None, :] < 0) | (a[:, None] == b[None, :])


def text_mask_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Loss of the text-guided masks: (binary cross-entropy + soft Dice) / 2 over (B, K, ...) logits and 0/1 targets."""
    bce = F.binary_cross_entropy_with_logits(logits, target.float())
    prob = torch.sigmoid(logits).flatten(2)
    tgt = target.float().flatten(2)
    dice = 1 - ((2 * (prob * tgt).sum(-1) + eps) / (prob.sum(-1) + tgt.sum(-1) + eps)).mean()
    return 0.5 * (bce + dice)
