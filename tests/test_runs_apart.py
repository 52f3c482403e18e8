"""A new user's first day: their own data right after the demo. Runs of different data sets never share
folders, and every resume and checkpoint load checks that the saved state was made for this run."""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import CONFIGS, REPO, stage1_workflow
from monai.bundle import ConfigWorkflow

from vessa.data.sample_data import generate_sample_dataset
from vessa.training.checkpoints import made_for, read_made_for
from vessa.errors import CheckpointError, error_chain
from vessa.networks.students import StudentUNet

FAST2 = {"iterations": 2, "epoch_length": 2, "val_interval": 1, "batch_size": 2, "patch_size": 64, "stage1_iterations": 2, "train#handlers#4#_disabled_": True}


def lesion_dataset(path: Path) -> Path:
    """A user's own data: RGB images with one structure, called 'lesion'."""
    generate_sample_dataset(path, kind="2d_rgb", num_train=8, num_val=2, num_test=2, size=64, seed=3)
    meta = json.loads((path / "dataset.json").read_text())
    meta["labels"] = {"0": "background", "1": "lesion"}
    (path / "dataset.json").write_text(json.dumps(meta))
    return path


def fingerprint(folder: Path) -> dict[str, str]:
    """Content hash of every file under ``folder``."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def after_the_demo(trained_stage1, tmp_path) -> Path:
    """A bundle root holding what the demo's stage 1 left (the gray 3-class sample data, its models and runs)."""
    for name in ("models", "runs", "sample_data"):
        shutil.copytree(trained_stage1["root"] / name, tmp_path / name)
    lesion_dataset(tmp_path / "lesions")
    return tmp_path


def run_stage2(root: Path, **overrides) -> ConfigWorkflow:
    wf = ConfigWorkflow(config_file=str(CONFIGS / "stage2.json"), workflow_type="train", run_id="training", bundle_root=str(root), **{**FAST2, **overrides})
    wf.initialize()
    wf.run()
    return wf


def last_line(cmd: list[str]) -> tuple[int, str, str]:
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    return out.returncode, lines[-1] if lines else "", out.stderr


def test_defaults_keep_each_data_set_in_its_own_folders(trained_stage1):
    root = trained_stage1["root"]
    assert (root / "models" / "sample_2d" / "assistant.pt").is_file()
    assert (root / "runs" / "sample_2d" / "stage1" / "latest.pt").is_file()
    assert not (root / "models" / "assistant.pt").exists() and not (root / "runs" / "stage1").exists()


@pytest.mark.parametrize("folders", ["default", "new"])
def test_stage2_on_the_users_own_data_trains_without_touching_the_demos_files(after_the_demo, folders):
    root = after_the_demo
    before = fingerprint(root / "models") | fingerprint(root / "runs")
    extra = {} if folders == "default" else {"ckpt_dir": str(root / "mine" / "models"), "run_dir": str(root / "mine" / "run")}
    wf = run_stage2(root, dataset_dir=str(root / "lesions"), labeled=0.5, method="unimatch", assistant="vessa", **extra)
    assert wf.parser.get_parsed_content("train#trainer").state.iteration == 2
    after = fingerprint(root / "models") | fingerprint(root / "runs")
    assert {k: after[k] for k in before} == before  # nothing of the demo's run was written again
    ckpt = Path(wf.parser.get_parsed_content("ckpt_dir"))
    run = Path(wf.parser.get_parsed_content("run_dir"))
    assert ckpt == (root / "models" / "lesions" if folders == "default" else root / "mine" / "models")
    assert (run / "stage1" / "latest.pt").is_file() and (ckpt / "assistant.pt").is_file()  # the automatic stage 1 ran under this run
    record = read_made_for(ckpt / "model.pt")
    assert record["labels"] == {"0": "background", "1": "lesion"} and record["in_channels"] == 3


def test_an_assistant_made_for_other_classes_stops_the_command_with_one_line(after_the_demo):
    root = after_the_demo
    cmd = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", "configs/stage2.json", "--bundle_root", str(root)]
    cmd += ["--dataset_dir", str(root / "lesions"), "--labeled", "0.5", "--assistant_dir", str(root / "models" / "sample_2d"), "--iterations", "2"]
    code, last, stderr = last_line(cmd)
    assert code != 0
    assert last.startswith("CheckpointError: The template bank") and str(root / "models" / "sample_2d" / "bank.pt") in last
    assert "labels cavity, wall, crescent there, lesion here" in last and "in_channels 1 there, 3 here" in last
    assert "--assistant_dir" in last and "Traceback" not in stderr


def test_resuming_a_run_made_for_another_data_set_stops_with_the_fix(tmp_path):
    lesion_dataset(tmp_path / "lesions")
    shared_run = tmp_path / "one_run_dir"
    stage1_workflow(tmp_path, iterations=2, epoch_length=2, val_interval=1, batch_size=2, run_dir=str(shared_run)).run()
    cmd = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", "configs/stage1.json", "--bundle_root", str(tmp_path)]
    cmd += ["--dataset_dir", str(tmp_path / "lesions"), "--run_dir", str(shared_run), "--iterations", "2", "--epoch_length", "2", "--batch_size", "2"]
    code, last, stderr = last_line(cmd)
    assert code != 0, stderr[-2000:]
    assert last.startswith(f"CheckpointError: The saved training state {shared_run / 'latest.pt'} was made for something else")
    assert "labels cavity, wall, crescent there, lesion here" in last and "--resume false" in last and "--run_dir" in last
    assert "size mismatch" not in stderr
    # the fix the message names works
    wf = stage1_workflow(tmp_path, dataset_dir=str(tmp_path / "lesions"), run_dir=str(shared_run), resume=False, iterations=2, epoch_length=2, val_interval=1, batch_size=2)
    wf.run()
    assert read_made_for(tmp_path / "models" / "lesions" / "assistant.pt")["labels"]["1"] == "lesion"


def test_a_stage1_state_is_not_resumed_as_stage2(tmp_path):
    stage1_workflow(tmp_path, iterations=2, epoch_length=2, val_interval=1, batch_size=2, run_dir=str(tmp_path / "run")).run()
    with pytest.raises(Exception) as err:
        run_stage2(tmp_path, method="supervised", assistant="none", run_dir=str(tmp_path / "run"))
    mismatch = next(e for e in error_chain(err.value) if isinstance(e, CheckpointError))
    assert "run stage1 there, stage2 here" in str(mismatch)


def test_evaluating_a_student_of_other_classes_names_both(served_checkpoints, tmp_path):
    lesion_dataset(tmp_path / "lesions")
    wf = ConfigWorkflow(  # the served student was trained on the gray sample data
        config_file=[str(CONFIGS / "stage2.json"), str(CONFIGS / "evaluate.json")], workflow_type="infer", run_id="evaluating",
        bundle_root=str(tmp_path), dataset_dir=str(tmp_path / "lesions"), ckpt_dir=str(served_checkpoints),
    )
    with pytest.raises(Exception) as err:
        wf.initialize()
        wf.run()
    mismatch = next(e for e in error_chain(err.value) if isinstance(e, CheckpointError))
    assert "labels cavity, wall, crescent there, lesion here" in str(mismatch) and "--ckpt_dir" in str(mismatch)


def test_weights_carry_their_record_and_a_warm_start_keeps_its_own():
    net = StudentUNet(in_channels=1, out_channels=2, features=(4, 4, 4, 4, 4))
    net.set_made_for({"labels": {"0": "background", "1": "a"}, "run": "first"})
    state = net.state_dict()
    assert state["_extra_state"]["made_for"]["run"] == "first"
    fresh = StudentUNet(in_channels=1, out_channels=2, features=(4, 4, 4, 4, 4))
    fresh.load_state_dict(state)
    assert fresh.made_for["run"] == "first"  # a bare network adopts the file's record
    warm = StudentUNet(in_channels=1, out_channels=2, features=(4, 4, 4, 4, 4))
    warm.set_made_for({"run": "second"})
    warm.load_state_dict(state)
    assert warm.made_for == {"run": "second"}  # a network being trained keeps its own
    old = {k: v for k, v in state.items() if k != "_extra_state"}  # saved before records existed
    StudentUNet(in_channels=1, out_channels=2, features=(4, 4, 4, 4, 4)).load_state_dict(old)


def test_the_record_names_data_set_labels_channels_and_split(trained_stage1):
    data = trained_stage1["workflow"].parser.get_parsed_content("data")
    record = made_for(data)
    assert record["labels"] == {"0": "background", "1": "cavity", "2": "wall", "3": "crescent"}
    assert record["in_channels"] == 1 and len(record["labeled"]) == 6 and record["dataset"].endswith("sample_data/2d")
    saved = read_made_for(trained_stage1["root"] / "models" / "sample_2d" / "assistant.pt")
    assert {k: saved[k] for k in record} == record
    assert saved["image_size"] == 64 and saved["text_alignment"] is False and saved["text_dim"] == 384
    assert torch.load(trained_stage1["root"] / "runs" / "sample_2d" / "stage1" / "latest.pt", weights_only=True)["made_for"]["run"] == "stage1"
