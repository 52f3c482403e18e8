"""Feature matching between a query and its templates: prototypes, dense similarity, prior maps, cues."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_prototypes(features: torch.Tensor, masks: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Masked average pooling.

    Args:
        features: (B, T, D, h, w) template features.
        masks: (B, T, K, h, w) soft class masks at feature resolution.
    Returns:
        (B, K, D) one prototype per class, pooled over all T templates.
    """
    num = torch.einsum("btdhw,btkhw->bkd", features, masks)
    den = masks.sum(dim=(1, 3, 4)).unsqueeze(-1)
    return num / (den + eps)


def matching_maps(
    query: torch.Tensor, templates: torch.Tensor, template_masks: torch.Tensor, temperature: float = 0.1
) -> dict[str, torch.Tensor]:
    """Dense query-to-template matching.

    Args:
        query: (B, D, h, w) query features.
        templates: (B, T, D, h, w) template features.
        template_masks: (B, T, K, h, w) soft foreground masks of each class at feature resolution.
    Returns:
        ``fg_sim`` / ``bg_sim``: cosine similarity of each query location to the class foreground /
        background prototype, (B, K, h, w); ``transfer``: the template masks carried to the query by
        soft nearest-neighbour attention, (B, K, h, w); ``fg_proto``: (B, K, D); ``present``: (B, K)
        whether any template holds the class.
    """
    b, d, h, w = query.shape
    q = F.normalize(query, dim=1)
    t = F.normalize(templates, dim=2)
    fg_proto = masked_prototypes(t, template_masks)
    bg_proto = masked_prototypes(t, 1.0 - template_masks)
    fg_sim = torch.einsum("bdhw,bkd->bkhw", q, F.normalize(fg_proto, dim=-1))
    bg_sim = torch.einsum("bdhw,bkd->bkhw", q, F.normalize(bg_proto, dim=-1))
    q_flat = q.flatten(2)  # (B, D, hw)
    t_flat = t.permute(0, 2, 1, 3, 4).flatten(2)  # (B, D, T*hw)
    attn = torch.softmax(torch.einsum("bdq,bdt->bqt", q_flat, t_flat) / temperature, dim=-1)
    m_flat = template_masks.permute(0, 2, 1, 3, 4).flatten(2)  # (B, K, T*hw)
    transfer = torch.einsum("bqt,bkt->bkq", attn, m_flat).reshape(b, -1, h, w)
    present = template_masks.flatten(3).amax(dim=(1, 3)) > 0.5
    return {"fg_sim": fg_sim, "bg_sim": bg_sim, "transfer": transfer, "fg_proto": fg_proto, "present": present}


def cues_from_prior(prior: torch.Tensor, image_size: int, num_points: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Spatial cues from a prior probability map: positive and negative points and a box.

    Args:
        prior: (N, h, w) foreground probability.
        image_size: side of the assistant's input, in pixels (points are returned in its coordinates).
    Returns:
        ``coords`` (N, num_points + 3, 2) as (x, y) pixels and ``labels`` (N, num_points + 3): the
        ``num_points`` most confident foreground locations (label 1), the least confident location
        (label 0) and the two box corners (labels 2 and 3) of the region where the prior exceeds half
        its maximum.
    """
    n, h, w = prior.shape
    scale = image_size / h
    flat = prior.flatten(1)
    pos_idx = flat.topk(num_points, dim=1).indices
    neg_idx = flat.argmin(dim=1, keepdim=True)
    idx = torch.cat([pos_idx, neg_idx], dim=1)
    pts = torch.stack([(idx % w).float(), (idx // w).float()], dim=-1) * scale + scale / 2 - 0.5
    region = prior >= 0.5 * flat.amax(dim=1).view(n, 1, 1)
    ys = torch.arange(h, device=prior.device).view(1, h, 1).expand_as(region)
    xs = torch.arange(w, device=prior.device).view(1, 1, w).expand_as(region)
    big = torch.full_like(ys, h + w)
    x0 = torch.where(region, xs, big).flatten(1).amin(1)
    y0 = torch.where(region, ys, big).flatten(1).amin(1)
    x1 = torch.where(region, xs, -big).flatten(1).amax(1)
    y1 = torch.where(region, ys, -big).flatten(1).amax(1)
    box = torch.stack([x0 * scale, y0 * scale, (x1 + 1) * scale - 1, (y1 + 1) * scale - 1], dim=-1).float()
    coords = torch.cat([pts, box.view(n, 2, 2)], dim=1)
    labels = torch.tensor([1] * num_points + [0, 2, 3], device=prior.device).expand(n, -1)
    return coords, labels
