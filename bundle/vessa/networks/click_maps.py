"""An annotator's clicks as dense maps beside the mask prompt.

A click reaches the assistant's decoder as a sparse token among the prior's own cues; trained on a few patients,
the decoder learnt to copy its mask prompt and leave that token unheard. Drawn as positive and negative Gaussian
maps at the mask prompt's resolution and embedded like the mask (SAM's mask downscaling), a click acts where it
was placed, as the click channels of RITM and DeepEdit do.
"""

from __future__ import annotations

import torch
from sam2.modeling.sam2_utils import LayerNorm2d
from torch import nn


class ClickEmbedding(nn.Module):
    """Dense embedding (N, embed_dim, h, w) of clicks (N, P, 2) on an ``image_size`` square image.

    Args:
        embed_dim: width of the dense prompt.
        map_size: (H, W) of the click maps, four times the image embedding's (the mask prompt's input size).
        image_size: side of the image the click coordinates are given in.
        sigma: width of each click's Gaussian, a fraction of ``image_size``.
        hidden: channels of the downscaling convolutions.

    The last layer starts at zero, so an assistant trained before dense clicks existed answers exactly as before
    until click training teaches it.
    """

    def __init__(self, embed_dim: int, map_size: tuple[int, int], image_size: int, sigma: float = 0.03, hidden: int = 16) -> None:
        super().__init__()
        self.map_size = tuple(map_size)
        self.image_size = image_size
        self.sigma = sigma
        self.net = nn.Sequential(
            nn.Conv2d(2, hidden // 4, kernel_size=2, stride=2),
            LayerNorm2d(hidden // 4),
            nn.GELU(),
            nn.Conv2d(hidden // 4, hidden, kernel_size=2, stride=2),
            LayerNorm2d(hidden),
            nn.GELU(),
            nn.Conv2d(hidden, embed_dim, kernel_size=1),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def render(self, points: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Maps (N, 2, H, W): channel 0 the foreground clicks (label 1), channel 1 the background ones (label 0),
        each pixel the largest Gaussian over that kind's clicks; padding (-1) draws nothing."""
        h, w = self.map_size
        step_y, step_x = self.image_size / h, self.image_size / w
        ys = (torch.arange(h, device=points.device, dtype=torch.float32) + 0.5) * step_y - 0.5
        xs = (torch.arange(w, device=points.device, dtype=torch.float32) + 0.5) * step_x - 0.5
        px, py = points[..., 0].float()[..., None, None], points[..., 1].float()[..., None, None]
        d2 = (xs.view(1, 1, 1, w) - px) ** 2 + (ys.view(1, 1, h, 1) - py) ** 2
        gauss = torch.exp(-d2 / (2 * (self.sigma * self.image_size) ** 2))  # (N, P, H, W)
        kinds = [(labels == flag).float()[..., None, None] for flag in (1, 0)]
        return torch.stack([(gauss * kind).amax(1) if points.shape[1] else gauss.new_zeros(points.shape[0], h, w) for kind in kinds], 1)

    def forward(self, points: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.net(self.render(points, labels))
