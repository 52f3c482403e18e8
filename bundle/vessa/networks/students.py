"""Student networks, in 2D or 3D, with the feature perturbations of UniMatch and UniMatch V2: the SSL4MIS UNet
and, for CPU schedules, the layout of MONAI's plain ``UNet`` (one strided convolution per level)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
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


class SegmentationStudent(MadeFor):
    """Base of the students: an encoder (``encode``: a list of features, finest first) and a decoder (``decode``).

    ``forward(x)`` returns logits (B, out_channels, ...). The feature perturbations of the SSL methods go
    through ``forward`` too (so a DistributedDataParallel wrapper sees every pass): ``perturb="fp"`` also
    decodes the encoder features after channel dropout (UniMatch's feature-perturbation stream) from the same
    pass and returns both logits; ``perturb="complementary"`` decodes the two halves of the batch with
    complementary channel masks (UniMatch V2's Complementary Dropout).
    Its state dict carries what it was trained for (:class:`vessa.networks.records.MadeFor`).
    """

    dims: int
    fp_dropout: float

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def decode(self, feats: list[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, perturb: str | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.dims == 2:  # channels-last convolutions: about 1.5x faster for the SSL4MIS UNet on a CPU
            x = x.contiguous(memory_format=torch.channels_last)
        feats = self.encode(x)
        if perturb is None:
            return self.decode(feats)
        if perturb == "fp":
            drop = F.dropout2d if self.dims == 2 else F.dropout3d
            return self.decode(feats), self.decode([drop(f, self.fp_dropout, self.training) for f in feats])
        if perturb == "complementary":
            return self.decode(complementary_dropout(feats, self.training))
        raise ValueError(f"unknown feature perturbation {perturb!r}: use None, 'fp' or 'complementary'")


class StudentUNet(SegmentationStudent):
    """UNet with 4 down- and 4 up-sampling stages of two convolutions each (SSL4MIS's ACDC student)."""

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
        if spatial_dims == 2:
            self.to(memory_format=torch.channels_last)

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



class StridedUNet(SegmentationStudent):
    """The layout of MONAI's ``UNet`` with ``num_res_units=0`` (one strided convolution per level down, one
    transposed convolution per level up, instance norm and PReLU), built from MONAI's ``Convolution`` blocks
    with the encoder and decoder apart for the feature perturbations: the data set README's CPU yardstick
    network, about ten times cheaper than :class:`StudentUNet` at 256 x 256.

    Args:
        features: channels of the four strided levels and the bottom (MONAI's ``channels``).
        dropout: dropout of every convolution block (MONAI's ``dropout``).
    """

    def __init__(
        self, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 4, features: tuple[int, ...] = (16, 32, 64, 128, 256), dropout: float = 0.0, fp_dropout: float = 0.5
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3) or len(features) < 2:
            raise ValueError("StridedUNet needs spatial_dims 2 or 3 and at least two feature sizes")
        self.dims = spatial_dims
        self.fp_dropout = fp_dropout
        widths = list(features)
        block = lambda i, o, **kw: Convolution(spatial_dims, i, o, kernel_size=3, dropout=dropout, **kw)  # noqa: E731
        self.encoders = nn.ModuleList([block(in_channels if i == 0 else widths[i - 1], widths[i], strides=2) for i in range(len(widths) - 1)])
        self.encoders.append(block(widths[-2], widths[-1], strides=1))  # the bottom
        ups = []
        for level in range(len(widths) - 2, -1, -1):  # up from the level above the bottom to the top
            in_ch = widths[level] + (widths[-1] if level == len(widths) - 2 else widths[level])
            out_ch = widths[level - 1] if level > 0 else out_channels
            ups.append(block(in_ch, out_ch, strides=2, is_transposed=True, conv_only=level == 0))
        self.decoders = nn.ModuleList(ups)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for block in self.encoders:
            x = block(x)
            feats.append(x)
        return feats

    def decode(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = feats[-1]
        for i, block in enumerate(self.decoders):
            x = block(torch.cat([feats[-2 - i], x], dim=1))
        return x


def complementary_dropout(feats: list[torch.Tensor], training: bool = True, keep_ratio: float = 0.5) -> list[torch.Tensor]:
    """UniMatch V2's Complementary Dropout on a batch of two halves (two strong views of the same images):
    each channel of a first-half sample is kept with probability 0.5 and scaled by 2, its twin in the second
    half gets the complementary mask; ``keep_ratio`` of the pairs go unperturbed. One mask per sample and
    feature level."""
    if not training:
        return feats
    half = feats[0].shape[0] // 2
    if feats[0].shape[0] != 2 * half:
        raise ValueError(f"complementary dropout needs a batch of two halves, got {feats[0].shape[0]} samples")
    kept = torch.randperm(half, device=feats[0].device)[: int(half * keep_ratio)]
    out = []
    for f in feats:
        first = torch.bernoulli(torch.full((half, f.shape[1]), 0.5, device=f.device)) * 2.0
        first[kept] = 1.0
        mask = torch.cat([first, 2.0 - first]).view(2 * half, f.shape[1], *([1] * (f.dim() - 2)))
        out.append(f * mask.to(f.dtype))
    return out
