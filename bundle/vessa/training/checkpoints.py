"""Resumable training: the whole training state written atomically, and picked up again at start; and the
records of what a run and its weights were made for, checked before any of them is used again."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint

from vessa.data.streams import RandomStreamDataset
from vessa.torch_files import atomic_torch_save, load_plain
from vessa.errors import CheckpointError

logger = logging.getLogger(__name__)


def as_flag(value, name: str) -> bool:
    """A switch given on the command line or in a config: a bool, or one of true/false/yes/no/on/off/1/0 in any case
    (``python -m monai.bundle run ... --resume false`` hands over the string 'false', which Python reads as true)."""
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0", "none", ""):
        return False
    raise ValueError(f"'{name}' must be true or false, got {value!r}")


def _plain(value):
    """JSON-like copy (tuples as lists, keys as strings): records compare equal after a save and a load."""
    return json.loads(json.dumps(value))


def input_channels(data: dict) -> int:
    """Image channels of a :func:`vessa.data.prepare.prepare_data` / ``prepare_volumes`` result."""
    first = (data.get("labeled_slices") or data.get("labeled_volumes"))[0]
    return int(first["image"].shape[0])


def labels_record(labels: dict[int, str], in_channels: int | None = None) -> dict:
    """The part of a record a weights file is checked against when it is used: label names (and input channels)."""
    record = {"labels": {str(k): v for k, v in sorted(labels.items())}}
    if in_channels is not None:
        record["in_channels"] = int(in_channels)
    return record


def made_for(data: dict, **settings) -> dict:
    """The record of what a run (and the weights it writes) is made for: the data set folder, its label names,
    the input channels, the labelled split and ``settings`` (those that shape the networks, the method ...)."""
    record = {"dataset": str(data["datalist"].dataset_dir), **labels_record(data["labels"], input_channels(data)), "labeled": data["split"].labeled_ids, **settings}
    return _plain(record)


def _describe(key: str, value) -> str:
    if key == "labels" and isinstance(value, dict):
        return ", ".join(v for k, v in value.items() if str(k) != "0") or "none"
    if key == "labeled" and isinstance(value, list):
        return f"{len(value)} cases ({', '.join(value[:3])}{', ...' if len(value) > 3 else ''})"
    return str(value)


def record_differences(found: dict | None, expected: dict) -> list[str]:
    """``key: <found> there, <expected> here`` for each key of ``expected`` that ``found`` holds with another value."""
    found, expected = _plain(found or {}), _plain(expected)
    return [f"{key} {_describe(key, found[key])} there, {_describe(key, value)} here" for key, value in expected.items() if key in found and found[key] != value]


def check_made_for(found: dict | None, expected: dict, what: str, fix: str) -> None:
    """Stop with one line naming ``what`` (a file), what differs between its record and ``expected``, and ``fix``;
    a file from before records (none found) is accepted with a warning."""
    if not found:
        logger.warning(f"{what} carries no record of what it was made for (saved by an older VESSA): it cannot be checked.")
        return
    differences = record_differences(found, expected)
    if differences:
        raise CheckpointError(f"{what} was made for something else ({'; '.join(differences)}): {fix}")


def read_made_for(path: str | Path) -> dict | None:
    """The ``made_for`` record inside a weights file saved from a :class:`vessa.networks.records.MadeFor` module."""
    return weights_record(read_weights(path))


def weights_record(state: dict) -> dict | None:
    """The ``made_for`` record of a loaded state dict (None for files from before records)."""
    return (state.get("_extra_state") or {}).get("made_for") or None


RESUME_FIX = "start afresh with --resume false (the saved state is then overwritten) or give this run its own --run_dir"


class ResumableCheckpoint:
    """Saves ``save_dict`` (model, optimizer, scheduler, trainer...) to ``<run_dir>/latest.pt`` every
    ``interval`` epochs and at the end, via a temporary file and a rename, so a crash never leaves a
    half-written checkpoint. With ``resume`` on, a run that finds the file continues from its iteration,
    once the ``made_for`` record saved in it matches this run's (else it stops, naming what differs).
    Entries that are None (no assistant) are left out.
    """

    def __init__(
        self, run_dir: str | Path, save_dict: dict, interval: int = 1, resume: bool = True, filename: str = "latest.pt", made_for: dict | None = None
    ) -> None:
        self.path = Path(run_dir) / filename
        self.save_dict = {k: v for k, v in save_dict.items() if v is not None}
        self.interval = interval
        self.resume = as_flag(resume, "resume")
        self.made_for = _plain(made_for) if made_for else None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.load)
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self.save)
        engine.add_event_handler(Events.COMPLETED, self.save)

    def load(self, engine: Engine) -> None:
        if not (self.resume and self.path.is_file()):
            return
        state = load_plain(self.path, "saved training state", map_location=engine.state.device)
        if self.made_for is not None:
            check_made_for(state.get("made_for"), self.made_for, f"The saved training state {self.path}", RESUME_FIX)
        max_epochs = engine.state.max_epochs  # the configured length wins over the saved one
        missing = sorted(set(self.save_dict) - set(state) - {"made_for"})
        if missing:
            logger.warning(f"{self.path} holds no {missing}: those start afresh.")
        Checkpoint.load_objects(to_load={k: v for k, v in self.save_dict.items() if k in state}, checkpoint=state)
        engine.state.max_epochs = max(max_epochs, engine.state.epoch)
        stream = getattr(getattr(engine, "data_loader", None), "dataset", None)
        if isinstance(stream, RandomStreamDataset):  # go on with the random stream where the saved run left it
            stream.start = engine.state.iteration * engine.data_loader.batch_size
        logger.info(f"Resumed from {self.path} at epoch {engine.state.epoch}, iteration {engine.state.iteration}.")

    def save(self, engine: Engine) -> None:
        """Write the state (rank 0 only in a distributed run: every rank holds the same student)."""
        if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
            return
        wrappers = (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)
        state = {k: (v.module if isinstance(v, wrappers) else v).state_dict() for k, v in self.save_dict.items()}
        if self.made_for is not None:
            state["made_for"] = self.made_for
        atomic_torch_save(state, self.path)


class KeyMetricTracking:
    """The best-so-far record of a MONAI ``CheckpointSaver`` (``save_key_metric``) as an object with
    ``state_dict`` / ``load_state_dict``, for :class:`ResumableCheckpoint`: a resumed run then replaces the
    best checkpoint only with a better one (a fresh saver would overwrite it at its first validation)."""

    def __init__(self, saver) -> None:
        if saver._key_metric_checkpoint is None:
            raise ValueError("KeyMetricTracking needs a CheckpointSaver with save_key_metric=True")
        self.saver = saver

    def state_dict(self) -> dict:
        return self.saver._key_metric_checkpoint.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.saver.load_state_dict(state)


def atomic_write_json(obj, path: str | Path) -> Path:
    """Write ``obj`` as indented JSON through a temporary file and a rename (no half-written report)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # one per process: two writers never share it
    tmp.write_text(json.dumps(obj, indent=2))
    tmp.replace(path)
    return path


def save_final_if_unvalidated(network: torch.nn.Module, path: str | Path, val_volumes: list) -> None:
    """Without validation volumes no best checkpoint is selected: keep the final weights at ``path`` (atomically)."""
    if val_volumes:
        return
    atomic_torch_save(network.state_dict(), path)
    logger.info(f"No validation data: saved the final weights to {path}.")


STUDENT_FIX = "point --ckpt_dir (or model_path) at the folder of the student trained on this data set, or train one for it (configs/stage2.json)"


def read_weights(path: str | Path, what: str = "trained model", how: str = "") -> dict:
    """The state dict in ``path`` (``torch.load(weights_only=True)``); a clear :class:`CheckpointError` when it is missing."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"No {what} at {path}: "
            + (how or "train one first (python -m monai.bundle run training --config_file configs/stage2.json, with the same overrides), or point ckpt_dir / model_path at the folder that holds model.pt.")
        )
    return load_plain(path, what)


def load_weights(
    network: torch.nn.Module,
    path: str | Path,
    device: str | torch.device = "cpu",
    expected: dict | None = None,
    fix: str = STUDENT_FIX,
    state: dict | None = None,
) -> torch.nn.Module:
    """Load a state dict saved by training (or its :func:`read_weights` ``state``) into ``network``, once its
    ``made_for`` record agrees with ``expected`` (e.g. :func:`labels_record`); a one-line :class:`CheckpointError`
    naming the file, what differs and ``fix`` when it does not, when it is missing or when it does not fit."""
    state = state if state is not None else read_weights(path)
    if expected:
        check_made_for(weights_record(state), expected, str(path), fix)
    try:
        network.load_state_dict(state)
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0]  # PyTorch's first mismatch, without its header line
        raise CheckpointError(f"{path} does not fit this network (another data set, class count or network settings?): {detail}; {fix}") from err
    return network.to(device)
