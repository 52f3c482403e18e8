"""Reading the image of a request, mapping the clients' voxel clicks to pixels, and writing label files.

The clients (3D Slicer, OHIF) send clicks as voxel indices ``[i, j, k]`` of the image as MONAI Label loads it.
A NIfTI volume is loaded as an (X, Y, Z) array, so slice ``k`` is ``array[:, :, k]`` with rows ``i`` and
columns ``j``; a PNG is loaded as (width, height), so ``[i, j]`` is column ``i``, row ``j`` of the picture.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Sequence

import nibabel as nib
import numpy as np
from PIL import Image

from vessa.data.io import is_nifti, load_image
from vessa.errors import DataError


def read_image(path: str | Path) -> np.ndarray:
    """The request's image as (C, H, W) or (C, X, Y, Z) float32, or a clear DataError naming the file."""
    if not path or not Path(path).exists():
        raise DataError(f"Image {path!r} not found: check the image id, or upload the file with the request.")
    if Path(path).is_dir():
        raise DataError(f"{path} is a folder (a DICOM series that was not converted): keep MONAI Label's DICOMweb conversion to NIfTI on.")
    try:
        return load_image(path)
    except DataError:
        raise
    except Exception as err:  # a truncated or foreign file: name it and say what can be read
        raise DataError(f"Cannot read image {path}: {err}. VESSA reads NIfTI (.nii, .nii.gz) volumes and PNG/JPEG/TIFF images.") from err


def click_to_pixel(click: Sequence[float], volume: bool) -> tuple[int | None, tuple[float, float]]:
    """Slice index (None for a 2D image) and (x, y) = (column, row) pixel of one client click."""
    if not isinstance(click, (list, tuple)) or len(click) < (3 if volume else 2):
        raise DataError(f"Click {click!r} needs {'[i, j, k]' if volume else '[i, j]'} voxel indices.")
    click = finite_numbers(click, "Click")
    if volume:
        return int(round(click[2])), (float(click[1]), float(click[0]))
    return None, (float(click[0]), float(click[1]))


def finite_numbers(values: Sequence, what: str) -> list[float]:
    """``values`` as floats; a :class:`DataError` naming them when one is not a finite number (text, NaN, inf)."""
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        raise DataError(f"{what} {list(values)!r} must hold numbers (voxel indices).") from None
    if not all(math.isfinite(v) for v in numbers):
        raise DataError(f"{what} {list(values)!r} must hold finite voxel indices (no NaN or infinity).")
    return numbers


def roi_to_box(roi: Sequence[float], volume: bool) -> tuple[float, float, float, float]:
    """A client ROI ``[i0, j0, i1, j1, ...]`` as an (x0, y0, x1, y1) pixel box of the slice."""
    if not isinstance(roi, (list, tuple)) or len(roi) < 4:
        raise DataError(f"ROI {roi!r} needs at least [i0, j0, i1, j1].")
    i0, j0, i1, j1 = finite_numbers(roi[:4], "ROI")
    return (min(j0, j1), min(i0, i1), max(j0, j1), max(i0, i1)) if volume else (min(i0, i1), min(j0, j1), max(i0, i1), max(j0, j1))


def write_label(label: np.ndarray, image_path: str | Path, extension: str | None = None) -> str:
    """Write a label map of the image's spatial shape to a temporary file and return its path (MONAI Label
    moves it into the datastore or sends it). Volumes keep the image's geometry, as NIfTI or as the
    ``extension`` a client asks for (OHIF asks for ``.nrrd``); 2D images get a PNG."""
    label = np.asarray(label).astype(np.uint8)
    if not is_nifti(image_path):
        fd, out = tempfile.mkstemp(suffix=".png", prefix="vessa_")
        os.close(fd)
        Image.fromarray(label, mode="L").save(out)
        return out
    extension = extension or ".nii.gz"
    if extension not in (".nii.gz", ".nii", ".nrrd"):
        raise DataError(f"Cannot write a label as {extension!r}: use .nii.gz, .nii or .nrrd.")
    fd, out = tempfile.mkstemp(suffix=extension, prefix="vessa_")
    os.close(fd)
    if extension == ".nrrd":
        import SimpleITK as sitk

        image = sitk.ReadImage(str(image_path))
        written = sitk.GetImageFromArray(label.transpose(2, 1, 0) if label.ndim == 3 else label.T)
        written.CopyInformation(image)
        sitk.WriteImage(written, out, useCompression=True)
    else:
        nib.save(nib.Nifti1Image(label, nib.load(str(image_path)).affine), out)
    return out
