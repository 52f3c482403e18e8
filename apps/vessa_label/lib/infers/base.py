"""What every VESSA infer task shares: read the request's image, segment it, write the label, report timings."""

from __future__ import annotations

import logging
import time
from abc import abstractmethod
from typing import Any

import numpy as np
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from lib.image_io import read_image, write_label
from lib.served import ServedModels

logger = logging.getLogger(__name__)


class VessaInferTask(InferTask):
    """An infer task served from :class:`ServedModels`; subclasses implement :meth:`segment`."""

    def __init__(self, served: ServedModels, type: InferType, description: str, config: dict | None = None) -> None:
        labels = {name: value for value, name in served.labels().items() if value != 0}
        super().__init__(type=type, labels=labels, dimension=3, description=description, config=config)
        self.served = served

    def is_valid(self) -> bool:
        return True

    def info(self) -> dict[str, Any]:
        info = super().info()
        info["labels"] = {name: value for value, name in self.served.labels().items() if value != 0}
        info["model_versions"] = self.served.versions()
        return info

    @abstractmethod
    def segment(self, image: np.ndarray, request: dict) -> tuple[np.ndarray, dict]:
        """Label map of the image's spatial shape (label values), and extra fields for the result JSON."""

    def __call__(self, request: dict) -> tuple[str, dict]:
        start = time.time()
        image = read_image(request["image"])
        label, extra = self.segment(image, request)
        path = write_label(label, request["image"], request.get("result_extension"))
        latency = time.time() - start
        logger.info(f"{request.get('model')}: {request['image']} segmented in {latency:.2f} s")
        present = sorted(int(v) for v in np.unique(label) if v != 0)
        return path, {"label_names": {n: v for v, n in self.served.labels().items() if v in present}, "latency": round(latency, 3), "model_versions": self.served.versions(), **extra}
