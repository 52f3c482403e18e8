"""Reading images and label masks (2D PNG/JPG/BMP/TIF via PIL, NIfTI via nibabel)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from vessa.errors import DataError

NIFTI_SUFFIXES = (".nii.gz", ".nii")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def is_nifti(path: str | Path) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def _check_exists(path: Path, what: str) -> None:
    if not path.is_file():
        raise DataError(
            f"{what} file not found: {path}. Check the path in dataset.json "
            "(relative paths are resolved against the data set folder)."
        )


def _read_nifti(path: Path) -> np.ndarray:
    try:
        import nibabel as nib

        return np.asarray(nib.load(str(path)).dataobj)
    except Exception as e:  # noqa: BLE001 - any reader failure is a data problem
        raise DataError(
            f"Cannot read NIfTI file {path}: {e}. Check that the file is a valid, complete .nii/.nii.gz file."
        ) from e


def _read_pil(path: Path) -> np.ndarray:
    try:
        from PIL import Image

        with Image.open(path) as im:
            if im.mode in ("P", "PA"):
                im = im.convert("RGBA" if "transparency" in im.info or im.mode == "PA" else "RGB")
            elif im.mode == "LA":
                im = im.convert("L")
            elif im.mode == "CMYK" or im.mode == "YCbCr":
                im = im.convert("RGB")
            arr = np.array(im)
    except Exception as e:  # noqa: BLE001
        raise DataError(
            f"Cannot read image file {path}: {e}. Supported 2D formats are "
            f"{', '.join(IMAGE_SUFFIXES)}; check the file is a valid image."
        ) from e
    return arr


def load_image(path: str | Path) -> np.ndarray:
    """Load an image as float32, channel first: (C,H,W) for 2D, (1,X,Y,Z) for 3D NIfTI."""
    path = Path(path)
    _check_exists(path, "Image")
    if is_nifti(path):
        arr = _read_nifti(path)
        if arr.ndim == 4 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if arr.ndim not in (2, 3):
            raise DataError(
                f"Image {path} has shape {arr.shape}; VESSA expects a 2D or 3D single-channel volume. "
                "Save each channel/time point as its own file."
            )
        return np.ascontiguousarray(arr[None].astype(np.float32))
    arr = _read_pil(path)
    if arr.ndim == 2:
        return arr[None].astype(np.float32)
    if arr.ndim == 3:
        if arr.shape[-1] == 4:
            arr = arr[..., :3]
        if arr.shape[-1] == 1:
            return arr[..., 0][None].astype(np.float32)
        if arr.shape[-1] == 3:
            return np.ascontiguousarray(np.moveaxis(arr, -1, 0).astype(np.float32))
    raise DataError(f"Image {path} has unsupported shape {arr.shape}; use grayscale or RGB(A) images.")


def load_label(path: str | Path, label_values: Sequence[int]) -> np.ndarray:
    """Load a label mask as int64 without channel axis: (H,W) or (X,Y,Z).

    Binary masks saved as 0/255 are mapped to 0/1 when the data set has exactly one foreground label.
    Any value not in ``label_values`` raises :class:`DataError`.
    """
    path = Path(path)
    _check_exists(path, "Label")
    allowed = sorted(int(v) for v in label_values)
    if is_nifti(path):
        arr = _read_nifti(path)
        if arr.ndim == 4 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if np.issubdtype(arr.dtype, np.floating):
            if not np.all(np.isfinite(arr)) or not np.allclose(arr, np.round(arr)):
                raise DataError(
                    f"Label {path} contains non-integer values; labels must be one of {allowed}. "
                    "Save label masks with integer class indices."
                )
            arr = np.round(arr)
    else:
        arr = _read_pil(path)
        if arr.ndim == 3:
            ch = arr.shape[-1]
            if ch == 4:
                arr = arr[..., :3]
            first = arr[..., 0]
            if not all(np.array_equal(first, arr[..., c]) for c in range(1, arr.shape[-1])):
                raise DataError(
                    f"Label {path} is a colour mask whose channels differ; labels must be one of {allowed}. "
                    "Save the mask as a single-channel (grayscale) PNG holding class indices."
                )
            arr = first
    arr = arr.astype(np.int64)
    values = np.unique(arr)
    vset = set(int(v) for v in values)
    if vset <= {0, 255} and 255 in vset and 255 not in allowed:
        foreground = [v for v in allowed if v != 0]
        if len(foreground) != 1:
            raise DataError(
                f"Label {path} holds only 0 and 255 (a binary mask), but the data set has "
                f"{len(foreground)} foreground labels {foreground}; labels must be one of {allowed}. "
                "Save multi-class masks with class indices, or declare a single foreground label in dataset.json."
            )
        arr = np.where(arr == 255, foreground[0], 0).astype(np.int64)
        vset = {0, foreground[0]} if 0 in vset else {foreground[0]}
    bad = sorted(vset - set(allowed))
    if bad:
        shown = bad[:10]
        raise DataError(
            f"Label {path} contains values {shown}{' ...' if len(bad) > 10 else ''} not declared in dataset.json; "
            f"labels must be one of {allowed}. Fix the mask, or add the missing classes to 'labels' in dataset.json."
        )
    return np.ascontiguousarray(arr)


def check_same_shape(image: np.ndarray, label: np.ndarray, image_path: str | Path, label_path: str | Path) -> None:
    """The spatial shape of ``image`` (shape[1:]) must equal ``label.shape``."""
    if tuple(image.shape[1:]) != tuple(label.shape):
        raise DataError(
            f"Image {image_path} has spatial shape {tuple(image.shape[1:])} but its label {label_path} has shape "
            f"{tuple(label.shape)}; they must match. Check that the image and label entries in dataset.json "
            "belong together and were saved at the same resolution."
        )
