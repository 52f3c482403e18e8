"""Data lists, label-ratio splits, slice loading and built-in sample data."""

from vessa.data.datalist import Datalist, load_datalist
from vessa.data.io import check_same_shape, load_image, load_label
from vessa.data.sample_data import generate_sample_dataset
from vessa.data.slices import load_slices, normalize_minmax
from vessa.data.splits import Split, make_split

__all__ = [
    "Datalist",
    "load_datalist",
    "Split",
    "make_split",
    "load_slices",
    "normalize_minmax",
    "generate_sample_dataset",
    "load_image",
    "load_label",
    "check_same_shape",
]
