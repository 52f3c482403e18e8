"""Stage 2: one semi-supervised trainer; the SSL method and the assistant are plugged in by config."""

from __future__ import annotations

from typing import Sequence

import torch
from monai.engines import Trainer
from monai.engines.utils import IterationEvents
from torch.optim import Optimizer
from torch.utils.data import DataLoader

from vessa.engines.ssl_methods import SupervisedOnly
from vessa.losses.ssl import sigmoid_rampdown, sigmoid_rampup


class Stage2Trainer(Trainer):
    """Student training from labelled batches plus unlabelled batches that the method (and assistant) turn into losses.

    Args:
        network: the student.
        method: a method of :mod:`vessa.engines.ssl_methods`.
        assistant: an :class:`vessa.assistants.Assistant` giving pseudo-labels, or None.
        assistant_weight: weight of the assistant's pseudo-labels, scheduled by ``assistant_schedule``:
            ``"constant"``, ``"rampup"`` (sigmoid over ``assistant_ramp_iterations``) or ``"rampdown"``
            (SemiSAM's decay of the generalist's weight).
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: DataLoader,
        network: torch.nn.Module,
        optimizer: Optimizer,
        method: SupervisedOnly,
        assistant=None,
        epoch_length: int | None = None,
        assistant_weight: float = 1.0,
        assistant_schedule: str = "rampup",
        assistant_ramp_iterations: int = 200,
        train_handlers: Sequence | None = None,
    ) -> None:
        super().__init__(
            device=device, max_epochs=max_epochs, data_loader=train_data_loader, epoch_length=epoch_length, handlers=train_handlers, decollate=False
        )
        if assistant_schedule not in ("constant", "rampup", "rampdown"):
            raise ValueError(f"unknown assistant_schedule '{assistant_schedule}': use constant, rampup or rampdown")
        self.network = network
        self.optimizer = optimizer
        self.method = method
        self.assistant = assistant
        self.assistant_weight = assistant_weight
        self.assistant_schedule = assistant_schedule
        self.assistant_ramp_iterations = assistant_ramp_iterations
        method.setup(self)

    def assistant_scale(self) -> float:
        it, n = self.state.iteration, self.assistant_ramp_iterations
        ramp = {"constant": 1.0, "rampup": sigmoid_rampup(it, n), "rampdown": sigmoid_rampdown(it, n)}[self.assistant_schedule]
        return self.assistant_weight * ramp

    def pseudo_labels(self, images: torch.Tensor, probs: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The assistant's pseudo-labels and weights for unlabelled ``images`` given the student's ``probs``; None without an assistant."""
        if self.assistant is None:
            return None
        labels, weights = self.assistant.refine(images, probs, {"slice_pos": batch.get("u_pos")})
        return labels, weights * self.assistant_scale()

    def _iteration(self, engine: "Stage2Trainer", batchdata: dict) -> dict:
        batch = {k: (v.to(engine.state.device) if torch.is_tensor(v) else v) for k, v in batchdata.items()}
        engine.network.train()
        engine.optimizer.zero_grad(set_to_none=True)
        terms = engine.method.losses(engine, batch)
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        loss = sum(terms.values())
        engine.fire_event(IterationEvents.LOSS_COMPLETED)
        loss.backward()
        engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
        engine.optimizer.step()
        engine.method.after_step(engine)
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return {"loss": loss.detach().item(), **{k: v.detach().item() for k, v in terms.items()}}
