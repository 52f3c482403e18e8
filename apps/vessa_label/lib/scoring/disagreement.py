"""Scores unlabelled images by how much the student and the assistant disagree on them."""

from __future__ import annotations

import logging

import numpy as np
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.scoring import ScoringMethod

from lib.image_io import read_image
from lib.infers.student import predict_student
from lib.served import ServedModels
from vessa.data.slices import normalize_minmax
from vessa.errors import VessaError

logger = logging.getLogger(__name__)

INFO_KEY = "vessa_disagreement"


def disagreement(served: ServedModels, image: np.ndarray) -> dict:
    """``disagreement`` 1 - mean Dice between the student's and the assistant's labels over the classes either
    finds, and ``assistant_iou`` the assistant's mean predicted IoU (low: unsure) over its slices."""
    student = predict_student(served, image)
    predictor = served.assistant()
    volume = normalize_minmax(image)
    if image.ndim == 3:
        outs = [predictor.predict(volume)]
    else:
        depth = image.shape[-1]
        outs = [predictor.predict(volume[..., z], z / max(depth - 1, 1)) for z in range(depth)]
    assistant = np.stack([o["label"].numpy() for o in outs], axis=-1) if image.ndim == 4 else outs[0]["label"].numpy()
    dices = []
    for value in served.labels():
        a, b = student == value, assistant == value
        if value != 0 and (a.any() or b.any()):
            dices.append(2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum()))
    return {"disagreement": float(1.0 - np.mean(dices)) if dices else 0.0, "assistant_iou": float(np.mean([o["iou"].mean().item() for o in outs]))}


def score_image(served: ServedModels, datastore: Datastore, image_id: str) -> dict:
    """Score one image and keep the score, with the model versions it came from, in the datastore's image info."""
    score = {**disagreement(served, read_image(datastore.get_image_uri(image_id))), "versions": served.versions()}
    datastore.update_image_info(image_id, {INFO_KEY: score})
    return score


def current_score(served: ServedModels, datastore: Datastore, image_id: str) -> dict | None:
    """The stored score of an image if it was computed with the models served now."""
    score = datastore.get_image_info(image_id).get(INFO_KEY)
    return score if score and score.get("versions") == served.versions() else None


class DisagreementScoring(ScoringMethod):
    """Scores every unlabelled image (those with an up-to-date score are skipped)."""

    def __init__(self, served: ServedModels) -> None:
        super().__init__("Student-assistant disagreement (1 - Dice) and the assistant's predicted IoU of each unlabelled image")
        self.served = served

    def __call__(self, request: dict, datastore: Datastore) -> dict:
        scores = {}
        try:
            for image_id in datastore.get_unlabeled_images():
                scores[image_id] = current_score(self.served, datastore, image_id) or score_image(self.served, datastore, image_id)
        except VessaError as err:
            logger.warning(f"Disagreement scoring skipped: {err}")
            return {"error": str(err), "scores": scores}
        return {"scores": scores}
