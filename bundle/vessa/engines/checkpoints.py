"""Resumable training: the whole training state written atomically, and picked up again at start."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint

from vessa.data.template_bank import atomic_torch_save

logger = logging.getLogger(__name__)


class ResumableCheckpoint:
    """Saves ``save_dict`` (model, optimizer, scheduler, trainer...) to ``<run_dir>/latest.pt`` every
    ``interval`` epochs and at the end, via a temporary file and a rename, so a crash never leaves a
    half-written checkpoint. With ``resume`` on, a run that finds the file continues from its iteration.
    """

    def __init__(self, run_dir: str | Path, save_dict: dict, interval: int = 1, resume: bool = True, filename: str = "latest.pt") -> None:
        self.path = Path(run_dir) / filename
        self.save_dict = save_dict
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
        Checkpoint.load_objects(to_load=self.save_dict, checkpoint=state)
        engine.state.max_epochs = max(max_epochs, engine.state.epoch)
        logger.info(f"Resumed from {self.path} at epoch {engine.state.epoch}, iteration {engine.state.iteration}.")

    def save(self, engine: Engine) -> None:
        atomic_torch_save({k: v.state_dict() for k, v in self.save_dict.items()}, self.path)
