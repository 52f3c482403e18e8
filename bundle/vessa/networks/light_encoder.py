"""A small residual CNN image encoder: the CPU-friendly default of the assistant."""

from __future__ import annotations

import torch
from torch import nn


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


class _DownBlock(nn.Module):
    """Stride-2 residual block."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1, bias=False),
            _norm(out_ch),
            nn.GELU(),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
            _norm(out_ch),
        )
        self.skip = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=2, bias=False), _norm(out_ch))
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.skip(x))


class LightEncoder(nn.Module):
    """Residual CNN with total stride 8.

    Returns the stride-8 embedding (``out_dim`` channels) and the stride-2 and stride-4 features
    (also ``out_dim`` channels) that the SAM2 mask decoder uses as high-resolution features.
    """

    provides_high_res = True
    stride = 8

    def __init__(self, in_channels: int = 1, out_dim: int = 128, widths: tuple[int, int, int] = (32, 64, 128)) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_dim = out_dim
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False), _norm(widths[0]), nn.GELU())
        self.down1 = _DownBlock(widths[0], widths[0])
        self.down2 = _DownBlock(widths[0], widths[1])
        self.down3 = _DownBlock(widths[1], widths[2])
        self.proj = nn.Conv2d(widths[2], out_dim, 1)
        self.proj_s0 = nn.Conv2d(widths[0], out_dim, 1)
        self.proj_s1 = nn.Conv2d(widths[1], out_dim, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        s0 = self.down1(self.stem(x))
        s1 = self.down2(s0)
        emb = self.proj(self.down3(s1))
        return emb, [self.proj_s0(s0), self.proj_s1(s1)]
