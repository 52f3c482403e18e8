"""VESSA-base: pre-training across data sets (configs/pretrain.json), resume, exclude, and the base as an assistant."""

import json

import pytest
import torch
from conftest import CONFIGS
from monai.bundle import ConfigWorkflow

import vessa.data.corpus as corpus_mod
from vessa.data import generate_sample_dataset
from vessa.data.corpus import load_corpus
from vessa.data.pretrain_episodes import PretrainEpisodeDataset
from vessa.training.checkpoints import read_made_for
from vessa.errors import CheckpointError, DataError
from vessa.networks.assistant import VessaAssistant
from vessa.networks.pretrained import assistant_from_base, load_pretrained

TINY = {"image_size": 32, "embed_dim": 32, "batch_size": 2, "epoch_length": 2, "heldout_queries": 2, "train#handlers#4#_disabled_": True}


@pytest.fixture(scope="module")
def two_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    generate_sample_dataset(root / "gray", "2d", num_train=5, num_val=2, num_test=1, size=32)
    generate_sample_dataset(root / "rgb", "2d_rgb", num_train=5, num_val=0, num_test=1, size=32)
    return root, {"gray": {"dir": str(root / "gray"), "weight": 1.0}, "rgb": {"dir": str(root / "rgb"), "weight": 1.0}}


def pretrain(root, datasets, **overrides):
    wf = ConfigWorkflow(config_file=str(CONFIGS / "pretrain.json"), workflow_type="train", run_id="training", bundle_root=str(root), datasets=datasets, **{**TINY, **overrides})
    wf.initialize()
    wf.run()
    trainer = wf.parser.get_parsed_content("train#trainer")
    wf.finalize()
    return trainer


@pytest.fixture(scope="module")
def tiny_base(two_sets, tmp_path_factory):
    """Four iterations on a gray and an RGB set, then two more in a second, resumed run trained as click sessions."""
    _, datasets = two_sets
    root = tmp_path_factory.mktemp("pretrain")
    first = pretrain(root, datasets, iterations=4)
    second = pretrain(root, datasets, iterations=6, corrective_clicks=1.0, click_rounds=2)
    return {"root": root, "first": first, "second": second, "path": root / "models" / "vessa_base.pt"}


def test_pretraining_resumes_and_scores_every_held_out_set(tiny_base):
    assert tiny_base["first"].state.iteration == 4
    assert tiny_base["second"].state.iteration == 6  # went on from iteration 4 instead of starting again
    assert (tiny_base["second"].corrective_clicks, tiny_base["second"].click_rounds) == (1.0, 2)
    curve = json.loads((tiny_base["root"] / "runs" / "pretrain" / "vessa_base" / "heldout_curve.json").read_text())
    assert [p["iteration"] for p in curve] == [2, 4, 6]
    assert all(0.0 <= p["gray"] <= 1.0 and 0.0 <= p["rgb"] <= 1.0 for p in curve)
    record = read_made_for(tiny_base["path"])
    assert record["run"] == "pretrain" and record["datasets"] == ["gray", "rgb"] and record["in_channels"] == 3


def test_exclude_never_opens_the_left_out_set(two_sets, monkeypatch):
    root, datasets = two_sets
    opened = []
    real = corpus_mod.load_slices
    monkeypatch.setattr(corpus_mod, "load_slices", lambda items, *a, **k: opened.extend(i["image"] for i in items) or real(items, *a, **k))
    corpus = load_corpus(datasets, 32, exclude=["rgb"])
    assert [c.name for c in corpus] == ["gray"]
    assert opened and not any("/rgb/" in p for p in opened)
    with pytest.raises(DataError, match="not in 'datasets'"):
        load_corpus(datasets, 32, exclude=["acdc"])
    with pytest.raises(DataError, match="prepare_data.py"):
        load_corpus({**datasets, "kvasir": {"dir": str(root / "not_built")}}, 32)


def test_episodes_mix_gray_and_rgb_sets_as_binary_tasks(two_sets):
    _, datasets = two_sets
    episodes = PretrainEpisodeDataset(load_corpus(datasets, 32), max_templates=3, length=40, p_merge=0.5, p_mosaic=0.0, seed=1)
    items = [episodes[i] for i in range(40)]
    assert all(it["image"].shape == (3, 32, 32) and it["label"].shape == (1, 32, 32) for it in items)
    assert all(it["templates"].shape == (3, 3, 32, 32) and it["template_masks"].shape == (3, 1, 32, 32) for it in items)
    assert all(it["label"].sum() > 0 for it in items if "except" not in it["task"])
    tasks = {it["task"] for it in items}
    assert "a medical image showing the cavity" in tasks and any(" and the " in t for t in tasks)  # single and merged classes
    mosaics = PretrainEpisodeDataset(load_corpus(datasets, 32), max_templates=2, length=20, p_mosaic=1.0, p_invert_task=0.0, seed=2)
    for it in (mosaics[i] for i in range(20)):
        for mask in torch.cat([it["label"], it["template_masks"][:, 0]]):  # each mask lies in one quadrant of its mosaic
            quadrants = [float(mask[y : y + 16, x : x + 16].sum()) for y in (0, 16) for x in (0, 16)]
            assert sum(q > 0 for q in quadrants) <= 1


def test_a_gray_assistant_from_the_base_answers_as_the_base_on_the_repeated_image(tiny_base):
    base = VessaAssistant(num_classes=1, in_channels=3, image_size=32, embed_dim=32, text_dim=384)
    base.load_state_dict(torch.load(tiny_base["path"], weights_only=True))
    gray = load_pretrained(VessaAssistant(num_classes=1, in_channels=1, image_size=32, embed_dim=32, text_dim=384), tiny_base["path"])
    g = torch.Generator().manual_seed(0)
    x, t = torch.rand(1, 1, 32, 32, generator=g), torch.rand(1, 1, 1, 32, 32, generator=g)
    m = (torch.rand(1, 1, 1, 32, 32, generator=g) > 0.6).float()
    text = torch.randn(1, 384, generator=g)
    base.eval(), gray.eval()
    with torch.no_grad():
        rgb_out = base(x.expand(-1, 3, -1, -1), t.expand(-1, -1, 3, -1, -1), m, text_embeddings=text)
        gray_out = gray(x, t, m, text_embeddings=text)
    assert torch.allclose(rgb_out["masks"], gray_out["masks"], atol=1e-4)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_pretrained(VessaAssistant(num_classes=1, in_channels=1, image_size=32, embed_dim=64, text_dim=384), tiny_base["path"])
    with pytest.raises(CheckpointError, match="vessa pretrain"):
        load_pretrained(gray, tiny_base["root"] / "missing.pt")


def test_zero_shot_evaluation_of_the_base_on_the_sample_data(tiny_base, tmp_path):
    wf = ConfigWorkflow(
        config_file=[str(CONFIGS / "stage1.json"), str(CONFIGS / "evaluate_assistant.json")], workflow_type="infer", run_id="evaluating",
        bundle_root=str(tmp_path), assistant_path=str(tiny_base["path"]), labeled=2, eval_modes=["assistant", "template"],
    )
    wf.initialize()
    wf.run()
    report = json.loads((tmp_path / "eval" / "sample_2d" / "assistant_test.json").read_text())
    assert set(report["assistant"]["per_class"]) == {"cavity", "wall", "crescent"}
    assert 0.0 <= report["assistant"]["mean"] <= 1.0
    bank = wf.parser.get_parsed_content("bank")
    assert len(set(bank.ids)) == 2 and bank.image_size == 32  # templates of the two labelled cases at the base's size
    assistant = assistant_from_base(tiny_base["path"], bank.labels, 1)
    assert assistant.num_classes == 3 and assistant.has_class_text


def test_stage1_starts_from_the_base_when_pretrained_names_it(tiny_base, tmp_path):
    from conftest import stage1_workflow

    wf = stage1_workflow(tmp_path, pretrained=str(tiny_base["path"]), image_size=32, embed_dim=32, iterations=2, epoch_length=2)
    network = wf.parser.get_parsed_content("network")
    base = torch.load(tiny_base["path"], weights_only=True)
    assert torch.equal(network.state_dict()["mask_decoder.iou_token.weight"], base["mask_decoder.iou_token.weight"])
    assert network.has_class_text and network.num_classes == 3  # its own classes and texts, the base's weights
    wf.run()
    assert wf.parser.get_parsed_content("train#trainer").state.iteration == 2


@pytest.mark.parametrize("templates", ["bank", "self"])
def test_semisam_with_the_frozen_base_prompts_it_from_the_students_mask(tiny_base, two_sets, templates):
    from vessa.assistants.factory import build_assistant
    from vessa.data import load_datalist, load_slices

    root, _ = two_sets
    datalist = load_datalist(root / "gray")
    slices = load_slices(datalist.training, datalist.label_values)
    args = {"checkpoint": str(tiny_base["path"]), "labels": datalist.labels, "in_channels": 1, "templates": templates, "labeled_slices": slices[:2], "draws": 2}
    generalist = build_assistant("base_generalist", base_generalist=args)
    before = torch.load(tiny_base["path"], weights_only=True)["mask_decoder.iou_token.weight"]
    images = torch.stack([torch.as_tensor(s["image"]) for s in slices[2:4]])
    student = torch.nn.functional.one_hot(torch.stack([torch.as_tensor(s["label"]) for s in slices[2:4]]), 4).permute(0, 3, 1, 2).float()
    labels, weights = generalist.refine(images, 0.1 + 0.6 * student, {})
    assert labels.shape == weights.shape == images[:, 0].shape
    assert set(labels.unique().tolist()) <= {0, 1, 2, 3} and 0 <= float(weights.min()) <= float(weights.max()) <= 1
    assert torch.equal(generalist.model.state_dict()["mask_decoder.iou_token.weight"], before)  # frozen: it never learns
    assert not any(p.requires_grad for p in generalist.model.parameters())


def test_stage2_runs_semisam_with_the_base(tiny_base, tmp_path):
    from test_stage2 import stage2_workflow

    wf = stage2_workflow(tmp_path, method="mean_teacher", assistant="base_generalist", base_checkpoint=str(tiny_base["path"]), iterations=2, epoch_length=1, val_interval=1)
    wf.run()
    assert wf.parser.get_parsed_content("train#trainer").state.iteration == 2


def test_the_label_app_serves_the_base_until_stage1_with_a_bank_of_the_approved_labels(tiny_base, two_sets, tmp_path):
    import sys

    from label_server import APP

    sys.path.insert(0, str(APP))
    from lib.served import ServedModels
    from lib.template_bank_sync import add_approved_label

    from vessa.data import load_datalist, load_slices

    root, _ = two_sets
    datalist = load_datalist(root / "gray")
    served = ServedModels(CONFIGS.parent, tmp_path / "ckpt", device="cpu", labels=datalist.labels, base_path=tiny_base["path"])
    assert served.serves_base() and served.paths["assistant"] == tiny_base["path"]
    with pytest.raises(CheckpointError, match="bank"):
        served.assistant()  # nothing approved yet: no templates to follow
    case = datalist.training[0]
    assert add_approved_label(served, "case_000", case["image"], case["label"]) == 1
    predictor = served.assistant()
    image = torch.as_tensor(load_slices([datalist.training[1]], datalist.label_values)[0]["image"])
    assert predictor.predict(image, 0.5)["label"].shape == image.shape[1:]
    (tmp_path / "ckpt" / "assistant.pt").write_bytes(tiny_base["path"].read_bytes())  # stage 1 has run: its assistant wins
    assert not served.serves_base()
