"""SemiSAM+ generalist: prompts from a student mask, and frozen SAM2 predictors (hiera tiny, random weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vessa.assistants import Assistant, Sam2Generalist, box_from_mask, prompts_from_mask
from vessa.errors import CheckpointError

SAM2_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"


def two_squares() -> np.ndarray:
    mask = np.zeros((48, 48), dtype=bool)
    mask[5:22, 6:23] = True  # 17 x 17: unique interior-most pixel at (y, x) = (13, 14)
    mask[30:37, 33:40] = True  # 7 x 7: centre (33, 36)
    return mask


def test_prompts_interior_point_and_sides():
    mask = two_squares()
    coords, labels = prompts_from_mask(mask, num_points=5, num_interior=1, num_negative=2, rng=np.random.default_rng(0))
    assert coords.shape == (7, 2) and labels.shape == (7,)
    assert labels.tolist() == [1, 1, 1, 1, 1, 0, 0]
    assert coords[0].tolist() == [14.0, 13.0]  # (x, y) of the largest component's interior-most pixel
    xs, ys = coords[:, 0].astype(int), coords[:, 1].astype(int)
    assert mask[ys[labels == 1], xs[labels == 1]].all()
    assert not mask[ys[labels == 0], xs[labels == 0]].any()
    assert len({(x, y) for x, y in zip(xs, ys)}) == 7  # no repeats
    # deterministic given the seed; the interior point does not depend on it
    again = prompts_from_mask(mask, 5, 1, 2, rng=np.random.default_rng(0))
    assert np.array_equal(again[0], coords) and np.array_equal(again[1], labels)
    other = prompts_from_mask(mask, 5, 1, 2, rng=np.random.default_rng(1))
    assert other[0][0].tolist() == [14.0, 13.0]
    # two interior points: one per component, largest first
    c2, l2 = prompts_from_mask(mask, num_points=2, num_interior=2, num_negative=0, rng=0)
    assert c2.tolist() == [[14.0, 13.0], [36.0, 33.0]] and l2.tolist() == [1, 1]


def test_prompts_empty_and_box():
    coords, labels = prompts_from_mask(np.zeros((16, 16), bool), rng=np.random.default_rng(0))
    assert coords.shape == (0, 2) and labels.shape == (0,)
    assert box_from_mask(np.zeros((8, 8), bool)) is None
    assert box_from_mask(two_squares()).tolist() == [6.0, 5.0, 39.0, 36.0]
    full = np.ones((8, 8), bool)  # no background: positives only
    c, l = prompts_from_mask(full, num_points=3, rng=0)
    assert l.tolist() == [1, 1, 1]


def test_missing_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="sam2_checkpoints") as err:
        Sam2Generalist(None)
    assert "large_files.yml" in str(err.value)
    missing = tmp_path / "sam2.1_hiera_tiny.pt"
    with pytest.raises(CheckpointError, match="sam2.1_hiera_tiny.pt"):
        Sam2Generalist([str(missing)])


def student_probs(b: int, size: int = 64) -> torch.Tensor:
    """(B, 3, S, S) softmax: class 1 a disc, class 2 a square; image 1 has only a 4-pixel class 2."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    logits = torch.zeros(b, 3, size, size)
    disc = ((yy - 24) ** 2 + (xx - 22) ** 2) < 100
    logits[:, 1][:, disc] = 4.0
    logits[0, 2, 40:54, 36:52] = 4.0
    if b > 1:
        logits[1, 2, 50:52, 50:52] = 4.0
    return logits.softmax(1)


def images(b: int, size: int = 64) -> torch.Tensor:
    torch.manual_seed(0)
    return (torch.rand(b, 1, size, size) * 0.2 + student_probs(b, size)[:, 1:].sum(1, keepdim=True) * 0.6).clamp(0, 1)


@pytest.fixture(scope="module")
def generalist():
    return Sam2Generalist(None, SAM2_CONFIG, num_points=3, allow_random_weights=True, seed=0)


def test_refine_random_weights(generalist):
    assert isinstance(generalist, Assistant)
    model = generalist.models[0]
    assert not model.training and all(not p.requires_grad for p in model.parameters())
    probs = student_probs(2)
    labels, weights = generalist.refine(images(2), probs)
    assert labels.shape == (2, 64, 64) and labels.dtype == torch.long
    assert weights.shape == (2, 64, 64) and weights.dtype == torch.float32
    assert int(labels.min()) >= 0 and int(labels.max()) <= 2
    assert float(weights.min()) >= 0 and float(weights.max()) <= 1
    # too small a class (4 pixels < min_area): the student's label with weight 0
    assert (labels[1, 50:52, 50:52] == 2).all() and (weights[1, 50:52, 50:52] == 0).all()
    # one model, one draw: full agreement elsewhere
    assert (weights[0] == 1).all()
    assert generalist.update(images(1), labels[:1], weights[:1]) == {}


def test_two_generalists_and_draws():
    gen = Sam2Generalist(None, [SAM2_CONFIG, SAM2_CONFIG], num_points=3, draws=2, use_box=True, allow_random_weights=True)
    assert len(gen.predictors) == 2
    labels, weights = gen.refine(images(1), student_probs(1))
    assert labels.shape == (1, 64, 64) and labels.dtype == torch.long
    assert int(labels.min()) >= 0 and int(labels.max()) <= 2
    assert float(weights.min()) >= 0 and float(weights.max()) <= 1


def test_checkpoint_loads(generalist, tmp_path):
    ckpt = tmp_path / "fake_sam2.pt"
    ref = generalist.models[0].state_dict()
    torch.save({"model": ref}, ckpt)
    torch.manual_seed(123)  # a different random init, overwritten by the checkpoint
    gen = Sam2Generalist(str(ckpt), SAM2_CONFIG)
    got = gen.models[0].state_dict()
    assert set(got) == set(ref)
    for key in ("image_encoder.trunk.patch_embed.proj.weight", "sam_mask_decoder.iou_prediction_head.layers.0.weight"):
        assert torch.equal(got[key], ref[key])
    assert all(not p.requires_grad for p in gen.models[0].parameters())
