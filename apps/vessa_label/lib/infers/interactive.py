"""Interactive segmentation by the assistant from the clients' foreground / background clicks (and a box).

On a volume the slice that was clicked last is segmented with its clicks, then the mask is propagated slice
by slice to the neighbours (each slice prompted with its neighbour's mask as the coarse mask, and with its own
clicks where it has any). The image, and the assistant's embedding of each slice, are kept between clicks.
"""

from __future__ import annotations

import os
from collections import OrderedDict, defaultdict

import numpy as np
from monailabel.interfaces.tasks.infer_v2 import InferType

from lib.image_io import click_to_pixel, roi_to_box
from lib.infers.base import VessaInferTask
from lib.served import ServedModels
from vessa.data.slices import normalize_minmax
from vessa.inference.click_response import CLICK_MODES, click_answer, learnt_answer
from vessa.errors import DataError


class InteractiveSegmentation(VessaInferTask):
    """Click-driven (deepgrow-type) segmentation of one label at a time.

    ``click_mode`` (:mod:`vessa.inference.click_response`): ``paint`` (default) edits the slice's current mask with a
    disk per click (``click_radius`` times the slice size) before the assistant refines it, and keeps the disks;
    ``learnt`` is the assistant's own response (point prompts, its answer to the earlier clicks as the coarse-mask
    prompt, as click sessions train it; the answers of the last ``sessions_kept`` click sessions are kept, so a new
    click costs one forward pass), which ``benchmarks/clicks.py`` finds to follow clicks too little to be the
    default. A request may set its own.
    """

    click_radius = 0.04
    sessions_kept = 32

    def __init__(self, served: ServedModels, propagate: int = 5, click_mode: str = "paint") -> None:
        if click_mode not in CLICK_MODES:
            raise ValueError(f"Unknown click_mode {click_mode!r} for vessa_interactive: use one of {CLICK_MODES}.")
        super().__init__(
            served,
            InferType.DEEPGROW,
            "VESSA assistant, interactive: foreground / background clicks (and an optional ROI box) on a slice, propagated to the neighbouring slices",
            config={"propagate": propagate, "click_mode": click_mode},
        )
        self._sessions: OrderedDict[tuple, dict] = OrderedDict()

    def _session_answers(self, key: tuple) -> dict:
        """The learnt answers so far of one click session (a slice, label and box of one image), least recent dropped."""
        answers = self._sessions.pop(key, None) or {}
        self._sessions[key] = answers
        while len(self._sessions) > self.sessions_kept:
            self._sessions.popitem(last=False)
        return answers

    def _label_value(self, request: dict) -> int | None:
        """The label the clicks are for; None when not given (OHIF sends none): the clicked structure decides."""
        names = {name: value for value, name in self.served.labels().items() if value != 0}
        name = request.get("label")
        if not name:
            return next(iter(names.values())) if len(names) == 1 else None
        if name not in names:
            raise DataError(f"Unknown label {name!r}: this app segments {sorted(names)}.")
        return names[name]

    def _clicked_class(self, predictor, prep: dict, own: list) -> int:
        """The label the assistant finds most likely under the first foreground click."""
        foreground = [xy for xy, flag in own if flag == 1]
        names = sorted(n for v, n in self.served.labels().items() if v != 0)
        if not foreground:
            raise DataError(f"Say which label the clicks are for ('label' parameter: one of {names}), or click on the structure with a foreground click.")
        x, y = foreground[0]
        probs = predictor.predict(prepared=prep)["probs"]
        row, col = min(int(round(y)), probs.shape[1] - 1), min(int(round(x)), probs.shape[2] - 1)
        return predictor.bank.foreground[int(probs[:, row, col].argmax())]

    def _volume(self, path: str, image: np.ndarray) -> np.ndarray:
        stamp = (path, os.stat(path).st_mtime)
        return self.served.prepared(("volume",) + stamp, lambda: normalize_minmax(image))

    def segment(self, image: np.ndarray, request: dict) -> tuple[np.ndarray, dict]:
        value = self._label_value(request)
        mode = request.get("click_mode", self._config["click_mode"])
        if mode not in CLICK_MODES:
            raise DataError(f"Unknown click_mode {mode!r}: use one of {list(CLICK_MODES)}.")
        steps = request.get("propagate", self._config["propagate"])
        if not (isinstance(steps, int) and not isinstance(steps, bool) and steps >= 0) and not (isinstance(steps, str) and steps.isdigit()):
            raise DataError(f"'propagate' is {steps!r}: give the number of slices (0 or more) to propagate the mask each way.")
        steps = int(steps)
        is_volume = image.ndim == 4
        clicks: dict = defaultdict(list)  # slice -> [((x, y), 1 | 0)]
        last_slice, clicked = None, False
        for key, flag in (("foreground", 1), ("background", 0)):
            for click in request.get(key) or []:
                z, xy = click_to_pixel(click, is_volume)
                clicks[z].append((xy, flag))
                if flag == 1 or not clicked:
                    last_slice, clicked = z, True
        box = roi_to_box(request["roi"], is_volume) if request.get("roi") else None
        if not clicked and box is None:
            raise DataError("Interactive segmentation needs at least one click (foreground or background) or an ROI box on the image.")
        if is_volume and not clicked:
            roi = request["roi"]
            last_slice = int(round((roi[4] + roi[5]) / 2)) if len(roi) >= 6 else image.shape[-1] // 2
        if is_volume and not 0 <= last_slice < image.shape[-1]:
            raise DataError(f"Click on slice {last_slice} is outside the volume of {image.shape[-1]} slices.")
        height, width = image.shape[1:3]  # a slice's rows and columns: (C, X, Y, Z) volume or (C, H, W) image
        outside = [xy for own in clicks.values() for xy, _ in own if not (0 <= xy[0] < width and 0 <= xy[1] < height)]
        if outside:
            raise DataError(f"Clicks {outside} (x, y) are outside the image of {width} x {height} pixels.")

        predictor = self.served.assistant()
        volume = self._volume(request["image"], image)
        depth = image.shape[-1] if is_volume else 1
        version = self.served.versions().get("assistant", "")

        def prepared(z: int | None) -> dict:
            pos = z / max(depth - 1, 1) if is_volume else None
            return self.served.prepared((request["image"], z, version), lambda: predictor.prepare(volume[..., z] if is_volume else volume, pos))

        if value is None:
            value = self._clicked_class(predictor, prepared(last_slice), clicks.get(last_slice, []))
        k = predictor.bank.foreground.index(value)

        def segment_slice(z: int | None, current: np.ndarray | None) -> np.ndarray:
            slice_box = box if z == last_slice else None
            if mode == "learnt" and z == last_slice:
                key = (request["image"], os.stat(request["image"]).st_mtime, z, version, k, tuple(slice_box) if slice_box is not None else None)
                return learnt_answer(predictor, prepared(z), k, clicks.get(z, []), current, slice_box, self._session_answers(key))
            return click_answer(predictor, prepared(z), k, clicks.get(z, []), current, slice_box, mode, self.click_radius)

        result = np.zeros(image.shape[1:], dtype=np.uint8)
        mask = segment_slice(last_slice, None)
        if not is_volume:
            result[mask] = value
            return result, {"label": self.served.labels()[value], "slices": []}
        result[..., last_slice][mask] = value
        done = [last_slice]
        for direction in (-1, 1):
            prev = mask
            for step in range(1, steps + 1):
                z = last_slice + direction * step
                if not 0 <= z < depth or not prev.any():
                    break
                prev = segment_slice(z, prev)
                result[..., z][prev] = value
                done.append(z)
        return result, {"label": self.served.labels()[value], "slices": sorted(done)}
