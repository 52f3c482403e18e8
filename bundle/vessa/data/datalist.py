"""Decathlon-style data lists (``dataset.json``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from vessa.errors import DataError

_SUFFIXES = (".nii.gz", ".nii", ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".npy", ".npz", ".mha", ".nrrd")
_KNOWN_KEYS = {"training", "validation", "test", "labels"}


def case_id(path: str | Path) -> str:
    """The file name without its extension (``.nii.gz``, ``.png`` ...)."""
    name = Path(path).name
    low = name.lower()
    for suffix in _SUFFIXES:
        if low.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem if "." in name else name


@dataclass
class Datalist:
    dataset_dir: Path
    labels: dict[int, str]
    training: list[dict]
    validation: list[dict] = field(default_factory=list)
    test: list[dict] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    @property
    def foreground_labels(self) -> dict[int, str]:
        return {k: v for k, v in self.labels.items() if k != 0}

    @property
    def label_values(self) -> list[int]:
        return sorted(self.labels)

    @property
    def is_3d(self) -> bool:
        size = str(self.extra.get("tensorImageSize", "")).upper()
        if size:
            return size == "3D"
        for entry in self.training + self.validation + self.test:
            return str(entry["image"]).lower().endswith((".nii", ".nii.gz"))
        return False


def _resolve(value, base: Path) -> str:
    p = Path(str(value)).expanduser()
    if not p.is_absolute():
        p = base / p
    return str(p.resolve())


def _entries(raw, section: str, base: Path, source: Path) -> list[dict]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise DataError(f"'{section}' in {source} must be a list of entries; check dataset.json.")
    out = []
    for i, item in enumerate(raw):
        if isinstance(item, str):
            item = {"image": item}
        if not isinstance(item, dict) or "image" not in item:
            raise DataError(
                f"Entry {i} of '{section}' in {source} has no 'image' key ({item!r}); each entry must be "
                "{'image': path, 'label': path} (or a plain image path in 'test'). Check dataset.json."
            )
        entry = dict(item)
        for key in ("image", "label"):
            if key in entry and entry[key] is not None:
                entry[key] = _resolve(entry[key], base)
        entry.setdefault("id", case_id(entry["image"]))
        out.append(entry)
    return out


def load_datalist(dataset_dir: str | Path, datalist_file: str | Path = "dataset.json") -> Datalist:
    """Read a Decathlon-style ``dataset.json``; every path becomes absolute and every file must exist."""
    dataset_dir = Path(dataset_dir).expanduser().resolve()
    source = Path(datalist_file)
    if not source.is_absolute():
        source = dataset_dir / source
    if not source.is_file():
        raise DataError(
            f"Data list not found: {source}. Point to a folder holding a Decathlon-style dataset.json, "
            "or create sample data first with `vessa make_sample_data <folder>` "
            "(vessa.data.generate_sample_dataset)."
        )
    try:
        raw = json.loads(source.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"Cannot parse {source}: {e}. Check that dataset.json is valid JSON.") from e
    if not isinstance(raw, dict):
        raise DataError(f"{source} must hold a JSON object with 'training' and 'labels'; check dataset.json.")
    labels_raw = raw.get("labels")
    if not labels_raw or not isinstance(labels_raw, dict):
        raise DataError(
            f"{source} has no 'labels'; add e.g. \"labels\": {{\"0\": \"background\", \"1\": \"organ\"}} "
            "to dataset.json."
        )
    try:
        labels = {int(k): str(v) for k, v in labels_raw.items()}
    except ValueError as e:
        raise DataError(
            f"'labels' keys in {source} must be integer class indices, got {list(labels_raw)}; check dataset.json."
        ) from e
    labels = dict(sorted(labels.items()))
    if "training" not in raw:
        raise DataError(f"{source} has no 'training' list; check dataset.json.")
    training = _entries(raw.get("training"), "training", dataset_dir, source)
    validation = _entries(raw.get("validation"), "validation", dataset_dir, source)
    test = _entries(raw.get("test"), "test", dataset_dir, source)

    missing = []
    for entry in training + validation + test:
        for key in ("image", "label"):
            if entry.get(key) and not Path(entry[key]).is_file():
                missing.append(entry[key])
    if missing:
        shown = "\n  ".join(missing[:5])
        more = f"\n  ... and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise DataError(
            f"{len(missing)} file(s) listed in {source} do not exist:\n  {shown}{more}\n"
            "Check the paths in dataset.json (relative paths are resolved against the data set folder "
            f"{dataset_dir})."
        )
    extra = {k: v for k, v in raw.items() if k not in _KNOWN_KEYS}
    return Datalist(dataset_dir, labels, training, validation, test, extra)
