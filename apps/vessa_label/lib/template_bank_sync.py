"""Approved (``final``) labels join the assistant's template bank as soon as they are saved."""

from __future__ import annotations

import logging

import numpy as np

from lib.image_io import read_image
from lib.served import ServedModels
from vessa.data.io import load_label
from vessa.data.slices import normalize_minmax
from vessa.data.template_bank import TemplateBank
from vessa.training.checkpoints import read_made_for

logger = logging.getLogger(__name__)


def add_approved_label(served: ServedModels, image_id: str, image_path: str, label_path: str) -> int:
    """Put every labelled slice of an approved label into the bank (replacing the image's earlier exemplars),
    save the bank atomically and return the number of exemplars added."""
    if not served.paths["bank"].is_file() and not served.serves_base():
        logger.info(f"No template bank yet: the approved label of {image_id} will be used when stage 1 is trained.")
        return 0
    if served.paths["bank"].is_file():
        bank = served.bank()
    else:  # VESSA-base is served: its bank starts with this label, at the base's working size
        bank = TemplateBank(served.labels(), int((read_made_for(served.base_path) or {}).get("image_size", 128)))
    image = read_image(image_path)
    label = load_label(label_path, sorted(bank.labels))
    if label.shape != image.shape[1:]:
        raise ValueError(f"Label {label_path} has shape {label.shape}, its image {image_path} {image.shape[1:]}: save the label on the image's grid.")
    bank.remove(image_id)
    slices = [(image, label, 0.5)] if label.ndim == 2 else [(image[..., z], label[..., z], z / max(label.shape[-1] - 1, 1)) for z in range(label.shape[-1])]
    added = 0
    for img, lab, pos in slices:
        if np.any(lab > 0):
            bank.add(normalize_minmax(img), lab, image_id, pos)
            added += 1
    bank.save(served.paths["bank"])
    logger.info(f"Template bank: {added} exemplars of {image_id} added ({len(bank)} in all).")
    return added
