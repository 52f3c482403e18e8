"""Mixed precision in the trainers' iterations: MONAI's ``Trainer`` holds ``amp``, ``amp_kwargs`` and the scaler."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch
from monai.engines.utils import IterationEvents


def autocast(engine) -> AbstractContextManager:
    """``torch.autocast`` on CUDA when the engine trains with ``amp``, else nothing."""
    return torch.autocast("cuda", **engine.amp_kwargs) if engine.amp else nullcontext()


def backward_and_step(engine, loss: torch.Tensor) -> None:
    """Backward pass and optimiser step, through the engine's gradient scaler when it has one; fires BACKWARD_COMPLETED."""
    if engine.scaler is not None:
        engine.scaler.scale(loss).backward()
        engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
        engine.scaler.step(engine.optimizer)
        engine.scaler.update()
    else:
        loss.backward()
        engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
        engine.optimizer.step()
