"""Stage-2 building blocks: student networks, SSL losses and ramps, the semi-supervised batches and methods."""

import math

import numpy as np
import pytest
import torch

from vessa.assistants.base import Assistant
from vessa.data.semi import SemiSupervisedDataset, cutmix_box
from vessa.training.ssl_methods import build_method
from vessa.training.stage2 import Stage2Trainer
from vessa.losses.ssl import ce_dice_loss, dice_loss, sigmoid_rampdown, sigmoid_rampup
from vessa.networks.students import StudentUNet


@pytest.mark.parametrize("dims,shape", [(2, (2, 1, 48, 40)), (3, (1, 1, 32, 32, 16))])
def test_student_shapes_and_feature_perturbation(dims, shape):
    net = StudentUNet(spatial_dims=dims, in_channels=1, out_channels=3, features=(4, 8, 16, 32, 64))
    x = torch.rand(shape)
    assert net(x).shape == (shape[0], 3, *shape[2:])
    clean, perturbed = net(x, perturb="fp")
    assert clean.shape == perturbed.shape and not torch.allclose(clean, perturbed)


def test_complementary_dropout_gives_the_two_views_complementary_channels():
    from vessa.networks.students import complementary_dropout

    torch.manual_seed(0)
    feats = [torch.ones(8, 6, 5, 5), torch.ones(8, 3, 2, 2)]
    out = complementary_dropout(feats, keep_ratio=0.5)
    for f in out:
        first, second = f[:4, :, 0, 0], f[4:, :, 0, 0]
        assert torch.equal(first + second, torch.full_like(first, 2.0))  # twins: 2 + 0, 0 + 2 or 1 + 1
        untouched = (first == 1).all(1)
        assert int(untouched.sum()) == 2 and torch.all((first[~untouched] == 0) | (first[~untouched] == 2))
    assert complementary_dropout(feats, training=False) is feats
    net = StudentUNet(in_channels=1, out_channels=3, features=(4, 8, 16, 32, 64))
    assert net(torch.rand(4, 1, 32, 32), perturb="complementary").shape == (4, 3, 32, 32)


def test_ramps():
    assert sigmoid_rampup(0, 100) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(100, 100) == 1.0 and sigmoid_rampup(500, 100) == 1.0
    assert sigmoid_rampdown(0, 100) == 1.0 and sigmoid_rampdown(100, 100) == pytest.approx(math.exp(-5))


def test_dice_loss_is_zero_for_a_perfect_prediction_and_respects_weights():
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[0, 2:6, 2:6] = 1
    perfect = torch.nn.functional.one_hot(target, 2).movedim(-1, 1).float() * 50
    assert dice_loss(perfect, target) < 1e-3
    assert ce_dice_loss(perfect, target) < 1e-3
    wrong = -perfect
    assert ce_dice_loss(wrong, target) > 0.9
    # a zero weight removes a pixel from the loss
    assert ce_dice_loss(wrong, target, torch.zeros(1, 8, 8)) < ce_dice_loss(wrong, target)


def _slices(value: float, n: int, with_label: bool):
    out = []
    for i in range(n):
        s = {"image": np.full((1, 24, 24), value, np.float32), "id": f"{value}_{i}", "slice_pos": 0.5}
        if with_label:
            lab = np.zeros((24, 24), np.int64)
            lab[6:18, 6:18] = 1
            s["label"] = lab
        out.append(s)
    return out


def test_unlabelled_slices_must_come_without_labels():
    with pytest.raises(ValueError, match="must not carry labels"):
        SemiSupervisedDataset(_slices(1.0, 2, True), _slices(0.0, 2, True), patch_size=16)


def test_cutmix_box_covers_a_bounded_area():
    g = torch.Generator().manual_seed(0)
    areas = [cutmix_box(64, g, p=1.0).mean().item() for _ in range(20)]
    assert all(0.0 < a <= 0.45 for a in areas)


class SpyAssistant(Assistant):
    """Records what it is asked to refine; returns the student's argmax with full weight."""

    def __init__(self):
        self.seen = []

    def refine(self, images, probs, meta=None):
        self.seen.append(images.detach().clone())
        return probs.argmax(1), torch.ones(probs.shape[0], *probs.shape[2:])


@pytest.mark.parametrize("method", ["mean_teacher", "unimatch"])
def test_the_assistant_sees_only_unlabelled_images(method):
    # labelled images are bright (1.0), unlabelled ones dark (0.0): augmentations keep them apart
    ds = SemiSupervisedDataset(_slices(1.0, 3, True), _slices(0.0, 3, False), patch_size=16, length=4)
    net = StudentUNet(2, 1, 2, features=(4, 8, 16, 32, 64))
    spy = SpyAssistant()
    trainer = Stage2Trainer("cpu", 1, torch.utils.data.DataLoader(ds, batch_size=2), net, torch.optim.Adam(net.parameters()), build_method(method), spy, epoch_length=2)
    trainer.run()
    assert len(spy.seen) == 2
    assert all(float(x.max()) < 0.5 for x in spy.seen)
    assert "unsup" in trainer.state.output


def test_unknown_method_is_a_clear_error():
    with pytest.raises(ValueError, match="mean_teacher"):
        build_method("fixmatchx")


def test_uncertain_fusion_keeps_the_confident_student_and_lets_the_assistant_decide_the_rest():
    from torch.utils.data import DataLoader

    from vessa.training.ssl_methods import SupervisedOnly

    class AlwaysTwo(Assistant):
        def refine(self, images, student_probs, meta=None):
            shape = (images.shape[0], *images.shape[2:])
            return torch.full(shape, 2, dtype=torch.long), torch.full(shape, 0.5)

    net = torch.nn.Conv2d(1, 3, 1)
    trainer = Stage2Trainer(
        "cpu", 1, DataLoader([{}]), net, torch.optim.SGD(net.parameters(), 0.1), SupervisedOnly(), AlwaysTwo(),
        assistant_schedule="constant", assistant_fusion="uncertain", fusion_threshold=0.9,
    )
    probs = torch.zeros(1, 3, 2, 2)
    probs[0, 1, 0, :] = 0.99  # confident class 1 on the top row
    probs[0, 0, 0, :] = 0.01
    probs[0, :, 1, :] = 1 / 3  # unsure on the bottom row
    labels, weights = trainer.pseudo_labels(torch.rand(1, 1, 2, 2), probs, {})
    assert labels.tolist() == [[[1, 1], [2, 2]]]
    assert weights.tolist() == [[[1.0, 1.0], [0.5, 0.5]]]


class ConstantAssistant(Assistant):
    """Labels every pixel with one class, at weight 0.5; counts how often it is asked."""

    def __init__(self, label: int):
        self.label, self.calls = label, 0

    def refine(self, images, probs, meta=None):
        self.calls += 1
        shape = (probs.shape[0], *probs.shape[2:])
        return torch.full(shape, self.label, dtype=torch.long), torch.full(shape, 0.5)


@pytest.mark.parametrize("method", ["mean_teacher", "unimatch", "unimatch_v2"])
def test_the_assistant_schedule_hands_the_unlabelled_loss_over_to_the_method_own_targets(method):
    # the share once scaled the per-pixel weights, which each loss normalises away: weight and schedule changed nothing
    ds = SemiSupervisedDataset(_slices(1.0, 3, True), _slices(0.0, 3, False), patch_size=16, length=2)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))

    def unsup(schedule: str, iteration: int, weight: float = 1.0, with_assistant: bool = True) -> tuple[float, int]:
        torch.manual_seed(0)
        net = StudentUNet(2, 1, 2, features=(4, 8, 16, 32, 64))
        assistant = ConstantAssistant(1) if with_assistant else None
        trainer = Stage2Trainer(
            "cpu", 1, torch.utils.data.DataLoader(ds, batch_size=2), net, torch.optim.SGD(net.parameters(), 0.1), build_method(method),
            assistant, assistant_weight=weight, assistant_schedule=schedule, assistant_ramp_iterations=100,
        )
        trainer.state.iteration = iteration
        torch.manual_seed(1)  # the same noise and dropout for every call
        return float(trainer.method.losses(trainer, batch)["unsup"]), assistant.calls if assistant else 0

    full, calls = unsup("constant", 300)
    assert calls == 1 and full > 0
    assert unsup("constant", 300, weight=0.5)[0] == pytest.approx(full / 2, rel=1e-4)
    own, calls = unsup("rampdown", 300)  # past the ramp: the method's own loss, and the assistant is not asked
    assert calls == 0 and own == pytest.approx(unsup("constant", 300, with_assistant=False)[0], rel=1e-4)
    assert own != pytest.approx(full, rel=1e-2)
    assert unsup("rampdown", 0)[0] == pytest.approx(unsup("constant", 0)[0], rel=1e-4)
    half, calls = unsup("rampdown", 50)  # share exp(-5 / 4) of the assistant's loss, the rest the method's own
    share = math.exp(-1.25)
    expected = share * unsup("constant", 50)[0] + (1 - share) * unsup("constant", 50, with_assistant=False)[0]
    assert calls == 1 and half == pytest.approx(expected, rel=1e-4)
