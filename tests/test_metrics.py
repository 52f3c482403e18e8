"""Metrics (SSL4MIS / medpy conventions) and the student evaluation protocols (slice-wise, sliding window)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_erosion
from scipy.spatial.distance import cdist

from vessa.data import generate_sample_dataset, load_datalist
from vessa.evaluation.student import evaluate_student, load_eval_volumes, predict_volume_sliding, predict_volume_slicewise
from vessa.metrics import case_metrics, format_metrics_table, summarize

LABELS = [0, 1]


def square(shape, r0, r1, c0, c1, value=1):
    m = np.zeros(shape, dtype=np.int64)
    m[r0:r1, c0:c1] = value
    return m


def test_overlapping_squares_exact_dice_and_jaccard():
    truth = square((30, 30), 0, 10, 0, 10)
    pred = square((30, 30), 0, 10, 5, 15)  # overlap 50 px of 100 + 100
    m = case_metrics(pred, truth, LABELS)[1]
    assert m["dice"] == pytest.approx(0.5)
    assert m["jaccard"] == pytest.approx(50 / 150)


def test_identical_masks():
    truth = square((40, 40), 5, 25, 8, 30, value=2) + square((40, 40), 30, 35, 30, 35, value=1)
    m = case_metrics(truth.copy(), truth, [0, 1, 2])
    for v in (1, 2):
        assert m[v] == {"dice": 1.0, "jaccard": 1.0, "hd95": 0.0, "asd": 0.0}


def test_shifted_band_hd95_is_the_shift():
    truth = square((60, 120), 10, 30, 0, 120)
    pred = square((60, 120), 13, 33, 0, 120)  # shifted 3 rows
    m = case_metrics(pred, truth, LABELS)[1]
    assert m["hd95"] == pytest.approx(3.0, abs=1e-6)
    assert 2.5 < m["asd"] <= 3.0
    assert m["dice"] == pytest.approx(2 * 17 * 120 / (2 * 20 * 120))


def _brute_force(pred, truth):
    """medpy's hd95 (pooled directed distances) and asd (pred -> truth) with explicit pairwise distances."""
    bp = np.argwhere(pred ^ binary_erosion(pred))
    bt = np.argwhere(truth ^ binary_erosion(truth))
    d = cdist(bp, bt)
    d_pt, d_tp = d.min(1), d.min(0)
    return np.percentile(np.concatenate([d_pt, d_tp]), 95), d_pt.mean()


def test_distances_match_medpy_definitions_in_3d():
    zz, yy, xx = np.mgrid[:24, :20, :16]
    truth = ((zz - 11) ** 2 + (yy - 9) ** 2 / 1.5 + (xx - 7) ** 2) < 40
    pred = ((zz - 13) ** 2 / 0.7 + (yy - 10) ** 2 + (xx - 8) ** 2 / 1.3) < 36
    m = case_metrics(pred.astype(np.int64), truth.astype(np.int64), LABELS)[1]
    hd95, asd = _brute_force(pred, truth)
    assert m["hd95"] == pytest.approx(hd95, abs=1e-6)
    assert m["asd"] == pytest.approx(asd, abs=1e-6)
    inter = (pred & truth).sum()
    assert m["dice"] == pytest.approx(2 * inter / (pred.sum() + truth.sum()))
    assert m["jaccard"] == pytest.approx(inter / (pred | truth).sum())


def test_empty_cases_follow_the_documented_conventions():
    truth = square((20, 20), 2, 8, 2, 8)
    empty = np.zeros_like(truth)
    zeros = {"dice": 0.0, "jaccard": 0.0, "hd95": 0.0, "asd": 0.0}
    assert case_metrics(empty, truth, LABELS)[1] == zeros  # SSL4MIS: empty prediction -> 0, 0
    assert case_metrics(truth, empty, LABELS)[1] == zeros  # false positive, undefined distances -> 0
    assert case_metrics(empty, empty, LABELS)[1] == {"dice": 1.0, "jaccard": 1.0, "hd95": 0.0, "asd": 0.0}


def test_summarize_and_table():
    a = {1: {"dice": 0.8, "jaccard": 0.6, "hd95": 2.0, "asd": 1.0}, 2: {"dice": 0.6, "jaccard": 0.4, "hd95": 4.0, "asd": 3.0}}
    b = {1: {"dice": 1.0, "jaccard": 1.0, "hd95": 0.0, "asd": 0.0}, 2: {"dice": 0.4, "jaccard": 0.2, "hd95": 6.0, "asd": 5.0}}
    s = summarize([a, {"id": "b", "metrics": {"RV": b[1], "Myo": b[2]}}], {0: "bg", 1: "RV", 2: "Myo"})
    json.dumps(s)
    assert s["num_cases"] == 2
    assert s["classes"]["RV"]["dice"] == pytest.approx(0.9)
    assert s["classes"]["RV"]["dice_std"] == pytest.approx(0.1)
    assert s["classes"]["Myo"]["hd95"] == pytest.approx(5.0)
    assert s["mean"]["dice"] == pytest.approx(0.7)
    assert s["mean"]["dice_std"] == pytest.approx(0.0)
    table = format_metrics_table(s)
    lines = table.splitlines()
    assert lines[0] == "| class | Dice % | Jaccard % | HD95 | ASD |"
    assert len(lines) == 5 and "| RV | 90.00 | 80.00 | 1.00 | 0.50 |" in lines
    assert lines[-1].startswith("| **mean** | 70.00 |")
    assert "±" in format_metrics_table(s, with_std=True)


class ThresholdNet(torch.nn.Module):
    """Class 1 where the first channel > 0.5, else 0, as one-hot logits over ``num_classes`` channels."""

    def __init__(self, num_classes: int = 2):
        super().__init__()
        self.num_classes = num_classes
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.calls = []

    def forward(self, x):
        self.calls.append((self.training, torch.is_grad_enabled(), tuple(x.shape)))
        fg = (x[:, :1] > 0.5).float()
        rest = [torch.zeros_like(fg)] * (self.num_classes - 2)
        return torch.cat([1 - fg, fg, *rest], dim=1) * 10 * self.scale


def test_predict_volume_slicewise_restores_the_original_shape():
    rng = np.random.default_rng(0)
    # slice 0 varies along W only, slice 1 along H only: bilinear upsampling by integer factors (3 and 2)
    # then nearest downsampling returns each pixel's class exactly
    volume = np.zeros((1, 20, 30, 2), dtype=np.float32)
    volume[0, :, :, 0] = (rng.random(30) > 0.5)[None, :]
    volume[0, :, :, 1] = (rng.random(20) > 0.5)[:, None]
    net = ThresholdNet().train()
    pred = predict_volume_slicewise(net, volume, patch_size=60)
    assert pred.shape == (20, 30, 2) and pred.dtype == np.int64
    np.testing.assert_array_equal(pred, (volume[0] > 0.5).astype(np.int64))
    assert {c[:2] for c in net.calls} == {(False, False)} and net.calls[0][2] == (1, 1, 60, 60)
    # a 2D (C, H, W) image with an arbitrary pattern, SSL4MIS's nearest (order 0) image zoom
    image = (rng.random((1, 20, 30)) > 0.5).astype(np.float32)
    pred2d = predict_volume_slicewise(net, image, patch_size=60, image_mode="nearest")
    assert pred2d.shape == (20, 30)
    np.testing.assert_array_equal(pred2d, (image[0] > 0.5).astype(np.int64))


@pytest.mark.parametrize("shape", [(1, 40, 36, 20), (1, 20, 36, 10)])  # the second is smaller than the patch
def test_predict_volume_sliding(shape):
    rng = np.random.default_rng(1)
    volume = rng.random(shape).astype(np.float32)
    net = ThresholdNet()
    pred = predict_volume_sliding(net, volume, patch_size=(32, 32, 16), overlap=0.5)
    assert pred.shape == shape[1:]
    np.testing.assert_array_equal(pred, (volume[0] > 0.5).astype(np.int64))
    assert all(c[2][2:] == (32, 32, 16) and c[:2] == (False, False) for c in net.calls)


def test_evaluate_student_on_sample_3d_data(tmp_path):
    path = generate_sample_dataset(tmp_path / "sample", kind="3d", num_train=2, num_val=1, num_test=2, size=32, depth=6, seed=0)
    datalist = load_datalist(Path(path).parent)
    volumes = load_eval_volumes(datalist, "test", normalize="volume")
    assert len(volumes) == 2 and volumes[0]["image"].shape[1:] == volumes[0]["label"].shape
    assert 0.0 <= volumes[0]["image"].min() and volumes[0]["image"].max() <= 1.0
    net = ThresholdNet(num_classes=len(datalist.label_values))
    for mode, patch in (("slicewise", 48), ("sliding", (16, 16, 8))):
        result = evaluate_student(net, volumes, datalist.label_values, datalist.labels, mode=mode, patch_size=patch, progress=False)
        json.dumps(result)
        assert [c["id"] for c in result["per_case"]] == [v["id"] for v in volumes]
        summary = result["summary"]
        assert set(summary["classes"]) == {datalist.labels[v] for v in datalist.label_values if v != 0}
        for row in list(summary["classes"].values()) + [summary["mean"]]:
            assert 0.0 <= row["dice"] <= 1.0 and 0.0 <= row["jaccard"] <= 1.0
            assert row["hd95"] >= 0 and row["asd"] >= 0
        assert "**mean**" in format_metrics_table(summary)
