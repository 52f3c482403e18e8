"""Make sure a stage-1 assistant exists for a stage-2 run, training one on the same labelled split if not."""

from __future__ import annotations

import logging
from pathlib import Path

from vessa.data.splits import Split
from vessa.data.template_bank import TemplateBank
from vessa.inference.predictor import bank_record
from vessa.training.checkpoints import check_made_for, read_made_for
from vessa.errors import DataError
from vessa.torch_files import load_plain

logger = logging.getLogger(__name__)
CONFIGS = Path(__file__).resolve().parents[3] / "configs"
STAGE2_FIX = "give this run its own --assistant_dir (stage 2 then trains an assistant for this data set there first) or point assistant_dir at one trained for these labels"


def run_stage1(ckpt_dir: str | Path, **stage1_overrides) -> tuple[Path, Path]:
    """Train stage 1 (``configs/stage1.json`` with ``stage1_overrides``, resuming from its run folder) into
    ``ckpt_dir``; returns the paths of ``assistant.pt`` and ``bank.pt``."""
    from monai.bundle import ConfigWorkflow

    ckpt_dir = Path(ckpt_dir)
    wf = ConfigWorkflow(config_file=str(CONFIGS / "stage1.json"), workflow_type="train", run_id="training", ckpt_dir=str(ckpt_dir), **stage1_overrides)
    wf.initialize()
    wf.run()
    wf.finalize()
    logger.info(f"Stage 1 finished: {ckpt_dir / 'assistant.pt'}")
    return ckpt_dir / "assistant.pt", ckpt_dir / "bank.pt"


def stopped_early(run_dir: str | Path | None) -> bool:
    """Whether ``run_dir`` holds the resume state of a stage-1 training that stopped before its last iteration.

    The best checkpoint (``assistant.pt``) is written at every better validation, so a killed run leaves one
    behind that looks finished; its ``latest.pt`` says how far it got.
    """
    path = Path(run_dir) / "latest.pt" if run_dir else None
    if path is None or not path.is_file():
        return False
    trainer = load_plain(path, "saved stage-1 training state").get("trainer") or {}
    planned = trainer.get("max_iters") or trainer.get("max_epochs", 0) * trainer.get("epoch_length", 0)
    return trainer.get("iteration", 0) < planned


def ensure_stage1(ckpt_dir: str | Path, split: Split, expected: dict | None = None, **stage1_overrides) -> tuple[Path, Path]:
    """Paths of ``assistant.pt`` and ``bank.pt`` in ``ckpt_dir``; trains stage 1 first when they are missing, and
    finishes it first when the stage-1 ``run_dir`` holds a training that was stopped before its end.

    ``stage1_overrides`` are config ids of ``configs/stage1.json`` (dataset_dir, labeled, seed, run_dir, ...),
    so the assistant learns from exactly the labelled split of the stage-2 run. An assistant or bank made for
    other labels or input channels than ``expected`` (:func:`vessa.training.checkpoints.labels_record` of the
    data set) is refused, and so is a bank holding a case outside the labelled split: its labels would leak
    into semi-supervised training.
    """
    ckpt_dir = Path(ckpt_dir)
    assistant_path, bank_path = ckpt_dir / "assistant.pt", ckpt_dir / "bank.pt"
    if not (assistant_path.is_file() and bank_path.is_file()):
        logger.warning(f"No stage-1 assistant in {ckpt_dir}: training one first on the same labelled split ({len(split.labeled)} cases).")
        run_stage1(ckpt_dir, **stage1_overrides)
    elif stopped_early(stage1_overrides.get("run_dir")):
        logger.warning(f"The stage-1 training in {stage1_overrides['run_dir']} stopped before its end: finishing it before {ckpt_dir} is used.")
        run_stage1(ckpt_dir, **stage1_overrides)
    bank = TemplateBank.load(bank_path)
    if expected is not None:
        check_made_for(bank_record(bank), expected, f"The template bank {bank_path}", STAGE2_FIX)
        check_made_for(read_made_for(assistant_path), expected, f"The assistant {assistant_path}", STAGE2_FIX)
    foreign = sorted(set(bank.ids) - set(split.labeled_ids))
    if foreign:
        raise DataError(
            f"The template bank {bank_path} holds cases outside this run's labelled split ({foreign[:3]}...): "
            "their labels would leak into semi-supervised training. Use a ckpt_dir of its own for this split, or retrain stage 1 on it."
        )
    return assistant_path, bank_path
