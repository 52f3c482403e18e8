"""SAM2 (Hiera) image encoder from the real ``sam2`` package, wrapped for VESSA.

The encoder builds from the hydra configs shipped inside the ``sam2`` package
(e.g. ``configs/sam2.1/sam2.1_hiera_t.yaml``) with random weights; a local SAM2
release checkpoint (``sam2.1_hiera_tiny.pt`` etc., see large_files.yml) can be
loaded on top. Nothing is ever downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from vessa.errors import CheckpointError, DataError

__all__ = ["DEFAULT_SAM2_CONFIG", "build_sam2_model", "build_sam2_image_encoder", "Sam2EncoderAdapter"]

DEFAULT_SAM2_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"
# SAM2's image normalisation (ImageNet mean/std, sam2.utils.transforms.SAM2Transforms).
SAM2_MEAN = (0.485, 0.456, 0.406)
SAM2_STD = (0.229, 0.224, 0.225)
# Hiera's window pos-embed tiling needs (input / 4) divisible by the first window size (8).
INPUT_MULTIPLE = 32


def _check_checkpoint(checkpoint: str | Path) -> Path:
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise CheckpointError(
            f"SAM2 checkpoint not found: {path}. Download a SAM2 release checkpoint matching the "
            "config (e.g. sam2.1_hiera_tiny.pt for sam2.1_hiera_t.yaml; the files are listed in "
            "large_files.yml) and pass its local path, or pass checkpoint=None for random weights."
        )
    return path


def _load_sam2_checkpoint(model: torch.nn.Module, checkpoint: str | Path, required_prefix: str = "image_encoder.") -> None:
    """Load a SAM2 release checkpoint (``{"model": state_dict}``) into ``model``.

    Every weight of ``model`` whose name starts with ``required_prefix`` must be in the file
    (``""``: every weight of the model); a missing or unreadable file is a ``CheckpointError``.
    """
    path = _check_checkpoint(checkpoint)
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"Could not read the SAM2 checkpoint {path}: {exc}") from exc
    if isinstance(state, dict) and "model" in state:
        state = state["model"]
    if not isinstance(state, dict):
        raise CheckpointError(f"SAM2 checkpoint {path} holds no state dict (expected {{'model': state_dict}}).")
    enc_keys = {k for k in model.state_dict() if k.startswith(required_prefix)}
    missing_enc = sorted(enc_keys - set(state))
    if missing_enc:
        what = required_prefix.rstrip(".") or "model"
        raise CheckpointError(
            f"SAM2 checkpoint {path} lacks {len(missing_enc)} {what} weights "
            f"(e.g. {missing_enc[:3]}); does it match the config?"
        )
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise CheckpointError(f"SAM2 checkpoint {path} does not fit the model built from the config: {exc}") from exc


def build_sam2_image_encoder(
    config: str = DEFAULT_SAM2_CONFIG, checkpoint: str | None = None, device: str | torch.device = "cpu"
) -> torch.nn.Module:
    """Build SAM2 from a packaged hydra config, optionally load a local checkpoint, return ``image_encoder``.

    ``config`` is a config name relative to the ``sam2`` package. The returned module maps
    (B, 3, S, S) ImageNet-normalised images (S a multiple of 32) to a dict with
    ``vision_features`` (B, 256, S/16, S/16), ``vision_pos_enc`` and ``backbone_fpn``.
    """
    model = build_sam2_model(config, checkpoint, device="cpu", allow_random_weights=True, required_prefix="image_encoder.")
    encoder = model.image_encoder
    return encoder.to(device)


def build_sam2_model(
    config: str = DEFAULT_SAM2_CONFIG,
    checkpoint: str | Path | None = None,
    device: str | torch.device = "cpu",
    allow_random_weights: bool = False,
    *,
    required_prefix: str = "",
) -> torch.nn.Module:
    """The whole SAM2 model (``SAM2Base``) from a packaged hydra config, in eval mode, on ``device``.

    Built on CPU with ``sam2.build_sam.build_sam2(config, ckpt_path=None)`` (the ``sam2`` package
    never downloads), then the local ``checkpoint``'s ``"model"`` state dict is loaded; every weight
    whose name starts with ``required_prefix`` (default: all of them) must be in the file. A missing
    file is a ``CheckpointError`` naming it, raised before the (slow) build. ``checkpoint=None`` keeps
    the random initial weights only with ``allow_random_weights=True`` (tests, smoke runs).
    """
    if checkpoint is None:
        if not allow_random_weights:
            raise CheckpointError(
                f"No SAM2 checkpoint given for {config}. Download the matching SAM2 release checkpoint "
                "(listed in large_files.yml) and pass its local path; random weights need allow_random_weights=True."
            )
    else:
        _check_checkpoint(checkpoint)  # fail fast, before the (slow) build
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from sam2.build_sam import build_sam2

    # the package's configs, as `import sam2` sets them up: another user of hydra in this process (MONAI Label's
    # SAM2 task points it at its model folder) must not hide them
    GlobalHydra.instance().clear()
    initialize_config_module("sam2", version_base="1.2")
    model = build_sam2(config, ckpt_path=None, device="cpu", mode="eval")
    if checkpoint is not None:
        _load_sam2_checkpoint(model, checkpoint, required_prefix=required_prefix)
    model.eval()
    return model.to(device)


class Sam2EncoderAdapter(torch.nn.Module):
    """Hiera image encoder -> (B, out_dim, *embed_hw) feature map.

    Input: (B, C, H, W) with C in {1, 3} and values in [0, 1]. Gray is repeated to 3 channels,
    ImageNet-normalised, resized to ``input_size`` (a multiple of 32), encoded; the last
    ``vision_features`` (256 ch, stride 16) go through a trainable 1x1 conv to ``out_dim`` and are
    resized bilinearly to ``embed_hw``. With ``freeze=True`` the encoder runs under no_grad with
    requires_grad False and stays in eval mode; only the projection trains.
    """

    def __init__(
        self,
        out_dim: int,
        embed_hw: tuple[int, int],
        config: str = DEFAULT_SAM2_CONFIG,
        checkpoint: str | None = None,
        freeze: bool = True,
        input_size: int = 512,
    ):
        super().__init__()
        if int(input_size) <= 0 or int(input_size) % INPUT_MULTIPLE:
            raise ValueError(f"input_size must be a positive multiple of {INPUT_MULTIPLE} for Hiera, got {input_size}.")
        self.out_dim = int(out_dim)
        self.embed_hw = (int(embed_hw[0]), int(embed_hw[1]))
        self.input_size = int(input_size)
        self.freeze = bool(freeze)
        self.encoder = build_sam2_image_encoder(config, checkpoint, device="cpu")
        if self.freeze:
            self.encoder.requires_grad_(False)
            self.encoder.eval()
        self.proj = torch.nn.Conv2d(256, self.out_dim, kernel_size=1)
        self.register_buffer("mean", torch.tensor(SAM2_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(SAM2_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze:
            self.encoder.eval()
        return self

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)["vision_features"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise DataError(f"Sam2EncoderAdapter expects (B, 1|3, H, W) images, got shape {tuple(x.shape)}.")
        x = x.float()
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        x = (x - self.mean) / self.std
        if tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        if self.freeze:
            with torch.no_grad():
                feats = self._encode(x)
        else:
            feats = self._encode(x)
        out = self.proj(feats)
        if tuple(out.shape[-2:]) != self.embed_hw:
            out = F.interpolate(out, size=self.embed_hw, mode="bilinear", align_corners=False)
        return out
