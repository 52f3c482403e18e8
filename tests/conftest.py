"""Shared fixtures: the repository root and a short stage-1 run on the built-in sample data."""

from pathlib import Path

import pytest
from ignite.engine import Events
from monai.bundle import ConfigWorkflow

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
SHARED_DATA = REPO.parent / "shared" / "data"


def stage1_workflow(bundle_root: Path, run_id: str = "training", **overrides) -> ConfigWorkflow:
    """A stage-1 ConfigWorkflow rooted in ``bundle_root`` (sample data is written there), progress bar off."""
    overrides.setdefault("train#handlers#4#_disabled_", True)
    wf = ConfigWorkflow(config_file=str(CONFIGS / "stage1.json"), workflow_type="train", run_id=run_id, bundle_root=str(bundle_root), **overrides)
    wf.initialize()
    return wf


DEMO_STAGE1 = {"iterations": 300, "image_size": 64, "epoch_length": 50, "val_interval": 2}  # as `make demo` trains it (vessa.cli)


@pytest.fixture(scope="session")
def trained_stage1(tmp_path_factory):
    """One stage-1 run as `make demo` trains it (shared by the tests that need a trained assistant); records the loss of every iteration."""
    root = tmp_path_factory.mktemp("stage1")
    wf = stage1_workflow(root, **DEMO_STAGE1)
    trainer = wf.parser.get_parsed_content("train#trainer")
    losses: list[float] = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda engine: losses.append(engine.state.output["loss"]))
    wf.run()
    wf.finalize()
    return {"root": root, "workflow": wf, "losses": losses}


@pytest.fixture(scope="session")
def served_checkpoints(trained_stage1, tmp_path_factory):
    """What the MONAI Label app serves: the stage-1 assistant and bank, and a short supervised student
    (150 iterations) on the same sample data. Tests copy the folder before changing it."""
    import shutil

    root = trained_stage1["root"]
    ckpt = tmp_path_factory.mktemp("served") / "models"
    ckpt.mkdir()
    for name in ("assistant.pt", "bank.pt"):
        shutil.copy(root / "models" / "sample_2d" / name, ckpt / name)
    wf = ConfigWorkflow(
        config_file=str(CONFIGS / "stage2.json"), workflow_type="train", run_id="training", bundle_root=str(root), ckpt_dir=str(ckpt),
        run_dir=str(ckpt.parent / "stage2_run"), method="supervised", assistant="none", iterations=150, epoch_length=50, val_interval=3,
        patch_size=96, batch_size=4, **{"train#handlers#4#_disabled_": True},
    )
    wf.initialize()
    wf.run()
    wf.finalize()
    return ckpt
