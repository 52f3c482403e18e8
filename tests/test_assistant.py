"""The assistant network, its matching cues and the simulated prompts."""

import pytest
import torch

from vessa.prompts import jittered_boxes, perturb_masks, random_clicks, simulate_prompts
from vessa.networks.assistant import NO_OBJECT_LOGIT, VessaAssistant, merge_classes
from vessa.networks.matching import cues_from_prior, matching_maps

S = 64


def _inputs(b: int, t: int, k: int):
    g = torch.Generator().manual_seed(0)
    query = torch.rand(b, 1, S, S, generator=g)
    templates = torch.rand(b, t, 1, S, S, generator=g)
    masks = torch.zeros(b, t, k, S, S)
    for c in range(k):
        masks[:, :, c, 8 * c : 8 * c + 16, 10:30] = 1
    return query, templates, masks


@pytest.mark.parametrize("k", [1, 2, 4])
@pytest.mark.parametrize("extra", [False, True])
def test_output_shapes(k, extra):
    model = VessaAssistant(num_classes=k, image_size=S, embed_dim=32, text_dim=16, mlp_dim=64)
    query, templates, masks = _inputs(2, 2, k)
    kwargs = {}
    if extra:
        kwargs = {
            "coarse_mask": masks[:, 0],
            "points": torch.full((2, k, 3, 2), 20.0),
            "point_labels": torch.tensor([1, 0, -1]).expand(2, k, 3),
            "boxes": torch.tensor([5.0, 5.0, 40.0, 40.0]).expand(2, k, 4),
        }
    out = model(query, templates, masks, text_embeddings=torch.randn(k, 16), **kwargs)
    assert out["masks"].shape == (2, k, 3, S, S)
    assert out["iou"].shape == (2, k, 3)
    assert out["object_logits"].shape == (2, k)
    assert out["best"].shape == (2, k, S, S)
    assert out["prior"].shape == (2, k, S, S)
    assert merge_classes(out["best"]).shape == (2, S, S)
    assert int(merge_classes(out["best"]).max()) <= k


def test_extra_prompts_change_the_output():
    torch.manual_seed(0)
    model = VessaAssistant(num_classes=1, image_size=S, embed_dim=32, text_dim=0, mlp_dim=64).eval()
    query, templates, masks = _inputs(1, 1, 1)
    plain = model(query, templates, masks)["masks"]
    clicked = model(query, templates, masks, points=torch.tensor([[[[50.0, 50.0]]]]), point_labels=torch.ones(1, 1, 1))["masks"]
    assert not torch.allclose(plain, clicked)


def test_absent_class_gives_empty_mask():
    model = VessaAssistant(num_classes=2, image_size=S, embed_dim=32, text_dim=0, mlp_dim=64).eval()
    query, templates, masks = _inputs(1, 1, 2)
    masks[:, :, 1] = 0  # no template holds class 2
    out = model(query, templates, masks)
    assert torch.all(out["best"][:, 1] == NO_OBJECT_LOGIT)
    assert not (merge_classes(out["best"]) == 2).any()


def test_wrong_number_of_class_channels_is_an_error():
    model = VessaAssistant(num_classes=3, image_size=S, embed_dim=32, text_dim=0, mlp_dim=64)
    query, templates, masks = _inputs(1, 1, 2)
    with pytest.raises(ValueError, match="3"):
        model(query, templates, masks)


def test_class_text_travels_with_the_weights():
    a = VessaAssistant(num_classes=2, image_size=S, embed_dim=32, text_dim=8, mlp_dim=64)
    a.set_class_text(torch.randn(2, 8))
    b = VessaAssistant(num_classes=2, image_size=S, embed_dim=32, text_dim=8, mlp_dim=64)
    assert not b.has_class_text
    b.load_state_dict(a.state_dict())
    assert b.has_class_text and torch.equal(a.class_text, b.class_text)


def test_label_transfer_follows_the_matching_features():
    # query features equal template features: the transferred mask must reproduce the template mask
    feats = torch.randn(1, 16, 8, 8)
    mask = torch.zeros(1, 1, 1, 8, 8)
    mask[..., 2:5, 3:6] = 1
    maps = matching_maps(feats, feats[:, None], mask, temperature=0.01)
    assert torch.allclose(maps["transfer"][0, 0], mask[0, 0, 0], atol=1e-3)
    assert maps["fg_sim"][0, 0, 3, 4] > maps["fg_sim"][0, 0, 7, 0]


def test_cues_from_prior_point_into_the_region():
    prior = torch.zeros(1, 8, 8)
    prior[0, 2:4, 5:7] = 1.0
    coords, labels = cues_from_prior(prior, image_size=64, num_points=2)
    assert labels.tolist() == [[1, 1, 0, 2, 3]]
    pos = coords[0, :2]
    assert ((pos[:, 0] >= 40) & (pos[:, 0] < 56) & (pos[:, 1] >= 16) & (pos[:, 1] < 32)).all()
    assert coords[0, 3].tolist() == [40.0, 16.0] and coords[0, 4].tolist() == [55.0, 31.0]


def test_simulated_prompts_stay_near_the_truth():
    g = torch.Generator().manual_seed(1)
    masks = torch.zeros(4, S, S)
    masks[:, 20:40, 20:44] = 1
    noisy = perturb_masks(masks, g)
    inter = ((noisy > 0.5) & (masks > 0.5)).sum((1, 2)).float()
    union = ((noisy > 0.5) | (masks > 0.5)).sum((1, 2)).float()
    iou = inter / union
    assert (iou > 0.3).all() and (iou < 1.0).any()
    coords, labels = random_clicks(masks, g, max_clicks=3)
    fg = coords[labels == 1].long()
    assert masks[0][fg[:, 1], fg[:, 0]].all()
    boxes = jittered_boxes(masks, g)
    assert (boxes[:, 0] < 30).all() and (boxes[:, 2] > 34).all()
    assert torch.isnan(jittered_boxes(torch.zeros(1, S, S), g)).all()
    out = simulate_prompts(masks.view(2, 2, S, S), g, p_coarse=1.0, p_clicks=1.0, p_box=1.0)
    assert out["coarse_mask"].shape == (2, 2, S, S) and out["boxes"].shape == (2, 2, 4)


def test_assistant_runs_on_the_sam2_hiera_encoder():
    from vessa.networks.sam2_encoder import Sam2EncoderAdapter

    encoder = Sam2EncoderAdapter(out_dim=32, embed_hw=(8, 8), input_size=128)
    model = VessaAssistant(num_classes=2, image_size=S, embed_dim=32, text_dim=0, mlp_dim=64, encoder=encoder)
    query, templates, masks = _inputs(1, 1, 2)
    out = model(query, templates, masks)
    assert out["best"].shape == (1, 2, S, S) and out["query_embedding"].shape == (1, 32, 8, 8)
    trainable = {n.split(".")[1] for n, p in model.named_parameters() if p.requires_grad and n.startswith("encoder.")}
    assert trainable == {"proj"}  # the Hiera trunk stays frozen


def test_corrective_click_sits_inside_the_larger_error_with_its_label():
    from vessa.prompts import corrective_clicks

    truth = torch.zeros(3, 32, 32, dtype=torch.bool)
    truth[:, 8:24, 8:24] = True
    pred = torch.zeros_like(truth)
    pred[1] = truth[1]
    pred[1, 4:28, 20:30] = True  # spills over on the right: a background click there
    pred[2] = truth[2]
    coords, labels = corrective_clicks(pred, truth)
    assert labels[:, 0].tolist() == [1.0, 0.0, -1.0]
    x, y = coords[0, 0].tolist()
    assert 14 <= x <= 17 and 14 <= y <= 17  # the centre of the missed square
    x, y = coords[1, 0].tolist()
    assert not truth[1, int(y), int(x)] and pred[1, int(y), int(x)]


def test_a_click_session_adds_one_corrective_click_per_round_and_feeds_the_prediction_back():
    from types import SimpleNamespace

    from vessa.training.stage1 import Stage1Trainer

    torch.manual_seed(0)
    model = VessaAssistant(num_classes=2, image_size=S, embed_dim=32, text_dim=0, mlp_dim=64)
    label = torch.zeros(2, 2, S, S)
    label[:, 0, 8:20, 8:20] = 1
    label[:, 1, 30:50, 30:50] = 1
    batch = {"image": torch.rand(2, 1, S, S), "templates": torch.rand(2, 1, 1, S, S), "template_masks": label[:, None].clone(), "label": label}
    prompts = {"coarse_mask": None, "points": None, "point_labels": None, "boxes": None}
    trainer = SimpleNamespace(click_rounds=3, generator=torch.Generator().manual_seed(0))
    engine = SimpleNamespace(network=model, amp=False)
    rounds = set()
    for _ in range(6):
        out = Stage1Trainer._click_session(trainer, engine, batch, prompts)
        p = out["points"].shape[2]
        rounds.add(p)
        assert out["points"].shape == (2, 2, p, 2) and 1 <= p <= 3
        assert out["coarse_mask"].shape == (2, 2, S, S) and 0 <= float(out["coarse_mask"].min()) and float(out["coarse_mask"].max()) <= 1
        clicked = out["point_labels"] >= 0
        xy = out["points"][clicked].long()
        foreground = out["point_labels"][clicked] == 1
        inside = label.flatten(0, 1).repeat_interleave(p, 0)  # every click's own class mask, in order
        inside = inside.view(2, 2, p, S, S)[clicked]
        on_mask = inside[torch.arange(len(xy)), xy[:, 1], xy[:, 0]] > 0
        assert torch.equal(on_mask, foreground)  # foreground clicks on missed structure, background ones off it
    assert len(rounds) > 1  # the number of rounds is drawn per batch
