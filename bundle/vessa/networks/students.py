"""Student networks: the SSL4MIS-style UNet, in 2D or 3D, with UniMatch's feature-perturbation stream."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vessa.networks.records import MadeFor


def _conv_block(dims: int, in_ch: int, out_ch: int, dropout: float) -> nn.Sequential:
    conv, norm, drop = (nn.Conv2d, nn.BatchNorm2d, nn.Dropout2d) if dims == 2 else (nn.Conv3d, nn.BatchNorm3d, nn.Dropout3d)
    return nn.Sequential(
        conv(in_ch, out_ch, 3, padding=1),
        norm(out_ch),
        nn.LeakyReLU(),
        drop(dropout),
        conv(out_ch, out_ch, 3, padding=1),
        norm(out_ch),
        nn.LeakyReLU(),
    )


class StudentUNet(MadeFor):
    """UNet with 4 down- and 4 up-sampling stages (SSL4MIS's ACDC student), for ``spatial_dims`` 2 or 3.

    ``forward(x)`` returns logits (B, out_channels, ...); ``forward_with_fp(x)`` also decodes the
    encoder features after channel dropout (UniMatch's feature-perturbation stream) from the same pass.
    Its state dict carries what it was trained for (:class:`vessa.networks.records.MadeFor`).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 4,
        features: tuple[int, ...] = (16, 32, 64, 128, 256),
        dropout: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5),
        fp_dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3) or len(features) != 5 or len(dropout) != 5:
            raise ValueError("StudentUNet needs spatial_dims 2 or 3 and five feature sizes and dropout rates")
        self.dims = spatial_dims
        self.fp_dropout = fp_dropout
        self.encoders = nn.ModuleList(
            [_conv_block(spatial_dims, in_channels if i == 0 else features[i - 1], features[i], dropout[i]) for i in range(5)]
        )
        self.reduce = nn.ModuleList(
            [(nn.Conv2d if spatial_dims == 2 else nn.Conv3d)(features[i], features[i - 1], 1) for i in range(4, 0, -1)]
        )
        self.decoders = nn.ModuleList([_conv_block(spatial_dims, 2 * features[i - 1], features[i - 1], 0.0) for i in range(4, 0, -1)])
        self.head = (nn.Conv2d if spatial_dims == 2 else nn.Conv3d)(features[0], out_channels, 3, padding=1)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        pool = F.max_pool2d if self.dims == 2 else F.max_pool3d
        feats = []
        for i, block in enumerate(self.encoders):
            x = block(x if i == 0 else pool(x, 2))
            feats.append(x)
        return feats

    def decode(self, feats: list[torch.Tensor]) -> torch.Tensor:
        mode = "bilinear" if self.dims == 2 else "trilinear"
        x = feats[-1]
        for i, (reduce, block) in enumerate(zip(self.reduce, self.decoders)):
            skip = feats[3 - i]
            x = F.interpolate(reduce(x), size=skip.shape[2:], mode=mode, align_corners=False)
            x = block(torch.cat([skip, x], dim=1))
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def forward_with_fp(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of the clean features and of the same features after channel dropout."""
        feats = self.encode(x)
        drop = F.dropout2d if self.dims == 2 else F.dropout3d
        return self.decode(feats), self.decode([drop(f, self.fp_dropout, self.training) for f in feats])
