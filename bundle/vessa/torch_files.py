"""Torch files written atomically and read without pickle: checkpoints, training states and template banks."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

from vessa.errors import CheckpointError


def atomic_torch_save(obj, path: str | Path) -> None:
    """Write with torch.save to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_plain(path: str | Path, what: str, map_location="cpu"):
    """``torch.load(path, weights_only=True)``: tensors and plain values only, so a crafted file cannot run code
    on loading; a file that holds anything else is refused with a :class:`CheckpointError` naming it."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"Refused to load the {what} {path}: it holds Python objects beyond tensors and plain values, which could run code "
            f"when read ({str(exc).splitlines()[0]}). VESSA writes only tensors and plain values: use a file made by VESSA, or make it again."
        ) from None
