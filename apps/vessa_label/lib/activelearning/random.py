"""Active learning: a random unlabelled image, the ones served longest ago most likely."""

from __future__ import annotations

import random
import time

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.strategy import Strategy


class LeastRecentRandom(Strategy):
    """MONAI Label's ``random`` strategy (each image weighted by the seconds since this strategy last served it)
    without its failure when every unlabelled image was served within the current second: their weights are
    then all 0 and ``random.choices`` raises, a 500 for the annotator. Each weight here is at least 1."""

    def __init__(self) -> None:
        super().__init__("Random unlabelled image, those served longest ago most likely")

    def __call__(self, request: dict, datastore: Datastore) -> dict | None:
        images = datastore.get_unlabeled_images(request.get("label_tag"), request.get("labels"))
        if not images:
            return None
        now = int(time.time())
        served = [datastore.get_image_info(i).get("strategy", {}).get(request["strategy"], {}).get("ts", 0) for i in images]
        weights = [max(now - ts, 1) for ts in served]
        index = random.choices(range(len(images)), weights=weights)[0]
        return {"id": images[index], "weight": weights[index]}
