"""DuSSS's text-guided assistant (text_vlm), its text prompts, and text alignment for the VESSA assistant."""

import pytest
import torch
from conftest import stage1_workflow

from vessa.assistants.text_vlm import TextVLMAssistant
from vessa.data.prepare import prepare_data
from vessa.data.sample_data import generate_sample_dataset
from vessa.data.text_prompts import GENERIC_TEMPLATES, class_descriptions
from vessa.errors import DataError
from vessa.networks.assistant import VessaAssistant

LABELS = {0: "background", 1: "cavity", 2: "wall", 3: "crescent"}


def test_descriptions_come_from_the_user_then_the_prompts_file_then_generic_sentences(tmp_path):
    prompts = tmp_path / "prompts.json"
    prompts.write_text('{"wall": ["a ring"], "cavity": ["a disc", "a bright disc"]}')
    got = class_descriptions({0: "background", 1: "cavity", 2: "wall", 3: "tumour"}, prompts, {"wall": "the user's wall"})
    assert got == [["a disc", "a bright disc"], ["the user's wall"], [t.format(name="tumour") for t in GENERIC_TEMPLATES]]
    assert class_descriptions(LABELS, None, {"2": ["by value"]})[1] == ["by value"]
    assert len(class_descriptions({0: "background", 1: "left atrium"})[0]) >= 2  # the built-in file knows LA


def test_text_prompts_for_unknown_labels_or_a_missing_file_are_errors_that_say_so(tmp_path):
    with pytest.raises(DataError, match="unknown labels.*liver"):
        class_descriptions(LABELS, None, {"liver": "the liver"})
    with pytest.raises(DataError, match="not found.*text_prompts_file"):
        class_descriptions(LABELS, tmp_path / "missing.json")
    with pytest.raises(DataError, match="non-empty"):
        class_descriptions(LABELS, None, {"wall": []})


@pytest.fixture(scope="module")
def labelled_batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("vlm")
    generate_sample_dataset(root, kind="2d", num_train=8, num_val=1, num_test=1)
    data = prepare_data(root, 8, 0, root / "run")
    images = torch.stack([torch.as_tensor(s["image"]) for s in data["labeled_slices"]]).float()
    labels = torch.stack([torch.as_tensor(s["label"]) for s in data["labeled_slices"]])
    return images, labels


def _dice(pred: torch.Tensor, labels: torch.Tensor) -> float:
    scores = [(2 * ((pred == k) & (labels == k)).sum() / ((pred == k).sum() + (labels == k).sum()).clamp(min=1)).item() for k in (1, 2, 3)]
    return sum(scores) / 3


@pytest.fixture(scope="module")
def trained_vlm(labelled_batch):
    """A text_vlm assistant after 40 steps on the labelled batch, its Dice before them and its last logged values."""
    torch.manual_seed(0)
    images, labels = labelled_batch
    assistant = TextVLMAssistant(3, 1, class_descriptions(LABELS), learning_rate=3e-3)
    before = _dice(assistant.text_guided_probs(images).argmax(1), labels)
    for _ in range(40):
        logged = assistant.train_step({"image": images, "label": labels})
    return assistant, before, logged


def test_text_vlm_learns_text_guided_masks_and_gives_two_targets(labelled_batch, trained_vlm):
    images, labels = labelled_batch
    assistant, before, logged = trained_vlm
    after = _dice(assistant.text_guided_probs(images).argmax(1), labels)
    assert after > before + 0.3 and after > 0.6, (before, after)
    assert {"vlm_mask", "vlm_cross", "vlm_image", "vlm_text"} <= set(logged)

    student = torch.softmax(torch.randn(len(images), 4, *images.shape[-2:]), 1)
    (merged, m_weight), (text, t_weight) = assistant.targets(images, student)
    assert merged.shape == text.shape == labels.shape
    assert 0 <= float(m_weight.min()) and float(m_weight.max()) <= 1
    # the text-guided mask is the assistant's own answer; the merged pseudo-label leans on it against a random student
    assert torch.equal(text, assistant.text_guided_probs(images).argmax(1))
    assert _dice(merged, labels) > _dice(student.argmax(1), labels) + 0.2


def test_the_class_text_steers_the_text_guided_mask(labelled_batch, trained_vlm):
    import copy

    images, labels = labelled_batch
    assistant = copy.deepcopy(trained_vlm[0])
    pred = assistant.text_guided_probs(images).argmax(1)
    # swap the descriptions of cavity and wall: the masks of the two classes swap with them
    order = torch.tensor([1, 0, 2])
    assistant.text_class = order[assistant.text_class]
    swapped = assistant.text_guided_probs(images).argmax(1)
    assert ((swapped == 2) & (pred == 1)).sum() > 0.8 * (pred == 1).sum()
    assert ((swapped == 1) & (pred == 2)).sum() > 0.8 * (pred == 2).sum()


def test_text_vlm_needs_one_description_list_per_class():
    with pytest.raises(ValueError, match="one list of descriptions per foreground class"):
        TextVLMAssistant(3, 1, [["a disc"]])


def test_vessa_stage1_with_text_alignment_trains_with_the_dual_contrastive_loss(tmp_path):
    wf = stage1_workflow(tmp_path, iterations=2, epoch_length=2, val_interval=2, text_alignment=True)
    wf.run()
    out = wf.parser.get_parsed_content("train#trainer").state.output
    assert {"align_cross", "align_image", "align_text"} <= set(out)
    saved = torch.load(tmp_path / "models" / "sample_2d" / "assistant.pt", weights_only=True)
    assert bool(saved["text_aligned"])
    # the class text is the mean of each class's descriptions, not the one generic sentence
    encoder = wf.parser.get_parsed_content("text_encoder")
    descriptions = wf.parser.get_parsed_content("descriptions")
    expected = torch.nn.functional.normalize(encoder.encode_cached(descriptions[1]).mean(0), dim=0)
    assert torch.allclose(saved["class_text"][1], expected, atol=1e-5)


def _assistant_output(model: VessaAssistant) -> torch.Tensor:
    torch.manual_seed(1)
    query, templates, masks = torch.rand(1, 1, 64, 64), torch.rand(1, 1, 1, 64, 64), (torch.rand(1, 1, 2, 64, 64) > 0.5).float()
    with torch.no_grad():
        return model.eval()(query, templates, masks, text_embeddings=torch.randn(2, 16))["masks"]


@pytest.mark.parametrize("aligned", [True, False])
def test_with_text_alignment_the_text_prompt_goes_through_the_learnt_alignment_head(aligned):
    torch.manual_seed(0)
    model = VessaAssistant(2, image_size=64, embed_dim=32, text_dim=16, mlp_dim=64, text_alignment=aligned)
    first = _assistant_output(model)
    with torch.no_grad():
        model.text_align.weight.add_(1.0)
    assert (not torch.allclose(first, _assistant_output(model))) == aligned


def test_assistant_checkpoints_from_before_text_alignment_still_load():
    old = VessaAssistant(2, image_size=64, embed_dim=32, text_dim=16, mlp_dim=64).state_dict()
    for key in [k for k in old if k.startswith(("image_align_var", "text_align_var", "aligned_text_token", "text_aligned"))]:
        del old[key]
    model = VessaAssistant(2, image_size=64, embed_dim=32, text_dim=16, mlp_dim=64, text_alignment=True)
    model.load_state_dict(old)
    assert not bool(model.text_aligned)
