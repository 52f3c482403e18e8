"""The bundle's trained models, loaded once and kept for every request; reloaded when training writes new weights."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence
from urllib.parse import urlparse

import torch
from monai.bundle import ConfigParser

from vessa.data.template_bank import TemplateBank
from vessa.inference.predictor import AssistantPredictor, load_assistant
from vessa.training.checkpoints import labels_record, load_weights, read_weights, weights_record
from vessa.errors import CheckpointError
from vessa.networks.pretrained import SHIPPED

logger = logging.getLogger(__name__)


def metadata_labels(bundle_root: str | Path) -> dict[int, str]:
    """Label values and names of the bundle's output (``metadata.json``: channel k is label value k + 1)."""
    meta = json.loads((Path(bundle_root) / "configs" / "metadata.json").read_text())
    channel_def = next(iter(meta["network_data_format"]["outputs"].values()))["channel_def"]
    return {0: "background", **{int(k) + 1: str(v) for k, v in channel_def.items()}}


def datastore_name(studies: str | Path) -> str:
    """A folder name for a datastore's default checkpoints: the studies folder's name, or a DICOMweb URL's host and path."""
    text = str(studies)
    if "://" in text:
        url = urlparse(text)
        text = f"{url.netloc}{url.path}"
    else:
        text = Path(text).expanduser().resolve().name
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "studies"


def _mtime(path: Path, what: str, how: str) -> float:
    if not path.is_file():
        raise CheckpointError(f"No {what} at {path}: {how}")
    return path.stat().st_mtime


class ServedModels:
    """Student, assistant and template bank of one checkpoint folder, shared by the app's tasks.

    Args:
        bundle_root: the VESSA bundle (its ``configs/`` are read to build the student).
        ckpt_dir: folder of ``model.pt`` (student), ``assistant.pt`` and ``bank.pt`` (stage 1).
        student_configs: the stage-2 config files the student was trained with (3D: add ``stage2_3d.json``).
        device: torch device the models run on.
        labels: label value -> name, used until a template bank (which carries its own) exists.
        student_overrides: config ids the student was trained with beyond the configs (e.g. ``student_features``).
        base_path: VESSA-base (default ``<bundle_root>/models/vessa_base.pt``), served as the assistant until stage 1
            has written ``assistant.pt``; its template bank then starts from the first approved label.
    """

    TRAIN_HINT = "train it from the app (POST /train/{name}) or with the bundle's commands (README), or set --conf ckpt_dir"
    MISMATCH_FIX = "train it again from the app (POST /train/vessa_stage2) or set --conf ckpt_dir to the checkpoints made for this datastore's labels"

    def __init__(
        self,
        bundle_root: str | Path,
        ckpt_dir: str | Path,
        student_configs: Sequence[str] = ("stage2.json",),
        device: str = "cpu",
        labels: dict[int, str] | None = None,
        num_templates: int = 5,
        student_overrides: dict | None = None,
        base_path: str | Path | None = None,
    ) -> None:
        self.bundle_root = Path(bundle_root).resolve()
        self.base_path = Path(base_path).resolve() if base_path is not None else self.bundle_root / SHIPPED
        self.ckpt_dir = Path(ckpt_dir).resolve()
        self.device = torch.device(device)
        self.num_templates = num_templates
        self._labels = labels or metadata_labels(self.bundle_root)
        self.parser = ConfigParser()
        self.parser.read_config([str(self.bundle_root / "configs" / c) for c in student_configs])
        self.parser["bundle_root"] = str(self.bundle_root)
        for key, value in (student_overrides or {}).items():
            self.parser[key] = value
        self.student_settings = {
            "mode": self.parser.get_parsed_content("eval_mode"),
            "patch_size": self.parser.get_parsed_content("patch_size"),
            "normalize": self.parser.get_parsed_content("val_normalize"),
        }
        self._lock = threading.RLock()
        self._cache: dict[str, tuple[float, object]] = {}
        self.embeddings: OrderedDict = OrderedDict()  # (image, slice, assistant version) -> AssistantPredictor.prepare output

    @property
    def paths(self) -> dict[str, Path]:
        assistant = self.ckpt_dir / "assistant.pt"
        if not assistant.is_file() and self.base_path.is_file():
            assistant = self.base_path  # no local assistant yet: the pre-trained one
        return {"student": self.ckpt_dir / "model.pt", "assistant": assistant, "bank": self.ckpt_dir / "bank.pt"}

    def serves_base(self) -> bool:
        """Whether the assistant served is VESSA-base (no stage 1 trained in this checkpoint folder yet)."""
        return self.paths["assistant"] == self.base_path

    def labels(self) -> dict[int, str]:
        """Label value -> name: the template bank's once stage 1 has run, else the configured ones."""
        return dict(self.bank().labels) if self.paths["bank"].is_file() else dict(self._labels)

    def versions(self) -> dict[str, str]:
        """Modification time (UTC, ISO) of each checkpoint that exists: the version of the served model."""
        return {k: datetime.fromtimestamp(p.stat().st_mtime, timezone.utc).isoformat() for k, p in self.paths.items() if p.is_file()}

    def _get(self, name: str, build) -> object:
        path = self.paths[name]
        stamp = _mtime(path, f"trained {name} checkpoint", self.TRAIN_HINT.format(name="vessa_stage2" if name == "student" else "vessa_stage1"))
        with self._lock:
            cached = self._cache.get(name)
            if cached is None or cached[0] != stamp:
                if cached is not None:
                    logger.info(f"{path} changed: reloading the {name}")
                self._cache[name] = (stamp, build(path))
                if name in ("assistant", "bank"):
                    self.embeddings.clear()
            return self._cache[name][1]

    def bank(self) -> TemplateBank:
        return self._get("bank", TemplateBank.load)

    def assistant(self) -> AssistantPredictor:
        bank = self.bank()
        predictor = self._get("assistant", lambda p: AssistantPredictor(load_assistant(p, bank, device=self.device), bank, self.num_templates, self.device))
        predictor.bank = bank  # a bank grown by approved labels since the assistant was loaded
        return predictor

    def student(self) -> torch.nn.Module:
        def build(path: Path) -> torch.nn.Module:
            state = read_weights(path, "trained student checkpoint", self.TRAIN_HINT.format(name="vessa_stage2"))
            record = weights_record(state) or {}
            parser = ConfigParser(self.parser.get())
            parser["network_def"]["in_channels"] = int(self.bank().images[0].shape[0]) if self.paths["bank"].is_file() else 1
            parser["network_def"]["out_channels"] = len(self.labels())
            for key, config_key in (("student", "_target_"), ("features", "features")):  # the network its record names
                if key in record:
                    parser["network_def"][config_key] = record[key]
            network = parser.get_parsed_content("network_def").to(self.device)
            expected = labels_record(self.labels(), parser["network_def"]["in_channels"])
            return load_weights(network, path, self.device, expected=expected, fix=self.MISMATCH_FIX, state=state).eval()

        return self._get("student", build)

    def prepared(self, key: tuple, compute) -> dict:
        """The assistant's per-image work (embedding, templates) for ``key``, computed once: clicks after the first reuse it."""
        with self._lock:
            if key in self.embeddings:
                self.embeddings.move_to_end(key)
                return self.embeddings[key]
        value = compute()
        with self._lock:
            self.embeddings[key] = value
            while len(self.embeddings) > 32:
                self.embeddings.popitem(last=False)
        return value
