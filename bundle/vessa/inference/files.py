"""File-to-file segmentation with the assistant: 2D images and 3D volumes (slice by slice)."""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image
from tqdm import tqdm

from vessa.data.io import is_nifti, load_image
from vessa.data.slices import normalize_minmax
from vessa.inference.predictor import AssistantPredictor
from vessa.errors import DataError

logger = logging.getLogger(__name__)


def segment_image(predictor: AssistantPredictor, image: np.ndarray) -> np.ndarray:
    """Segment a loaded (C, H, W) image or (C, X, Y, Z) volume; returns the label map of the spatial shape."""
    if image.ndim == 3:
        return predictor.predict(normalize_minmax(image))["label"].numpy()
    if image.ndim != 4:
        raise DataError(f"Expected a (C, H, W) image or (C, X, Y, Z) volume, got shape {image.shape}.")
    volume = normalize_minmax(image)
    depth = volume.shape[-1]
    slices = [predictor.predict(volume[..., z], z / max(depth - 1, 1))["label"].numpy() for z in range(depth)]
    return np.stack(slices, axis=-1)


def segment_files(predictor: AssistantPredictor, images: list[str], output_dir: str | Path, suffix: str = "_seg") -> list[Path]:
    """Segment each file and write ``<name><suffix>`` beside the others in ``output_dir`` (PNG or NIfTI as the input)."""
    if not images:
        raise DataError("No input images to segment: check 'input_dir' (or the data list) of the inference config.")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in tqdm(images, desc="segmenting"):
        path = Path(path)
        label = segment_image(predictor, load_image(path)).astype(np.uint8)
        if is_nifti(path):
            ref = nib.load(str(path))
            out = output_dir / (path.name.split(".nii")[0] + suffix + ".nii.gz")
            nib.save(nib.Nifti1Image(label, ref.affine), str(out))
        else:
            out = output_dir / (path.stem + suffix + ".png")
            Image.fromarray(label).save(out)
        written.append(out)
    logger.info(f"Wrote {len(written)} segmentations to {output_dir}")
    return written
