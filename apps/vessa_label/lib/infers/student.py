"""Automatic segmentation by the trained stage-2 student, by the protocol it was validated with."""

from __future__ import annotations

import numpy as np
from monailabel.interfaces.tasks.infer_v2 import InferType

from lib.infers.base import VessaInferTask
from lib.served import ServedModels
from vessa.data.slices import normalize_image
from vessa.evaluation.student import predict_volume_sliding, predict_volume_slicewise
from vessa.errors import DataError


def predict_student(served: ServedModels, image: np.ndarray, overlap: float = 0.5) -> np.ndarray:
    """Label map (label values) of a (C, H, W) image or (C, X, Y, Z) volume by the served student."""
    network = served.student()
    settings = served.student_settings
    x = normalize_image(image, settings["normalize"])
    if settings["mode"] == "sliding":
        if x.ndim != 4:
            raise DataError("The served student is 3D (sliding window) but the image is 2D: serve a 2D student (--conf student_configs stage2.json).")
        index = predict_volume_sliding(network, x, settings["patch_size"], overlap, served.device)
    else:
        index = predict_volume_slicewise(network, x, int(settings["patch_size"]), served.device)
    return np.asarray(sorted(served.labels()), dtype=np.int64)[index]


class StudentSegmentation(VessaInferTask):
    """The student network: 2D students slice by slice, 3D students by sliding window."""

    def __init__(self, served: ServedModels) -> None:
        super().__init__(served, InferType.SEGMENTATION, "VESSA student: automatic segmentation of every class")

    def segment(self, image: np.ndarray, request: dict) -> tuple[np.ndarray, dict]:
        return predict_student(self.served, image, float(request.get("overlap", 0.5))), {}
