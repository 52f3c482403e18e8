"""The template bank: built from labelled slices, grown one exemplar at a time, retrieved, saved and loaded."""

import numpy as np
import pytest
import torch

from vessa.data import generate_sample_dataset, load_datalist, load_slices, make_split
from vessa.data.template_bank import TemplateBank
from vessa.errors import CheckpointError, DataError

LABELS = {0: "background", 1: "cavity", 2: "wall"}


def _exemplar(shift: int, size: int = 48):
    image = np.zeros((1, size, size), np.float32)
    label = np.zeros((size, size), np.int64)
    image[0, 10 + shift : 20 + shift, 10:30] = 1.0
    label[10 + shift : 20 + shift, 10:30] = 1
    label[22 + shift : 26 + shift, 10:30] = 2
    return image, label


def test_retrieval_prefers_similar_images_and_nearby_slices():
    bank = TemplateBank(LABELS, image_size=32, position_weight=0.5)
    for i, shift in enumerate((0, 12, 24)):
        bank.add(*_exemplar(shift), case_id=f"case{i}", slice_pos=i / 2)
    query, _ = _exemplar(12)
    assert bank.retrieve(torch.as_tensor(query), k=1) == [1]
    assert bank.retrieve(torch.as_tensor(query), k=1, exclude_id="case1") != [1]
    # with a strong position weight the exemplar at the same relative slice position wins
    bank.position_weight = 10.0
    assert bank.retrieve(torch.as_tensor(query), k=1, slice_pos=1.0) == [2]


def test_class_masks_follow_the_label_values():
    bank = TemplateBank(LABELS, image_size=48)
    image, label = _exemplar(0)
    bank.add(image, label, "a")
    masks = bank.class_masks(0)
    assert masks.shape == (2, 48, 48)
    assert torch.equal(masks[0].bool(), torch.as_tensor(label == 1)) and torch.equal(masks[1].bool(), torch.as_tensor(label == 2))
    assert bank.class_names == ["cavity", "wall"]


def test_save_and_load_round_trip(tmp_path):
    bank = TemplateBank(LABELS, image_size=32)
    bank.add(*_exemplar(0), case_id="a", slice_pos=0.25)
    bank.save(tmp_path / "bank.pt")
    loaded = TemplateBank.load(tmp_path / "bank.pt")
    loaded.add(*_exemplar(5), case_id="b")  # a loaded bank keeps growing (approved labels join it)
    assert loaded.ids == ["a", "b"] and loaded.positions[0] == 0.25 and loaded.labels == LABELS
    assert torch.equal(loaded.images[0], bank.images[0]) and torch.equal(loaded.masks[0], bank.masks[0])
    assert not list(tmp_path.glob(".*tmp*"))  # the temporary file was renamed into place


def test_bad_exemplars_and_missing_files_are_clear_errors(tmp_path):
    bank = TemplateBank(LABELS, image_size=32)
    image, label = _exemplar(0)
    with pytest.raises(DataError, match=r"\[7\]"):
        bank.add(image, np.where(label == 2, 7, label), "bad")
    with pytest.raises(DataError, match="empty mask"):
        bank.add(image, np.zeros_like(label), "empty")
    with pytest.raises(DataError, match="empty"):
        bank.retrieve(torch.as_tensor(image))
    with pytest.raises(CheckpointError, match="nothere.pt"):
        TemplateBank.load(tmp_path / "nothere.pt")


def test_bank_from_a_split_holds_only_labelled_cases(tmp_path):
    datalist = load_datalist(generate_sample_dataset(tmp_path / "d", kind="3d", num_train=6, num_val=1, num_test=1, size=32, depth=6).parent)
    split = make_split(datalist, 2, seed=0)
    bank = TemplateBank.from_slices(load_slices(split.labeled, datalist.label_values), datalist.labels, image_size=32)
    assert set(bank.ids) == set(split.labeled_ids)
    assert len(bank) == 2 * 4  # first and last slices hold no structure and are skipped
    assert all(0 < p < 1 for p in bank.positions)
