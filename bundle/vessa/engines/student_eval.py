"""Student inference by the published protocols: ACDC slice by slice (SSL4MIS), LA by sliding window (UA-MT)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


@torch.no_grad()
def predict_volume_slicewise(network: torch.nn.Module, volume: np.ndarray, patch_size: int = 256, device: str | torch.device = "cpu") -> np.ndarray:
    """Class-index map of a (C, H, W, D) volume or (C, H, W) image: each slice resized to ``patch_size``,
    predicted, and the prediction resized back (nearest), as SSL4MIS's ``test_single_volume``."""
    network.eval()
    x = torch.as_tensor(np.asarray(volume, dtype=np.float32))
    squeeze = x.dim() == 3
    if squeeze:
        x = x[..., None]
    h, w, depth = x.shape[1:]
    out = np.zeros((h, w, depth), dtype=np.int64)
    for z in range(depth):
        s = F.interpolate(x[None, :, :, :, z].to(device), size=(patch_size, patch_size), mode="bilinear", align_corners=False)
        pred = network(s).argmax(1, keepdim=True).float()
        out[..., z] = F.interpolate(pred, size=(h, w), mode="nearest")[0, 0].long().cpu().numpy()
    return out[..., 0] if squeeze else out
