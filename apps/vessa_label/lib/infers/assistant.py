"""Reference-guided segmentation by the stage-1 assistant: templates retrieved from the bank, no clicks needed."""

from __future__ import annotations

import numpy as np
from monailabel.interfaces.tasks.infer_v2 import InferType

from lib.infers.base import VessaInferTask
from lib.served import ServedModels
from vessa.inference.files import segment_image


class AssistantSegmentation(VessaInferTask):
    """Every slice of the image segmented by the assistant with its most similar exemplars."""

    def __init__(self, served: ServedModels) -> None:
        super().__init__(served, InferType.SEGMENTATION, "VESSA assistant: reference-guided segmentation with exemplars from the template bank")

    def segment(self, image: np.ndarray, request: dict) -> tuple[np.ndarray, dict]:
        return segment_image(self.served.assistant(), image), {}
