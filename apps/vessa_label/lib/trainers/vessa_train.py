"""Train tasks: stage 1 (the assistant) on the approved labels, stage 2 (the student) on the approved labels
plus every unlabelled image of the datastore.

MONAI Label's :class:`BundleTrainTask` hands a bundle the labelled image/label pairs only, under
``train#dataset#data``. These tasks extend it: the datastore (approved labels and unlabelled images) is
written as a data set (``dataset.json`` with the labelled ids as its split) and the bundle's own stage configs
run on it, writing their checkpoints atomically into the folder the app serves from.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Sequence

import monai.bundle
import torch
from monailabel.interfaces.datastore import Datastore, DefaultLabelTag
from monailabel.tasks.train.bundle import BundleConstants, BundleTrainTask
from monailabel.utils.others.generic import device_list

from lib.served import ServedModels
from vessa.data.datalist import case_id
from vessa.training.checkpoints import atomic_write_json
from vessa.errors import DataError

logger = logging.getLogger(__name__)

SPLIT_KEY = "monailabel"


class _StageConstants(BundleConstants):
    def __init__(self, config_files: Sequence[str]) -> None:
        self.config_files = list(config_files)

    def configs(self) -> Sequence[str]:
        return self.config_files[:1]


def write_datastore_dataset(datastore: Datastore, labels: dict[int, str], out_dir: str | Path) -> Path:
    """The datastore as a VESSA data set: approved (``final``) labels as the labelled split, every other image
    unlabelled. Returns the folder holding ``dataset.json``."""
    labelled = [{"image": d["image"], "label": d["label"]} for d in datastore.datalist() if d and d.get("label")]
    if not labelled:
        raise DataError("No approved label in the datastore: save at least one label as 'final' (Submit in Slicer / OHIF) before training.")
    unlabelled = [{"image": datastore.get_image_uri(i)} for i in datastore.get_unlabeled_images(DefaultLabelTag.FINAL.value)]
    is_3d = str(labelled[0]["image"]).lower().endswith((".nii", ".nii.gz"))
    dataset = {
        "name": "MONAI Label datastore",
        "tensorImageSize": "3D" if is_3d else "2D",
        "labels": {str(v): n for v, n in sorted(labels.items())},
        "training": labelled + unlabelled,
        "labeled_cases": {SPLIT_KEY: [case_id(d["image"]) for d in labelled]},
    }
    atomic_write_json(dataset, Path(out_dir) / "dataset.json")
    logger.info(f"Datastore data set: {len(labelled)} labelled, {len(unlabelled)} unlabelled images in {out_dir}")
    return Path(out_dir)


class VessaTrainTask(BundleTrainTask):
    """One stage of the bundle trained on the datastore.

    Args:
        served: the models the app serves (their checkpoint folder receives the new weights).
        stage: "stage1" (the assistant) or "stage2" (the student with the assistant in the loop).
        config_files: the bundle configs of the stage (stage 2 in 3D: ``stage2.json`` and ``stage2_3d.json``).
        work_dir: where the datastore's data list and the training logs go.
        text_model: local folder of the text model for the class prompts (stage 1, the text_vlm assistant), None for the default.
    """

    def __init__(self, served: ServedModels, stage: str, config_files: Sequence[str], work_dir: str | Path, text_model: str | None = None) -> None:
        if stage not in ("stage1", "stage2"):
            raise ValueError(f"unknown stage {stage!r}: use 'stage1' or 'stage2'")
        super().__init__(str(served.bundle_root), conf={}, const=_StageConstants(config_files), enable_tracking=False)
        self.served = served
        self.stage = stage
        self.config_files = [str(served.bundle_root / "configs" / c) for c in config_files]
        self.work_dir = Path(work_dir) / stage
        self.text_model = text_model
        self.description = (
            "VESSA stage 1: the assistant trained on the approved labels (they also become its template bank)"
            if stage == "stage1"
            else "VESSA stage 2: the student trained on the approved labels and every unlabelled image, with the assistant's pseudo-labels"
        )
        self._request: dict = {}

    def config(self) -> dict:
        options = {"device": device_list(), "iterations": 300, "pretrained": True}
        if self.stage == "stage2":
            options["multi_gpu"] = torch.cuda.device_count() > 1
        if self.stage == "stage1":
            options["text_alignment"] = False
        if self.stage == "stage2":
            options.update({"method": ["unimatch", "mean_teacher", "supervised"], "assistant": ["vessa", "text_vlm", "none"], "stage1_iterations": 300})
        return options

    def __call__(self, request: dict, datastore: Datastore) -> dict:
        self._request = request
        gpus = self.gpus(request)
        if self.stage == "stage2" and request.get("multi_gpu", False) and len(gpus) > 1:
            self._fetch_datalist(request, datastore)
            self._run_command(self.multi_gpu_command(len(gpus)), {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(map(str, gpus))})
        else:
            super().__call__({"val_split": 0.0, "tracking": "None", "run_id": "training", **request, "multi_gpu": False}, datastore)
        return {"stage": self.stage, "model_versions": self.served.versions()}

    @staticmethod
    def gpus(request: dict) -> list[int]:
        """The GPUs a request asks for (MONAI Label's ``gpus`` option: ``all`` or a comma list)."""
        wanted = request.get("gpus", "all")
        return list(range(torch.cuda.device_count())) if wanted == "all" else [int(g) for g in str(wanted).split(",")]

    def multi_gpu_command(self, nproc: int) -> list[str]:
        """``torchrun`` over the stage's configs and ``configs/multi_gpu_train.json`` (DistributedDataParallel, one
        process per GPU) with the overrides of a single-GPU run, handed over as MONAI's ``--args_file``; MONAI Label
        runs it and streams its output."""
        overrides = self._update_overrides({"train#handlers": self.bundle_config.get(self.const.key_train_handlers(), [])})
        configs = self.config_files + [str(self.served.bundle_root / "configs" / "multi_gpu_train.json")]
        args = {"config_file": configs, "logging_file": str(self.served.bundle_root / "configs" / "logging.conf"), **overrides}
        args_file = atomic_write_json(args, self.work_dir / "multi_gpu_args.json")
        return ["torchrun", "--standalone", "--nnodes=1", f"--nproc_per_node={nproc}", "-m", "monai.bundle", "run", "training", "--args_file", str(args_file)]

    def _fetch_datalist(self, request: dict, datastore: Datastore) -> list[dict]:
        write_datastore_dataset(datastore, self.served.labels(), self.work_dir / "data")
        return []

    def _partition_datalist(self, datalist, request, shuffle=False):
        return datalist, None

    def _load_checkpoint(self, model_pytorch, pretrained, train_handlers):
        """Warm starts are added in :meth:`_update_overrides`, from the served checkpoint folder."""

    def _update_overrides(self, overrides: dict) -> dict:
        for key in ("train#trainer#max_epochs", "train#dataset#data", "validate#dataset#data"):
            overrides.pop(key, None)
        request = self._request
        iterations = int(request.get("iterations", 300))
        ckpt_dir = self.served.ckpt_dir
        overrides.update(
            {
                "dataset_dir": str(self.work_dir / "data"),
                "labeled": SPLIT_KEY,
                "iterations": iterations,
                "epoch_length": min(50, iterations),
                "ckpt_dir": str(ckpt_dir),
                "run_dir": str(self.work_dir / "run"),
                "resume": False,
            }
        )
        weights = ckpt_dir / ("assistant.pt" if self.stage == "stage1" else "model.pt")
        if self.text_model:
            overrides["text_model_path"] = self.text_model
        if self.stage == "stage1":
            overrides["text_alignment"] = bool(request.get("text_alignment", False))
        if self.stage == "stage2":
            overrides.update(
                {
                    "assistant_dir": str(ckpt_dir),
                    "method": request.get("method", "unimatch"),
                    "assistant": request.get("assistant", "vessa"),
                    "stage1_iterations": int(request.get("stage1_iterations", 300)),
                }
            )
        handlers = list(overrides.get("train#handlers") or [])
        if request.get("pretrained", True) and weights.is_file():
            logger.info(f"Warm start from {weights}")
            handlers.append({"_target_": "CheckpointLoader", "load_path": str(weights), "load_dict": {"model": "@network"}, "strict": False, "map_location": "cpu"})
        overrides["train#handlers"] = handlers
        return overrides

    def run_single_gpu(self, request: dict, overrides: dict) -> None:
        logger.info(f"{self.stage}: {json.dumps({k: v for k, v in overrides.items() if k != 'train#handlers'}, default=str)}")
        monai.bundle.run(run_id="training", init_id="initialize", final_id="finalize", meta_file=self.bundle_metadata_path, config_file=self.config_files, **overrides)
