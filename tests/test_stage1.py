"""Stage 1 as a MONAI bundle: training lowers the loss, the assistant beats copying templates, resume works."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from ignite.engine import Events
from conftest import CONFIGS, REPO, stage1_workflow
from monai.bundle import ConfigWorkflow

from vessa.data.template_bank import TemplateBank
from vessa.evaluation.assistant import evaluate_assistant
from vessa.inference.predictor import AssistantPredictor
from vessa.training.stage1_runner import ensure_stage1, stopped_early
from vessa.errors import CheckpointError


def test_metadata_verifies_offline():
    schema = REPO.parent / "shared" / "schemas" / "meta_schema_20240725.json"
    if not schema.is_file():
        pytest.skip("MONAI's metadata schema is not beside the repository")
    out = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "verify_metadata", "--meta_file", str(CONFIGS / "metadata.json"), "--filepath", str(schema)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "metadata is verified with no error" in out.stdout + out.stderr


def test_training_lowers_the_loss(trained_stage1):
    losses = np.array(trained_stage1["losses"])
    assert len(losses) == 300
    assert losses[-40:].mean() < 0.8 * losses[:40].mean()


def test_run_writes_checkpoints_bank_and_split(trained_stage1):
    root = trained_stage1["root"]
    assert (root / "models" / "sample_2d" / "assistant.pt").is_file()
    assert (root / "runs" / "sample_2d" / "stage1" / "latest.pt").is_file()
    split = json.loads((root / "runs" / "sample_2d" / "stage1" / "split.json").read_text())
    assert len(split["labeled"]) == 6 and len(split["unlabeled"]) == 18
    bank = TemplateBank.load(root / "models" / "sample_2d" / "bank.pt")
    assert set(bank.ids) <= set(split["labeled"])  # the bank holds labelled cases only


def test_assistant_beats_copying_the_template_on_held_out_data(trained_stage1):
    wf = trained_stage1["workflow"]
    root = trained_stage1["root"]
    network = wf.parser.get_parsed_content("network")
    network.load_state_dict(torch.load(root / "models" / "sample_2d" / "assistant.pt", map_location="cpu", weights_only=True))
    bank = TemplateBank.load(root / "models" / "sample_2d" / "bank.pt")
    datalist = wf.parser.get_parsed_content("data")["datalist"]
    from vessa.data import load_slices
    from vessa.data.volumes import group_volumes

    volumes = group_volumes(load_slices(datalist.test, datalist.label_values, normalize="volume"))
    results = evaluate_assistant(AssistantPredictor(network, bank), volumes, modes=("assistant", "template"), progress=False)
    assert results["assistant"]["mean"] > results["template"]["mean"] + 0.05, results
    for name in bank.class_names:
        assert results["assistant"]["per_class"][name] > results["template"]["per_class"][name]


def test_resume_continues_from_the_saved_iteration(tmp_path):
    wf = stage1_workflow(tmp_path, iterations=10, epoch_length=5, val_interval=2)
    wf.run()
    assert wf.parser.get_parsed_content("train#trainer").state.iteration == 10
    resumed = stage1_workflow(tmp_path, iterations=20, epoch_length=5, val_interval=2)
    trainer = resumed.parser.get_parsed_content("train#trainer")
    first = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: first.append(e.state.iteration) if not first else None)
    resumed.run()
    assert first == [11]
    assert trainer.state.iteration == 20


def test_documented_command_runs_from_the_repo_root(tmp_path):
    cmd = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", "configs/stage1.json"]
    cmd += ["--bundle_root", str(tmp_path), "--iterations", "4", "--epoch_length", "2", "--val_interval", "1"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "models" / "sample_2d" / "assistant.pt").is_file()
    assert (tmp_path / "sample_data" / "2d" / "dataset.json").is_file()


def test_evaluation_without_a_checkpoint_names_the_missing_file(tmp_path):
    wf = ConfigWorkflow(
        config_file=[str(CONFIGS / "stage1.json"), str(CONFIGS / "evaluate_assistant.json")], workflow_type="infer", run_id="evaluating", bundle_root=str(tmp_path)
    )
    with pytest.raises(Exception) as err:
        wf.initialize()
        wf.run()
    chain = []
    e = err.value
    while e is not None:
        chain.append(e)
        e = e.__cause__
    assert any(isinstance(x, CheckpointError) and "bank.pt" in str(x) for x in chain)


@pytest.mark.parametrize("kind", ["2d_rgb", "3d"])
def test_stage1_runs_on_rgb_images_and_on_volumes_slice_by_slice(tmp_path, kind):
    wf = stage1_workflow(tmp_path, dataset_dir=str(tmp_path / kind), sample_kind=kind, labeled=3, iterations=4, epoch_length=2, val_interval=2, batch_size=2)
    wf.run()
    ckpt = tmp_path / "models" / f"sample_{kind}"
    bank = TemplateBank.load(ckpt / "bank.pt")
    assert bank.images[0].shape[0] == (3 if kind == "2d_rgb" else 1)
    if kind == "3d":
        assert len(set(bank.ids)) == 3 and len(bank) > 3  # several slices of each labelled volume
    assert (ckpt / "assistant.pt").is_file()


def test_a_stopped_stage1_is_finished_before_its_assistant_is_used(tmp_path):
    # a killed stage 1 leaves its best-so-far assistant.pt behind, which would otherwise pass for a finished one
    ckpt_dir, run_dir = tmp_path / "assistant", tmp_path / "stage1_run"
    settings = {"iterations": 10, "epoch_length": 5, "val_interval": 1, "run_dir": str(run_dir)}
    wf = stage1_workflow(tmp_path, ckpt_dir=str(ckpt_dir), **settings)
    wf.parser.get_parsed_content("train#trainer").add_event_handler(Events.EPOCH_COMPLETED(once=1), lambda engine: engine.terminate())
    wf.run()
    assert (ckpt_dir / "assistant.pt").is_file() and stopped_early(run_dir)

    ensure_stage1(ckpt_dir, wf.parser.get_parsed_content("data")["split"], bundle_root=str(tmp_path), **settings, **{"train#handlers#4#_disabled_": True})
    assert not stopped_early(run_dir)
    assert torch.load(run_dir / "latest.pt", weights_only=True)["trainer"]["iteration"] == 10
