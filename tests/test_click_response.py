"""The assistant's answer to clicks (vessa.inference.click_response): the learnt response and the painting option."""

import numpy as np
import pytest
import torch

from vessa.data.template_bank import TemplateBank
from vessa.inference.predictor import AssistantPredictor
from vessa.inference.click_response import apply_clicks, click_answer, learnt_answer
from vessa.networks.assistant import VessaAssistant

S = 64


@pytest.fixture(scope="module")
def predictor() -> AssistantPredictor:
    torch.manual_seed(0)
    bank = TemplateBank({0: "background", 1: "a", 2: "b"}, S)
    label = np.zeros((S, S), np.int64)
    label[10:30, 10:30], label[35:55, 30:50] = 1, 2
    bank.add(np.random.default_rng(0).random((1, S, S)).astype(np.float32), label, "case")
    model = VessaAssistant(num_classes=2, image_size=S, embed_dim=32, text_dim=0, mlp_dim=64)
    return AssistantPredictor(model, bank)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(1).random((1, 80, 96)).astype(np.float32)


def test_disks_are_added_and_removed_in_click_order():
    mask = apply_clicks(np.zeros((20, 20), bool), [((5, 5), 1), ((5, 5), 0), ((15, 15), 1)], radius=2)
    assert not mask[5, 5] and mask[15, 15] and mask[15, 17] and not mask[15, 18]


def test_paint_keeps_every_clicked_disk_and_learnt_is_the_assistants_own_answer(predictor, image):
    prepared = predictor.prepare(image)
    clicks = [((20.0, 30.0), 1), ((70.0, 60.0), 0)]
    painted = click_answer(predictor, prepared, 1, clicks, mode="paint", radius=0.04)
    assert painted[30, 20] and not painted[60, 70]

    start = predictor.predict(prepared=prepared)["probs"][1].numpy() > predictor.threshold
    learnt = click_answer(predictor, prepared, 1, clicks, mode="learnt")
    points = torch.zeros(2, 2, 2)
    points[1] = torch.tensor([[20.0, 30.0], [70.0, 60.0]])
    labels = torch.tensor([[-1, -1], [1, 0]])
    own = predictor.predict(prepared=prepared, points=points, point_labels=labels, coarse_label=start.astype(np.int64) * 2)["probs"][1].numpy() > predictor.threshold
    np.testing.assert_array_equal(learnt, own)
    assert learnt.shape == image.shape[1:]


def test_a_slice_without_clicks_refines_the_mask_it_is_given(predictor, image):
    prepared = predictor.prepare(image)
    current = np.zeros(image.shape[1:], bool)
    current[20:50, 20:60] = True
    for mode in ("learnt", "paint"):
        expected = predictor.predict(prepared=prepared, coarse_label=current.astype(np.int64))["probs"][0].numpy() > predictor.threshold
        np.testing.assert_array_equal(click_answer(predictor, prepared, 0, [], current, mode=mode), expected)


def test_an_unknown_mode_is_refused(predictor, image):
    with pytest.raises(ValueError, match="Unknown click mode 'magic'"):
        click_answer(predictor, predictor.prepare(image), 0, [((1.0, 1.0), 1)], mode="magic")


def test_a_learnt_session_feeds_each_answer_back_and_a_new_click_costs_one_forward_pass(predictor, image, monkeypatch):
    prepared = predictor.prepare(image)
    clicks = [((20.0, 30.0), 1), ((70.0, 60.0), 0), ((40.0, 40.0), 1)]
    start = predictor.predict(prepared=prepared)["probs"][1].numpy() > predictor.threshold
    expected = start
    for n in range(1, len(clicks) + 1):  # each click answered with the answer before it as the mask prompt
        expected = click_answer(predictor, prepared, 1, clicks[:n], expected, mode="learnt")

    calls = []
    original = predictor.predict
    monkeypatch.setattr(predictor, "predict", lambda **kw: calls.append(kw) or original(**kw))
    answers: dict = {}
    np.testing.assert_array_equal(learnt_answer(predictor, prepared, 1, clicks, start, answers=answers), expected)
    assert len(calls) == 3 and len(answers) == 3
    calls.clear()
    more = clicks[:2] + [((10.0, 70.0), 0)] + clicks[2:]  # a client sends foreground and background apart: order lost
    learnt_answer(predictor, prepared, 1, more, start, answers=answers)
    assert len(calls) == 1
    again = learnt_answer(predictor, prepared, 1, more, start, answers=answers)  # the same request again: remembered
    assert len(calls) == 1 and again is answers[frozenset(more)]
