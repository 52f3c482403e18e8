"""MONAI Label's local datastore, refusing uploads that would write outside it or store what cannot be used.

MONAI Label's own ``LocalDatastore`` copies any upload under any id: an id such as ``../x`` lands outside the
studies folder, an empty or unreadable file becomes an image, a label of another shape than its image is kept
(and breaks training later). Each is answered here with HTTP 422 and a message, before anything is written.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from monailabel.datastore.local import LocalDatastore

from lib.image_io import read_image
from vessa.data.io import is_nifti, load_image
from vessa.errors import DataError

SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
PICTURES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")  # what VESSA reads besides NIfTI


def refuse(message: str) -> HTTPException:
    return HTTPException(status_code=422, detail=message)


def check_id(value: str, what: str) -> None:
    """An image id or label tag is one file name: letters, digits, ``.``, ``_``, ``-``, no separators or ``..``."""
    if not value or not SAFE_ID.match(value) or ".." in value:
        raise refuse(f"{what} {value!r} is not allowed: use letters, digits, '.', '_' and '-' only (no '/', '\\\\' or '..').")


class CheckedDatastore(LocalDatastore):
    """A :class:`LocalDatastore` whose uploads are checked first (ids, readable non-empty files, label shape)."""

    def add_image(self, image_id: str, image_filename: str, image_info: dict[str, Any]) -> str:
        if image_id:
            check_id(image_id, "Image id")
        try:
            read_image(image_filename)
        except DataError as err:
            raise refuse(f"The uploaded image was not added: {err}") from err
        return super().add_image(image_id, image_filename, image_info)

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any]) -> str:
        check_id(image_id, "Image id")
        check_id(label_tag, "Label tag")
        if image_id not in self._datastore.objects:
            raise HTTPException(status_code=404, detail=f"Image {image_id!r} is not in the datastore: add the image before its label.")
        if os.path.getsize(label_filename) == 0:
            raise refuse(f"The label of {image_id} was not saved: the upload is empty. Send the label map file.")
        if is_nifti(label_filename) or Path(label_filename).suffix.lower() in PICTURES:  # other formats (NRRD) pass as MONAI Label keeps them
            try:
                label = load_image(label_filename)
            except DataError as err:  # a truncated or foreign file
                raise refuse(f"The label of {image_id} was not saved: {err}") from err
            image = read_image(self.get_image_uri(image_id))
            if tuple(label.shape[1:]) != tuple(image.shape[1:]):
                raise refuse(f"The label of {image_id} was not saved: its shape {tuple(label.shape[1:])} is not its image's {tuple(image.shape[1:])}. Save the label on the image's grid.")
        return super().save_label(image_id, label_filename, label_tag, label_info)
