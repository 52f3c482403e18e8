"""configs/multi_gpu_train.json: torchrun + DistributedDataParallel, here with two gloo processes on the CPU."""

import json
import os
import subprocess
import sys

import torch
from conftest import REPO


def test_two_processes_train_one_student_and_write_one_checkpoint(tmp_path):
    overrides = {
        "bundle_root": str(tmp_path), "method": "unimatch", "assistant": "none", "iterations": 4, "epoch_length": 2, "val_interval": 2,
        "batch_size": 2, "patch_size": 48, "train#handlers#4#_disabled_": True,
    }
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2", str(REPO / "tests" / "ddp_worker.py"), str(tmp_path), json.dumps(overrides)]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""})
    assert out.returncode == 0, out.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert all(r["world_size"] == 2 and r["iteration"] == 4 for r in ranks)
    assert torch.equal(ranks[0]["weights"], ranks[1]["weights"])  # gradients were averaged: both ranks hold the same student
    assert not torch.equal(ranks[0]["first_unlabelled_image"], ranks[1]["first_unlabelled_image"])  # each rank its own random stream
    models = tmp_path / "models" / "sample_2d"
    assert sorted(p.name for p in models.iterdir()) == ["model.pt"]  # one best checkpoint, written by rank 0
    state = torch.load(models / "model.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in state)  # the student itself, not its DDP wrapper
    latest = torch.load(tmp_path / "runs" / "sample_2d" / "stage2" / "latest.pt", weights_only=True)
    assert latest["trainer"]["iteration"] == 4 and not any(k.startswith("module.") for k in latest["model"])
