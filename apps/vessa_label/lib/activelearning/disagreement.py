"""Active learning: the unlabelled image the student and the assistant disagree on most is labelled next."""

from __future__ import annotations

import logging

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.strategy import Strategy

from lib.scoring.disagreement import current_score, score_image
from lib.served import ServedModels

logger = logging.getLogger(__name__)


class Disagreement(Strategy):
    """Highest student-assistant disagreement first; ties go to the image with the lowest predicted IoU.

    Images without an up-to-date score are scored on the spot (the ``vessa_disagreement`` scoring method
    does them all in the background after each selection).
    """

    def __init__(self, served: ServedModels) -> None:
        super().__init__("Unlabelled image where the student and the assistant disagree most (lowest assistant IoU on ties)")
        self.served = served

    def __call__(self, request: dict, datastore: Datastore) -> dict | None:
        images = datastore.get_unlabeled_images(request.get("label_tag"), request.get("labels"))
        if not images:
            return None
        scores = {i: current_score(self.served, datastore, i) or score_image(self.served, datastore, i) for i in images}
        best = max(images, key=lambda i: (round(scores[i]["disagreement"], 6), -scores[i]["assistant_iou"]))
        logger.info(f"Disagreement: selected {best} ({scores[best]['disagreement']:.3f}, assistant IoU {scores[best]['assistant_iou']:.3f})")
        return {"id": best, "disagreement": scores[best]["disagreement"], "assistant_iou": scores[best]["assistant_iou"]}
