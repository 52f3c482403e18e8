"""One text per image (MoNuSeg / LViT): texts load for labelled and unlabelled cases, reach the text encoder, steer
the prompts; DuSSS's VLM pre-training; a MoNuSeg-shaped run end to end."""

import json

import numpy as np
import pytest
import torch
from conftest import CONFIGS
from monai.bundle import ConfigWorkflow
from PIL import Image

from vessa.assistants.text_vlm import TextVLMAssistant
from vessa.data.prepare import prepare_data
from vessa.data.semi import SemiSupervisedDataset
from vessa.training.checkpoints import ResumableCheckpoint, as_flag
from vessa.networks.image_text import ImageTextPrompts, combine_prompts

SENTENCES = ("The nuclei are sparsely distributed.", "The nuclei density in the upper left is high.")


def _nuclei_set(root, n_train: int = 8, size: int = 48, seed: int = 0) -> dict:
    """A tiny MoNuSeg-shaped data set: RGB 'H&E' PNGs with dark round nuclei, 0/255 masks and one sentence per image."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    yy, xx = np.mgrid[:size, :size]

    def case(name: str, i: int) -> dict:
        mask = np.zeros((size, size), bool)
        for _ in range(rng.integers(3, 8) if i % 2 else rng.integers(10, 16)):  # sparse or dense, as the sentence says
            cy, cx, r = rng.integers(4, size - 4), rng.integers(4, size - 4), rng.integers(2, 4)
            mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        rgb = np.stack([np.where(mask, 90, 220), np.where(mask, 40, 160), np.where(mask, 140, 200)], -1) + rng.normal(0, 12, (size, size, 3))
        Image.fromarray(rgb.clip(0, 255).astype(np.uint8)).save(root / "images" / f"{name}.png")
        Image.fromarray((mask * 255).astype(np.uint8)).save(root / "masks" / f"{name}.png")
        return {"image": f"images/{name}.png", "label": f"masks/{name}.png", "text": SENTENCES[i % 2]}

    spec = {
        "name": "nuclei",
        "tensorImageSize": "2D",
        "labels": {"0": "background", "1": "nucleus"},
        "training": [case(f"train{i}", i) for i in range(n_train)],
        "validation": [case(f"val{i}", i) for i in range(2)],
        "test": [case(f"test{i}", i) for i in range(2)],
    }
    (root / "dataset.json").write_text(json.dumps(spec))
    return spec


class SpyEncoder:
    """Stands in for the sentence model: records what it is asked to encode."""

    def __init__(self, dim: int = 8) -> None:
        self.seen: list[str] = []
        self.dim = dim

    def encode_cached(self, texts):
        self.seen += list(texts)
        return torch.stack([torch.nn.functional.normalize(torch.randn(self.dim, generator=torch.Generator().manual_seed(len(t))), dim=0) for t in texts])


def test_texts_load_for_labelled_and_unlabelled_cases_and_no_unlabelled_label_is_read(tmp_path):
    _nuclei_set(tmp_path / "nuclei")
    data = prepare_data(tmp_path / "nuclei", 0.25, 0, tmp_path / "run", with_unlabeled=True)
    for s in data["unlabeled_slices"]:  # the unlabelled cases' masks are no images now: reading one would fail
        (tmp_path / "nuclei" / "masks" / f"{s['id']}.png").write_bytes(b"not a mask")
    data = prepare_data(tmp_path / "nuclei", 0.25, 0, tmp_path / "run", with_unlabeled=True)
    assert all(s["text"] in SENTENCES for s in data["labeled_slices"] + data["unlabeled_slices"])
    assert all("label" not in s for s in data["unlabeled_slices"])
    item = SemiSupervisedDataset(data["labeled_slices"], data["unlabeled_slices"], patch_size=32, length=4)[0]
    assert item["text"] in SENTENCES and item["u_text"] in SENTENCES
    unlabelled_text = {s["text"] for s in data["unlabeled_slices"]}
    assert item["u_text"] in unlabelled_text


def test_an_image_text_reaches_the_encoder_and_changes_the_prompt_but_a_missing_one_keeps_the_class_text():
    spy = SpyEncoder()
    prompts = ImageTextPrompts(encoder=spy)
    class_text = torch.nn.functional.normalize(torch.randn(2, 8), dim=-1)
    out = prompts(class_text, [SENTENCES[0], "", SENTENCES[1]])
    assert spy.seen == [SENTENCES[0], SENTENCES[1]]
    assert out.shape == (3, 2, 8)
    assert torch.allclose(out[1], class_text)  # no sentence: the class text alone
    assert not torch.allclose(out[0], class_text) and not torch.allclose(out[0], out[2])
    assert torch.allclose(out.norm(dim=-1), torch.ones(3, 2))
    assert prompts(class_text, ["", ""]) is None and prompts(class_text, None) is None
    same = combine_prompts(class_text, torch.zeros(1, 8), torch.tensor([False]))
    assert torch.allclose(same[0], class_text)


def _toy_batch(size: int = 32, n: int = 4):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, size, size, generator=g) * 0.3
    labels = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):  # the two sentences describe two looks: few large nuclei in red, many small ones in blue
        for y, x in ((4 + i, 6), (18, 16)) if i % 2 == 0 else [(2 + 7 * a, 2 + 7 * b) for a in range(4) for b in range(4)]:
            side = 10 if i % 2 == 0 else 3
            labels[i, y : y + side, x : x + side] = 1
            images[i, i % 2 * 2, y : y + side, x : x + side] += 0.6
    return images, labels, [SENTENCES[i % 2] for i in range(n)]


def test_text_vlm_uses_each_images_own_text_for_its_mask_and_the_switch_turns_it_off():
    images, labels, texts = _toy_batch()
    torch.manual_seed(0)
    own = TextVLMAssistant(1, 3, [["a cell nucleus"]])
    torch.manual_seed(0)
    class_only = TextVLMAssistant(1, 3, [["a cell nucleus"]], use_image_text=False)
    assert torch.allclose(own.text_guided_probs(images), class_only.text_guided_probs(images))  # no texts given: the same
    assert not torch.allclose(own.text_guided_probs(images, texts), own.text_guided_probs(images))
    assert torch.allclose(class_only.text_guided_probs(images, texts), class_only.text_guided_probs(images))
    terms = own.train_step({"image": images, "label": labels, "text": texts})
    assert np.isfinite(terms["vlm_loss"]) and terms["vlm_cross"] > 0
    assert len(own.refine_all(images, torch.full((4, 2, 32, 32), 0.5), {"text": texts})) == 2
    no_text_target = TextVLMAssistant(1, 3, [["a cell nucleus"]], use_text_target=False)
    assert len(no_text_target.refine_all(images, torch.full((4, 2, 32, 32), 0.5), {"text": texts})) == 1


def test_vlm_pretraining_lowers_its_contrastive_loss_and_is_not_repeated(tmp_path):
    images, labels, texts = _toy_batch()
    slices = [{"image": images[i].numpy(), "text": texts[i], "id": str(i)} for i in range(4)]
    torch.manual_seed(0)
    vlm = TextVLMAssistant(1, 3, [["a cell nucleus"]], learning_rate=3e-3)

    def pair_loss() -> float:
        vlm.generator.manual_seed(5)  # the same second view before and after
        with torch.no_grad():
            return float(vlm.pair_losses(images, texts)["pair_loss"])

    before = pair_loss()
    summary = vlm.pretrain(slices, [], iterations=30, image_size=32, batch_size=8, path=tmp_path / "vlm_pretrain.pt")
    after = pair_loss()
    assert after < 0.7 * before, (before, after, summary)
    assert (tmp_path / "vlm_pretrain.pt").is_file()
    weights = {k: v.clone() for k, v in vlm.model.state_dict().items()}
    torch.manual_seed(1)
    again = TextVLMAssistant(1, 3, [["a cell nucleus"]])
    again.pretrain(slices, [], iterations=30, image_size=32, path=tmp_path / "vlm_pretrain.pt")  # loaded, not retrained
    assert all(torch.equal(weights[k], v) for k, v in again.model.state_dict().items())


def test_resume_false_from_the_command_line_means_false():
    assert as_flag("false", "resume") is False and as_flag("True", "resume") is True and as_flag(0, "resume") is False
    assert ResumableCheckpoint("/tmp/unused", {}, resume="false").resume is False
    with pytest.raises(ValueError, match="resume"):
        as_flag("maybe", "resume")


@pytest.mark.parametrize("method,assistant", [("mean_teacher", "text_vlm"), ("supervised", "none")])
def test_a_monuseg_shaped_run_trains_by_the_lvit_protocol_end_to_end(tmp_path, method, assistant):
    _nuclei_set(tmp_path / "nuclei")
    wf = ConfigWorkflow(
        config_file=[str(CONFIGS / "stage2.json"), str(CONFIGS / "monuseg.json")], workflow_type="train", run_id="training",
        bundle_root=str(tmp_path), dataset_dir=str(tmp_path / "nuclei"), labeled=0.25, method=method, assistant=assistant,
        patch_size=32, vlm_pretrain_iterations=3, iterations=8, **{"train#handlers#4#_disabled_": True},
    )
    wf.initialize()
    assert wf.parser.get_parsed_content("epoch_length") == 2  # one pass over the 8 training images at batch 4
    assert wf.parser.get_parsed_content("lr_scheduler").T_0 == 20  # cosine warm restarts every 10 epochs
    wf.run()
    trainer = wf.parser.get_parsed_content("train#trainer")
    assert trainer.state.iteration == 8 and (tmp_path / "models" / "nuclei" / "model.pt").is_file()
    assert (tmp_path / "runs" / "nuclei" / "stage2" / "vlm_pretrain.pt").is_file() == (assistant == "text_vlm")
    if assistant == "text_vlm":
        assert "vlm_cross" in trainer.state.output


def test_the_vessa_assistant_takes_each_images_own_prompt():
    from vessa.networks.assistant import VessaAssistant

    torch.manual_seed(0)
    model = VessaAssistant(1, image_size=32, embed_dim=32, text_dim=8, mlp_dim=64, in_channels=3).eval()
    query, templates, masks = torch.rand(2, 3, 32, 32), torch.rand(2, 1, 3, 32, 32), (torch.rand(2, 1, 1, 32, 32) > 0.5).float()
    class_text = torch.nn.functional.normalize(torch.randn(1, 8), dim=-1)
    prompts = ImageTextPrompts(encoder=SpyEncoder())(class_text, [SENTENCES[0], ""])
    with torch.no_grad():
        shared = model(query, templates, masks, text_embeddings=class_text)["masks"]
        own = model(query, templates, masks, text_embeddings=prompts)["masks"]
    assert not torch.allclose(own[0], shared[0])  # the first image's sentence changes its text token
    assert torch.allclose(own[1], shared[1], atol=1e-6)  # the second has none: the class text, as before


def test_a_monuseg_shaped_vessa_run_trains_stage1_with_the_images_texts(tmp_path):
    _nuclei_set(tmp_path / "nuclei")
    wf = ConfigWorkflow(
        config_file=[str(CONFIGS / "stage2.json"), str(CONFIGS / "monuseg.json")], workflow_type="train", run_id="training",
        bundle_root=str(tmp_path), dataset_dir=str(tmp_path / "nuclei"), labeled=0.25, method="unimatch", assistant="vessa",
        patch_size=32, iterations=4, stage1_iterations=4, **{"train#handlers#4#_disabled_": True},
    )
    wf.initialize()
    seen: list = []
    assistant = wf.parser.get_parsed_content("assistant_model")
    refine = assistant.refine
    assistant.refine = lambda images, probs, meta=None: (seen.append((meta or {}).get("text")), refine(images, probs, meta))[1]
    wf.run()
    assert (tmp_path / "models" / "nuclei" / "assistant.pt").is_file() and (tmp_path / "models" / "nuclei" / "model.pt").is_file()
    assert seen and all(t in SENTENCES for texts in seen for t in texts)  # the unlabelled images' own sentences
