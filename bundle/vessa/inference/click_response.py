"""The assistant's answer to an annotator's clicks on one slice: what the interactive task serves and what
``benchmarks/clicks.py`` measures.

Two modes:
  learnt  the clicks go to the assistant as point prompts (the class's own row), with its answer to the clicks
          before the last one as the coarse-mask prompt, as stage 1's click sessions train it (the first click: the
          slice's current mask, a neighbour's, or the assistant's own click-free prediction): the mask is the
          assistant's response to the clicks and nothing else (:func:`learnt_answer` replays a session);
  paint   as the interactive task did before click training: the current mask is edited with a disk per click
          (added for a foreground click, removed for a background one) before it becomes the coarse-mask prompt,
          and every clicked disk is kept in the answer.
"""

from __future__ import annotations

from collections.abc import MutableMapping

import numpy as np
import torch

from vessa.inference.predictor import AssistantPredictor

CLICK_MODES = ("learnt", "paint")
Click = tuple[tuple[float, float], int]  # ((x, y) pixel, 1 foreground | 0 background)


def apply_clicks(mask: np.ndarray, clicks: list[Click], radius: float) -> np.ndarray:
    """The (H, W) mask with a disk of ``radius`` pixels added at each foreground click and removed at each
    background click, in click order."""
    yy, xx = np.mgrid[: mask.shape[0], : mask.shape[1]]
    out = mask.copy()
    for (x, y), flag in clicks:
        disk = (xx - x) ** 2 + (yy - y) ** 2 <= radius**2
        out = out | disk if flag == 1 else out & ~disk
    return out


def click_answer(
    predictor: AssistantPredictor,
    prepared: dict,
    k: int,
    clicks: list[Click],
    current: np.ndarray | None = None,
    box: list[float] | None = None,
    mode: str = "learnt",
    radius: float = 0.04,
) -> np.ndarray:
    """The (H, W) boolean mask of class ``k`` (index into the bank's foreground) after ``clicks`` on one
    :meth:`AssistantPredictor.prepare`-d slice.

    ``current``: the slice's mask so far (e.g. propagated from a neighbour); None: the assistant's own prediction
    without clicks. ``box``: optional (x0, y0, x1, y1) prompt. ``radius``: the painted disk, a fraction of the
    slice's shorter side (``paint`` only).
    """
    if mode not in CLICK_MODES:
        raise ValueError(f"Unknown click mode {mode!r}: use one of {CLICK_MODES}.")
    num_classes, value = len(predictor.bank.foreground), predictor.bank.foreground[k]
    points = labels = boxes = None
    if clicks:
        points = torch.zeros(num_classes, len(clicks), 2)
        labels = torch.full((num_classes, len(clicks)), -1)
        points[k] = torch.tensor([xy for xy, _ in clicks], dtype=torch.float32)
        labels[k] = torch.tensor([flag for _, flag in clicks])
    if box is not None:
        boxes = torch.full((num_classes, 4), float("nan"))
        boxes[k] = torch.tensor(box, dtype=torch.float32)
    disk = radius * min(prepared["shape"])
    coarse = current
    if clicks and coarse is None:
        coarse = predictor.predict(prepared=prepared, boxes=boxes)["probs"][k].numpy() > predictor.threshold
    if clicks and mode == "paint":
        coarse = apply_clicks(coarse, clicks, disk)
    coarse_label = coarse.astype(np.int64) * value if coarse is not None else None
    out = predictor.predict(prepared=prepared, points=points, point_labels=labels, boxes=boxes, coarse_label=coarse_label)
    mask = out["probs"][k].numpy() > predictor.threshold
    return apply_clicks(mask, clicks, disk) if mode == "paint" else mask


def learnt_answer(
    predictor: AssistantPredictor,
    prepared: dict,
    k: int,
    clicks: list[Click],
    current: np.ndarray | None = None,
    box: list[float] | None = None,
    answers: MutableMapping[frozenset, np.ndarray] | None = None,
) -> np.ndarray:
    """The ``learnt`` answer to a click session: each click answered with the answer to the clicks before it as
    the coarse-mask prompt, as the assistant was trained.

    ``answers`` memoises the answer to each set of clicks (a client sends the whole set at every click, foreground
    and background apart, so the order is lost): a session whose set minus one click was answered costs one
    forward pass; otherwise the clicks are replayed in the order given.
    """
    answers = {} if answers is None else answers
    done = frozenset(clicks)
    if done in answers:
        return answers[done]
    previous = next((answers[done - {c}] for c in clicks if done - {c} in answers), None)
    if previous is None and len(clicks) > 1:
        previous = learnt_answer(predictor, prepared, k, clicks[:-1], current, box, answers)
    elif previous is None:
        previous = current
    answers[done] = click_answer(predictor, prepared, k, clicks, previous, box, mode="learnt")
    return answers[done]
