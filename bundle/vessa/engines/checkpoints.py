"""Resumable training: the whole training state written atomically, and picked up again at start."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint

from vessa.data.template_bank import atomic_torch_save
from vessa.errors import CheckpointError

logger = logging.getLogger(__name__)


class ResumableCheckpoint:
    """Saves ``save_dict`` (model, optimizer, scheduler, trainer...) to ``<run_dir>/latest.pt`` every
    ``interval`` epochs and at the end, via a temporary file and a rename, so a crash never leaves a
    half-written checkpoint. With ``resume`` on, a run that finds the file continues from its iteration.
    Entries that are None (no assistant) are left out.
    """

    def __init__(self, run_dir: str | Path, save_dict: dict, interval: int = 1, resume: bool = True, filename: str = "latest.pt") -> None:
        self.path = Path(run_dir) / filename
        self.save_dict = {k: v for k, v in save_dict.items() if v is not None}
        self.interval = interval
        self.resume = resume

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.load)
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self.save)
        engine.add_event_handler(Events.COMPLETED, self.save)

    def load(self, engine: Engine) -> None:
        if not (self.resume and self.path.is_file()):
            return
        state = torch.load(self.path, map_location=engine.state.device, weights_only=False)
        max_epochs = engine.state.max_epochs  # the configured length wins over the saved one
        missing = sorted(set(self.save_dict) - set(state))
        if missing:
            logger.warning(f"{self.path} holds no {missing}: those start afresh.")
        Checkpoint.load_objects(to_load={k: v for k, v in self.save_dict.items() if k in state}, checkpoint=state)
        engine.state.max_epochs = max(max_epochs, engine.state.epoch)
        logger.info(f"Resumed from {self.path} at epoch {engine.state.epoch}, iteration {engine.state.iteration}.")

    def save(self, engine: Engine) -> None:
        atomic_torch_save({k: v.state_dict() for k, v in self.save_dict.items()}, self.path)


def atomic_write_json(obj, path: str | Path) -> Path:
    """Write ``obj`` as indented JSON through a temporary file and a rename (no half-written report)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    tmp.replace(path)
    return path


def save_final_if_unvalidated(network: torch.nn.Module, path: str | Path, val_volumes: list) -> None:
    """Without validation volumes no best checkpoint is selected: keep the final weights at ``path`` (atomically)."""
    if val_volumes:
        return
    atomic_torch_save(network.state_dict(), path)
    logger.info(f"No validation data: saved the final weights to {path}.")


def load_weights(network: torch.nn.Module, path: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Load a state dict saved by training into ``network``; a clear :class:`CheckpointError` when it is missing or does not fit."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"No trained model at {path}: train one first (python -m monai.bundle run training --config_file configs/stage2.json, "
            "with the same overrides), or point ckpt_dir / model_path at the folder that holds model.pt."
        )
    try:
        network.load_state_dict(torch.load(path, map_location=device, weights_only=True))
    except RuntimeError as err:
        raise CheckpointError(f"{path} does not fit this network (another data set, class count or spatial_dims?): {err}") from err
    return network
