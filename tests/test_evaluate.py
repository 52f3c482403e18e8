"""Student evaluation (configs/evaluate.json, `vessa evaluate`): the published metrics, JSON and table, clear errors."""

import json

import pytest
from conftest import CONFIGS
from monai.bundle import ConfigWorkflow

from vessa.errors import CheckpointError

FAST = {"iterations": 2, "epoch_length": 1, "val_interval": 1, "batch_size": 2, "patch_size": 64, "train#handlers#4#_disabled_": True}


def _evaluate(root, **overrides) -> ConfigWorkflow:
    wf = ConfigWorkflow(config_file=[str(CONFIGS / "stage2.json"), str(CONFIGS / "evaluate.json")], workflow_type="infer", run_id="evaluating", bundle_root=str(root), **overrides)
    wf.initialize()
    return wf


def test_evaluate_reports_dice_jaccard_hd95_asd_per_class_and_mean(tmp_path, capfd):
    train = ConfigWorkflow(config_file=str(CONFIGS / "stage2.json"), workflow_type="train", run_id="training", bundle_root=str(tmp_path), method="supervised", assistant="none", **FAST)
    train.initialize()
    train.run()
    _evaluate(tmp_path, patch_size=64).run()
    report = json.loads((tmp_path / "eval" / "sample_2d" / "student_test.json").read_text())
    assert len(report["per_case"]) == 8  # the sample data's test split
    assert set(report["summary"]["classes"]) == {"cavity", "wall", "crescent"}
    assert set(report["summary"]["mean"]) >= {"dice", "jaccard", "hd95", "asd"}
    assert 0.0 <= report["summary"]["mean"]["dice"] <= 1.0
    assert "| **mean** |" in capfd.readouterr().out


def test_evaluate_without_a_trained_model_names_the_missing_file_and_the_fix(tmp_path):
    with pytest.raises(Exception) as err:
        _evaluate(tmp_path)
    chain, e = [], err.value
    while e is not None:
        chain.append(e)
        e = e.__cause__
    assert any(isinstance(x, CheckpointError) and "model.pt" in str(x) and "run training" in str(x) for x in chain)
