"""The VESSA-base shipped in the repository (models/vessa_base.pt): it loads, stage 1 starts from it by default,
and it segments the built-in sample data with no training."""

import json
from pathlib import Path

import pytest
import torch
from conftest import CONFIGS, stage1_workflow
from monai.bundle import ConfigWorkflow

from vessa.training.checkpoints import read_made_for
from vessa.networks import pretrained
from vessa.networks.pretrained import assistant_from_base

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "vessa_base.pt"


def test_the_shipped_base_is_small_and_made_by_pretraining_on_every_set():
    assert SHIPPED.is_file() and SHIPPED.stat().st_size <= 20 * 2**20
    record = read_made_for(SHIPPED)
    assert record["run"] == "pretrain" and record["in_channels"] == 3
    assert set(record["datasets"]) == {"acdc", "la", "monuseg", "hc18", "drive", "kvasir"}
    assistant = assistant_from_base(SHIPPED, {0: "background", 1: "cavity", 2: "wall"}, in_channels=1)
    assert assistant.num_classes == 2 and assistant.has_class_text


def test_stage1_starts_from_the_shipped_base_by_default(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "vessa_base.pt").symlink_to(SHIPPED)
    network = stage1_workflow(tmp_path, iterations=2, epoch_length=2).parser.get_parsed_content("network")
    base = torch.load(SHIPPED, weights_only=True)
    assert torch.equal(network.state_dict()["mask_decoder.iou_token.weight"], base["mask_decoder.iou_token.weight"])


def test_stage1_without_a_shipped_base_trains_from_scratch_and_says_so(tmp_path, monkeypatch):
    warnings = []
    monkeypatch.setattr(pretrained.logger, "warning", warnings.append)
    network = stage1_workflow(tmp_path, iterations=2, epoch_length=2).parser.get_parsed_content("network")
    assert any("No VESSA-base" in w for w in warnings)
    base = torch.load(SHIPPED, weights_only=True)
    assert not torch.equal(network.state_dict()["mask_decoder.iou_token.weight"], base["mask_decoder.iou_token.weight"])


def test_the_shipped_base_segments_the_sample_data_with_no_training(tmp_path):
    wf = ConfigWorkflow(
        config_file=[str(CONFIGS / "stage1.json"), str(CONFIGS / "evaluate_assistant.json")], workflow_type="infer", run_id="evaluating",
        bundle_root=str(tmp_path), assistant_path=str(SHIPPED), labeled=2, eval_modes=["assistant", "template"],
    )
    wf.initialize()
    wf.run()
    report = json.loads((tmp_path / "eval" / "sample_2d" / "assistant_test.json").read_text())
    assert report["assistant"]["mean"] > report["template"]["mean"]  # it does better than copying the retrieved template's mask
