"""Stage 2 on volumes: 3D patches, slice-wise assistant refinement, runs without a validation list."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import CONFIGS
from monai.bundle import ConfigWorkflow

from vessa.assistants.base import Assistant
from vessa.data import generate_sample_dataset
from vessa.data.prepare import prepare_volumes
from vessa.data.semi_volumes import SemiSupervisedVolumeDataset

FAST_3D = {"labeled": 2, "iterations": 2, "epoch_length": 1, "val_interval": 1, "batch_size": 1, "patch_size": [32, 32, 16], "train#handlers#4#_disabled_": True}


def stage2_3d_workflow(bundle_root, **overrides) -> ConfigWorkflow:
    configs = [str(CONFIGS / "stage2.json"), str(CONFIGS / "stage2_3d.json")]
    wf = ConfigWorkflow(config_file=configs, workflow_type="train", run_id="training", bundle_root=str(bundle_root), **{**FAST_3D, **overrides})
    wf.initialize()
    return wf


@pytest.fixture(scope="module")
def sample_3d(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample3d")
    generate_sample_dataset(root, kind="3d", num_train=6, num_val=2, num_test=2, size=48, depth=10)
    return root


def test_volume_batches_pair_labelled_patches_with_unlabelled_ones_that_carry_no_label(sample_3d, tmp_path):
    data = prepare_volumes(sample_3d, 2, 0, tmp_path, with_unlabeled=True)
    assert len(data["labeled_volumes"]) == 2 and len(data["unlabeled_volumes"]) == 4
    assert all("label" not in v for v in data["unlabeled_volumes"])
    item = SemiSupervisedVolumeDataset(data["labeled_volumes"], data["unlabeled_volumes"], (32, 32, 16), length=2)[0]
    assert item["image"].shape == (1, 32, 32, 16) and item["label"].shape == (32, 32, 16)
    assert item["u_image"].shape == item["u_strong1"].shape == (1, 32, 32, 16)
    assert item["u_box1"].shape == (32, 32, 16)
    assert item["u_pos"].shape == (16,) and torch.all(item["u_pos"][1:] >= item["u_pos"][:-1])  # depth 10 padded to 16
    assert not torch.equal(item["u_strong1"], item["u_image"])


class _ForegroundEverywhere(Assistant):
    """A stand-in assistant that answers class 1 with weight 1 on every slice it is asked about."""

    def __init__(self):
        self.seen = []

    def refine(self, images, student_probs, meta=None):
        self.seen.append((images.min().item(), images.max().item(), meta["slice_pos"]))
        return torch.ones(images.shape[0], *images.shape[2:], dtype=torch.long), torch.ones(images.shape[0], *images.shape[2:])


def test_volumes_are_refined_slice_by_slice_every_stride_slices():
    assistant = _ForegroundEverywhere()
    assistant.slice_stride = 3
    images = torch.randn(2, 1, 8, 8, 7) * 5
    probs = torch.zeros(2, 3, 8, 8, 7)
    probs[:, 2] = 1  # the student says class 2 everywhere
    pos = torch.linspace(0, 1, 7).repeat(2, 1)
    labels, weights = assistant(images, probs, {"slice_pos": pos})
    refined = [0, 3, 6]
    assert labels.shape == (2, 8, 8, 7)
    assert torch.all(labels[..., refined] == 1) and torch.all(weights[..., refined] == 1)
    others = [1, 2, 4, 5]
    assert torch.all(labels[..., others] == 2) and torch.all(weights[..., others] == 0)
    lo, hi, seen_pos = assistant.seen[0]
    assert lo >= 0 and hi <= 1  # each slice is min-max scaled for the assistant
    assert torch.allclose(torch.as_tensor(seen_pos), pos[:, refined].reshape(-1))


@pytest.mark.parametrize("method,assistant", [("unimatch", "vessa"), ("mean_teacher", "none"), ("mean_teacher", "text_vlm")])
def test_3d_student_trains_with_each_method_and_checkpoints(tmp_path, sample_3d, method, assistant):
    import csv

    from vessa.evaluation.diagnostics import PseudoLabelDiagnostics

    wf = stage2_3d_workflow(tmp_path, dataset_dir=str(sample_3d), method=method, assistant=assistant, stage1_iterations=2)
    trainer = wf.parser.get_parsed_content("train#trainer")
    data = wf.parser.get_parsed_content("data")
    diag = PseudoLabelDiagnostics.for_split(data["split"], data["datalist"].label_values, [32, 32, 16], tmp_path / "diag.csv", num_images=16, interval=2)
    diag.attach(trainer)
    wf.run()
    assert trainer.state.iteration == 2 and "unsup" in trainer.state.output
    assert (Path(wf.parser.get_parsed_content("ckpt_dir")) / "model.pt").is_file()
    (row,) = list(csv.DictReader(open(tmp_path / "diag.csv")))
    assert ("assistant_dice" in row) == (assistant != "none")
    assert ("vlm_loss" in trainer.state.output) == (assistant == "text_vlm")
    assert diag.images.shape == (2, 1, 32, 32, 16)


def test_without_a_validation_list_the_final_checkpoint_is_kept(tmp_path, sample_3d, capfd):
    data_dir = tmp_path / "data"
    shutil.copytree(sample_3d, data_dir)
    meta = json.loads((data_dir / "dataset.json").read_text())
    meta.pop("validation")
    (data_dir / "dataset.json").write_text(json.dumps(meta))
    wf = stage2_3d_workflow(tmp_path, dataset_dir=str(data_dir), method="supervised", assistant="none")
    wf.run()
    out = capfd.readouterr().out
    assert "no 'validation' list" in out and "saved the final weights" in out
    net = wf.parser.get_parsed_content("network")
    saved = torch.load(Path(wf.parser.get_parsed_content("ckpt_dir")) / "model.pt", weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in net.state_dict().items() if torch.is_tensor(v))
    assert saved["_extra_state"]["made_for"]["spatial_dims"] == 3


def test_an_ssl_method_without_unlabelled_cases_says_what_to_change(tmp_path, sample_3d):
    wf = stage2_3d_workflow(tmp_path, dataset_dir=str(sample_3d), method="unimatch", assistant="none", labeled=6)
    with pytest.raises(Exception) as err:
        wf.parser.get_parsed_content("train#trainer")
    assert "needs unlabelled cases" in str(err.value) or "needs unlabelled cases" in str(err.value.__cause__)
