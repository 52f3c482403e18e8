"""Data layer: data lists, io, splits, slices, built-in sample data."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import vessa.data.slices as slices_mod
from vessa.data import (
    Split,
    generate_sample_dataset,
    load_datalist,
    load_image,
    load_label,
    load_slices,
    make_split,
)
from vessa.errors import DataError

ACDC = Path(__file__).resolve().parents[2] / "shared" / "data" / "acdc"
if not (ACDC / "dataset.json").is_file():
    ACDC = Path("/work/shared/data/acdc")


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample")
    out = {}
    for kind in ("2d", "2d_rgb", "3d"):
        kw = {"num_train": 10, "num_val": 2, "num_test": 2, "size": 48, "depth": 8} if kind == "3d" else {}
        out[kind] = generate_sample_dataset(root / kind, kind, **kw).parent
    return out


def _tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ---------------------------------------------------------------- loading
def test_load_2d_grayscale(sets):
    dl = load_datalist(sets["2d"])
    assert not dl.is_3d
    assert dl.labels == {0: "background", 1: "cavity", 2: "wall", 3: "crescent"}
    assert dl.foreground_labels == {1: "cavity", 2: "wall", 3: "crescent"}
    assert len(dl.training) == 24 and len(dl.validation) == 6 and len(dl.test) == 8
    e = dl.training[0]
    assert e["id"] == "case_000" and Path(e["image"]).is_absolute()
    img, lab = load_image(e["image"]), load_label(e["label"], list(dl.labels))
    assert img.shape == (1, 96, 96) and img.dtype == np.float32 and img.max() > 1  # not normalised
    assert lab.shape == (96, 96) and lab.dtype == np.int64
    assert set(np.unique(lab)) <= {0, 1, 2, 3} and len(np.unique(lab)) == 4
    assert "label" in dl.test[0]


def test_load_2d_rgb(sets):
    dl = load_datalist(sets["2d_rgb"])
    assert dl.labels == {0: "background", 1: "cavity"}
    e = dl.training[0]
    img, lab = load_image(e["image"]), load_label(e["label"], list(dl.labels))
    assert img.shape == (3, 96, 96)
    assert set(np.unique(lab)) == {0, 1}  # 0/255 mask mapped to 0/1


def test_load_3d(sets):
    dl = load_datalist(sets["3d"])
    assert dl.is_3d
    e = dl.training[0]
    img, lab = load_image(e["image"]), load_label(e["label"], list(dl.labels))
    assert img.shape == (1, 48, 48, 8) and lab.shape == (48, 48, 8)
    assert set(np.unique(lab)) == {0, 1, 2, 3}
    assert lab[..., 0].max() == 0 and lab[..., -1].max() == 0  # absent at the ends
    assert lab[..., 4].max() > 0


def test_rgb_mask_and_binary_mapping(tmp_path):
    m = np.zeros((8, 8), np.uint8)
    m[2:5, 2:5] = 255
    Image.fromarray(np.stack([m] * 3, -1)).save(tmp_path / "rgb.png")
    assert set(np.unique(load_label(tmp_path / "rgb.png", [0, 1]))) == {0, 1}
    with pytest.raises(DataError, match="binary mask"):
        load_label(tmp_path / "rgb.png", [0, 1, 2])
    bad = np.stack([m, m, m * 0], -1)
    Image.fromarray(bad).save(tmp_path / "bad.png")
    with pytest.raises(DataError, match="channels differ"):
        load_label(tmp_path / "bad.png", [0, 1])


def test_test_entries_as_strings(tmp_path):
    p = generate_sample_dataset(tmp_path, "2d", num_train=2, num_val=0, num_test=1, size=32)
    meta = json.loads(p.read_text())
    meta["test"] = [e["image"] for e in meta["test"]]
    p.write_text(json.dumps(meta))
    dl = load_datalist(tmp_path)
    assert dl.test == [{"image": str(tmp_path.resolve() / "imagesTs/test_000.png"), "id": "test_000"}]
    assert dl.extra["tensorImageSize"] == "2D"


# ---------------------------------------------------------------- splits
def _check_partition(split, dl):
    lab, unl = split.labeled_ids, split.unlabeled_ids
    assert not set(lab) & set(unl)
    assert sorted(lab + unl) == sorted(e["id"] for e in dl.training)
    assert all("label" not in e for e in split.unlabeled)
    assert all("label" in e for e in split.labeled)
    assert set(split.hidden_label_paths()) == set(unl)


def test_split_by_list_key_count_ratio(sets):
    dl = load_datalist(sets["2d"])
    s = make_split(dl, ["case_003", "case_007"])
    assert s.labeled_ids == ["case_003", "case_007"]
    _check_partition(s, dl)

    dl.extra["labeled_cases"] = {"2": ["case_001", "case_002"]}
    s = make_split(dl, "2")
    assert s.labeled_ids == ["case_001", "case_002"]
    _check_partition(s, dl)

    a, b, c = make_split(dl, 5, seed=1), make_split(dl, 5, seed=1), make_split(dl, 5, seed=2)
    assert a.labeled_ids == b.labeled_ids and len(a.labeled) == 5
    assert a.labeled_ids != c.labeled_ids
    _check_partition(a, dl)

    r = make_split(dl, 0.25, seed=3)
    assert len(r.labeled) == 6 and r.labeled_ids == make_split(dl, 0.25, seed=3).labeled_ids
    _check_partition(r, dl)
    assert len(make_split(dl, 0.001).labeled) == 1

    full = make_split(dl)
    assert len(full.labeled) == 24 and full.unlabeled == []


def test_split_groups_frames_by_patient(sets):
    dl = load_datalist(sets["2d"])
    # rename ids to the ACDC pattern: two frames per patient
    for i, e in enumerate(dl.training):
        e["id"] = f"patient{i // 2:03d}_frame{i % 2 + 1:02d}"
    s = make_split(dl, ["patient002"])
    assert s.labeled_ids == ["patient002_frame01", "patient002_frame02"]
    s = make_split(dl, 3, seed=0)
    assert len(s.labeled) == 6 and len({i.split("_")[0] for i in s.labeled_ids}) == 3


def test_split_json_roundtrip(sets, tmp_path):
    dl = load_datalist(sets["2d"])
    s = make_split(dl, 4, seed=7)
    path = s.to_json(tmp_path / "run" / "split.json")
    raw = json.loads(path.read_text())
    assert raw["seed"] == 7 and raw["rule"] == "count:4" and raw["labeled"] == s.labeled_ids
    assert not [p for p in path.parent.iterdir() if p.name != "split.json"]  # no temp files left
    t = Split.from_json(path, dl)
    assert t.labeled == s.labeled and t.unlabeled == s.unlabeled and t.seed == 7


def test_unlabeled_slices_never_read_labels(sets, monkeypatch):
    dl = load_datalist(sets["3d"])
    s = make_split(dl, 2, seed=0)

    def boom(*a, **k):
        raise AssertionError("label of an unlabelled case was read")

    monkeypatch.setattr(slices_mod, "load_label", boom)
    items = load_slices(s.unlabeled, list(dl.labels), with_labels=False)
    assert len(items) == 8 * 8 and all("label" not in it for it in items)
    with pytest.raises(AssertionError):
        load_slices(s.labeled, list(dl.labels))


# ---------------------------------------------------------------- slices
def test_slices_3d_normalisation(sets):
    dl = load_datalist(sets["3d"])
    items = load_slices(dl.training[:2], list(dl.labels), normalize="slice")
    assert len(items) == 16
    it = items[3]
    assert it["image"].shape == (1, 48, 48) and it["image"].dtype == np.float32
    assert it["label"].shape == (48, 48) and it["label"].dtype == np.int64
    assert it["slice_index"] == 3 and it["num_slices"] == 8 and it["slice_pos"] == pytest.approx(3 / 7)
    assert items[0]["slice_pos"] == 0 and items[7]["slice_pos"] == 1
    for it in items:
        assert it["image"].min() == pytest.approx(0) and it["image"].max() == pytest.approx(1)
    vol = load_slices(dl.training[:1], list(dl.labels), normalize="volume")
    stack = np.stack([v["image"] for v in vol])
    assert stack.min() == pytest.approx(0) and stack.max() == pytest.approx(1)
    raw = load_slices(dl.training[:1], list(dl.labels), normalize="none")
    assert np.allclose(raw[2]["image"][0], load_image(dl.training[0]["image"])[0, :, :, 2])


def test_slices_2d(sets):
    dl = load_datalist(sets["2d_rgb"])
    items = load_slices(dl.training[:3], list(dl.labels))
    assert len(items) == 3 and items[0]["image"].shape == (3, 96, 96) and items[0]["slice_pos"] == 0.5
    assert items[0]["image"].min() == 0 and items[0]["image"].max() == 1


# ---------------------------------------------------------------- errors
def test_error_missing_image(sets, tmp_path):
    p = generate_sample_dataset(tmp_path, "2d", num_train=2, num_val=0, num_test=0, size=32)
    (tmp_path / "imagesTr" / "case_001.png").unlink()
    with pytest.raises(DataError, match=r"(?s)case_001\.png.*Check the paths in dataset.json"):
        load_datalist(p.parent)
    with pytest.raises(DataError, match="Image file not found: .*Check the path in dataset.json"):
        load_image(tmp_path / "imagesTr" / "case_001.png")


def test_error_missing_datalist(tmp_path):
    with pytest.raises(DataError, match="dataset.json.*make_sample_data"):
        load_datalist(tmp_path)


def test_error_missing_labels(tmp_path):
    p = generate_sample_dataset(tmp_path, "2d", num_train=1, num_val=0, num_test=0, size=32)
    meta = json.loads(p.read_text())
    meta["labels"] = {}
    p.write_text(json.dumps(meta))
    with pytest.raises(DataError, match="no 'labels'"):
        load_datalist(tmp_path)


def test_error_shape_mismatch(tmp_path):
    p = generate_sample_dataset(tmp_path, "2d", num_train=1, num_val=0, num_test=0, size=32)
    dl = load_datalist(p.parent)
    Image.fromarray(np.zeros((30, 32), np.uint8)).save(dl.training[0]["label"])
    with pytest.raises(DataError, match=r"spatial shape \(32, 32\).*shape \(30, 32\).*must match"):
        load_slices(dl.training, list(dl.labels))


def test_error_label_value_not_declared(tmp_path):
    p = generate_sample_dataset(tmp_path, "2d", num_train=1, num_val=0, num_test=0, size=32)
    dl = load_datalist(p.parent)
    m = np.zeros((32, 32), np.uint8)
    m[0, 0] = 7
    Image.fromarray(m).save(dl.training[0]["label"])
    with pytest.raises(DataError, match=r"case_000\.png contains values \[7\].*must be one of \[0, 1, 2, 3\]"):
        load_slices(dl.training, list(dl.labels))


def test_error_empty_and_unknown_split(sets):
    dl = load_datalist(sets["2d"])
    with pytest.raises(DataError, match="The labelled split is empty"):
        make_split(dl, [])
    with pytest.raises(DataError, match="The labelled split is empty"):
        make_split(dl, 0)
    with pytest.raises(DataError, match=r"\['nobody'\] match no training entry"):
        make_split(dl, ["case_001", "nobody"])
    with pytest.raises(DataError, match="key '9' not found"):
        make_split(dl, "9")
    with pytest.raises(DataError, match="Unknown sample data kind"):
        generate_sample_dataset("/nonexistent-never-written", "4d")


# ---------------------------------------------------------------- sample data
def test_sample_not_threshold_separable(sets):
    dl = load_datalist(sets["2d"])
    x = np.concatenate([load_image(e["image"]).ravel() for e in dl.training])
    y = np.concatenate([load_label(e["label"], list(dl.labels)).ravel() for e in dl.training])
    for cls, limit in ((2, 0.8), (1, 0.8), (3, 0.8)):
        t = (y == cls).astype(np.int64)
        best = 0.0
        for thr in range(0, 256, 2):
            for m in (x > thr, x <= thr):
                best = max(best, 2 * float((m & (t == 1)).sum()) / (m.sum() + t.sum()))
        assert best < limit, (cls, best)


def test_sample_deterministic(tmp_path):
    a = generate_sample_dataset(tmp_path / "a", "2d", num_train=3, num_val=1, num_test=1, size=32, seed=5)
    b = generate_sample_dataset(tmp_path / "b", "2d", num_train=3, num_val=1, num_test=1, size=32, seed=5)
    c = generate_sample_dataset(tmp_path / "c", "2d", num_train=3, num_val=1, num_test=1, size=32, seed=6)
    assert _tree_digest(a.parent) == _tree_digest(b.parent) != _tree_digest(c.parent)
    a3 = generate_sample_dataset(tmp_path / "a3", "3d", num_train=2, num_val=0, num_test=0, size=24, depth=5)
    b3 = generate_sample_dataset(tmp_path / "b3", "3d", num_train=2, num_val=0, num_test=0, size=24, depth=5)
    assert _tree_digest(a3.parent) == _tree_digest(b3.parent)


def test_sample_interrupted_leaves_no_dataset_json_or_partial_file(tmp_path, monkeypatch):
    """A reader (another DDP rank, the next run) must never find a dataset.json whose files are half written."""
    saved = []
    real_save = Image.Image.save

    def save_then_fail(self, fp, *args, **kwargs):
        if len(saved) == 3:
            Path(fp).write_bytes(b"\x89PNG half")  # the process dies while this file is being written
            raise KeyboardInterrupt
        saved.append(fp)
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save_then_fail)
    with pytest.raises(KeyboardInterrupt):
        generate_sample_dataset(tmp_path / "s", "2d", num_train=3, num_val=1, num_test=1, size=32)
    monkeypatch.undo()
    assert not (tmp_path / "s" / "dataset.json").exists()
    written = sorted(p.relative_to(tmp_path / "s").as_posix() for p in (tmp_path / "s").rglob("*.png"))
    assert written == ["imagesTr/case_000.png", "imagesTr/case_001.png", "labelsTr/case_000.png"]  # complete files only
    for p in written:
        Image.open(tmp_path / "s" / p).load()
    generate_sample_dataset(tmp_path / "s", "2d", num_train=3, num_val=1, num_test=1, size=32)  # the next run completes it
    assert len(load_datalist(tmp_path / "s").training) == 3


# ---------------------------------------------------------------- real benchmark data (optional)
@pytest.mark.skipif(not (ACDC / "dataset.json").is_file(), reason="ACDC benchmark data not available")
def test_acdc_three_patients():
    dl = load_datalist(ACDC)
    s = make_split(dl, "3")
    assert len(s.labeled) == 6
    assert {i.split("_")[0] for i in s.labeled_ids} == set(dl.extra["labeled_patients"]["3"])
    items = load_slices(s.labeled, list(dl.labels))
    assert len(items) == 68
