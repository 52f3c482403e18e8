"""Everything a training run needs from a data set, in one call from the bundle configs."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from vessa.data.datalist import load_datalist
from vessa.data.sample_data import generate_sample_dataset
from vessa.data.slices import load_slices
from vessa.data.splits import make_split
from vessa.data.semi_volumes import load_volumes
from vessa.data.volumes import group_volumes

logger = logging.getLogger(__name__)


def dataset_name(dataset_dir: str | Path, sample_kind: str | None = None) -> str:
    """The name of a data set's default output folders (``models/<name>``, ``runs/<name>/...``): ``sample_<kind>``
    for the built-in sample data, else the data set folder's own name."""
    if sample_kind:
        return f"sample_{sample_kind}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(dataset_dir).expanduser().resolve().name) or "dataset"


def ensure_dataset(dataset_dir: str | Path, sample_kind: str | None = None) -> Path:
    """Return ``dataset_dir``; when it holds no dataset.json and ``sample_kind`` is given, write the built-in sample data there."""
    dataset_dir = Path(dataset_dir)
    if not (dataset_dir / "dataset.json").is_file() and sample_kind:
        logger.info(f"No dataset.json in {dataset_dir}: writing the built-in '{sample_kind}' sample data set there.")
        generate_sample_dataset(dataset_dir, kind=sample_kind)
    return dataset_dir


def load_split(dataset_dir: str | Path, labeled=None, seed: int = 0, run_dir: str | Path | None = None, sample_kind: str | None = None):
    """The data list and its labelled / unlabelled split (saved in ``run_dir``), without loading any image;
    warns when the data set has no validation list (training then keeps its final checkpoint)."""
    datalist = load_datalist(ensure_dataset(dataset_dir, sample_kind))
    split = make_split(datalist, labeled, seed)
    if run_dir is not None:
        split.to_json(Path(run_dir) / "split.json")
    if not datalist.validation:
        logger.warning(
            f"{datalist.dataset_dir}/dataset.json has no 'validation' list: training runs without validation and keeps its final "
            "checkpoint. Add a 'validation' list (cases never used for training) to select the best one."
        )
    return datalist, split


def prepare_data(
    dataset_dir: str | Path,
    labeled=None,
    seed: int = 0,
    run_dir: str | Path | None = None,
    sample_kind: str | None = None,
    train_normalize: str = "slice",
    val_normalize: str = "volume",
    with_unlabeled: bool = False,
) -> dict:
    """Load the data list, split it, save the split in ``run_dir`` and load the slices.

    Returns ``datalist``, ``split``, ``labels`` (label value -> name), ``labeled_slices`` (with labels),
    ``unlabeled_slices`` (images only, when ``with_unlabeled``) and ``val_volumes`` (the data set's
    validation list, grouped per case).
    """
    datalist, split = load_split(dataset_dir, labeled, seed, run_dir, sample_kind)
    values = datalist.label_values
    data = {
        "datalist": datalist,
        "split": split,
        "labels": datalist.labels,
        "labeled_slices": load_slices(split.labeled, values, normalize=train_normalize),
        "unlabeled_slices": load_slices(split.unlabeled, values, normalize=train_normalize, with_labels=False) if with_unlabeled else [],
        "val_volumes": group_volumes(load_slices(datalist.validation, values, normalize=val_normalize)),
    }
    logger.info(
        f"Data set {datalist.dataset_dir}: {len(split.labeled)} labelled cases ({len(data['labeled_slices'])} slices), "
        f"{len(split.unlabeled)} unlabelled, {len(data['val_volumes'])} validation cases; split rule: {split.rule}."
    )
    return data


def prepare_volumes(
    dataset_dir: str | Path,
    labeled=None,
    seed: int = 0,
    run_dir: str | Path | None = None,
    sample_kind: str | None = None,
    normalize: str = "none",
    with_unlabeled: bool = False,
) -> dict:
    """As :func:`prepare_data` for 3D students: whole volumes instead of slices.

    Returns ``datalist``, ``split``, ``labels``, ``labeled_volumes`` (with labels), ``unlabeled_volumes``
    (images only, when ``with_unlabeled``) and ``val_volumes`` (``{"id", "image", "label"}``; empty when
    the data set has no validation list, as LA: the run then keeps its final checkpoint).
    """
    datalist, split = load_split(dataset_dir, labeled, seed, run_dir, sample_kind)
    values = datalist.label_values
    data = {
        "datalist": datalist,
        "split": split,
        "labels": datalist.labels,
        "labeled_volumes": load_volumes(split.labeled, values, normalize),
        "unlabeled_volumes": load_volumes(split.unlabeled, values, normalize, with_labels=False) if with_unlabeled else [],
        "val_volumes": load_volumes(datalist.validation, values, normalize),
    }
    logger.info(
        f"Data set {datalist.dataset_dir}: {len(split.labeled)} labelled volumes, {len(data['unlabeled_volumes'])} unlabelled, "
        f"{len(data['val_volumes'])} validation volumes; split rule: {split.rule}."
    )
    return data
