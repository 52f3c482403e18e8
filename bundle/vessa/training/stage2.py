"""Stage 2: one semi-supervised trainer; the SSL method and the assistant are plugged in by config."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from monai.engines import Trainer
from monai.engines.utils import IterationEvents
from torch.optim import Optimizer
from torch.utils.data import DataLoader

from vessa.training.amp import autocast, backward_and_step
from vessa.training.handlers import attach_handlers
from vessa.training.pseudo_cache import PseudoLabelCache
from vessa.training.ssl_methods import SupervisedOnly, unwrap
from vessa.errors import DataError
from vessa.losses.ssl import sigmoid_rampdown, sigmoid_rampup


class Stage2Trainer(Trainer):
    """Student training from labelled batches plus unlabelled batches that the method (and assistant) turn into losses.

    Args:
        network: the student.
        method: a method of :mod:`vessa.training.ssl_methods`.
        assistant: an :class:`vessa.assistants.Assistant` giving pseudo-labels, or None.
        assistant_weight: weight of the unlabelled loss on the assistant's targets.
        assistant_schedule: how the unlabelled loss is handed over between the assistant's targets and the method's
            own (UniMatch's confident pseudo-labels, Mean Teacher's consistency): ``"constant"`` (the assistant's
            throughout), ``"rampup"`` (from the method's own to the assistant's, sigmoid over
            ``assistant_ramp_iterations``) or ``"rampdown"`` (from the assistant's to the method's own: SemiSAM's decay
            of the generalist's weight). The share ``r`` weighs the losses, ``weight * r * L_assistant + (1 - r) * L_own``:
            per-pixel weights cannot carry it, since each loss is normalised by the sum of its weights.
        assistant_update_every: every n iterations the assistant learns from the student's prediction of
            the last unlabelled batch where its confidence reaches ``assistant_update_confidence``
            (VESSA's dynamic interaction; 0 = off; only assistants that learn online act on it).
        pseudo_label_refresh: cache each unlabelled image's pseudo-label and recompute it once it is this
            many iterations old (0 = refine every batch; 2D slices only).
        assistant_fusion: ``"replace"``: the assistant's mask is the pseudo-label everywhere; ``"uncertain"``:
            pixels where the student's confidence reaches ``fusion_threshold`` keep the student's label with
            weight 1 and the assistant decides the others (it refines where the student is unsure).
        amp: mixed precision on CUDA (``torch.autocast`` and MONAI's gradient scaler), for the student, the
            teacher and the assistant's refinement alike; ignored on the CPU.
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
        assistant_schedule: str = "constant",
        assistant_ramp_iterations: int = 200,
        assistant_update_every: int = 0,
        assistant_update_confidence: float = 0.95,
        pseudo_label_refresh: int = 0,
        assistant_fusion: str = "replace",
        fusion_threshold: float = 0.95,
        train_handlers: Sequence | None = None,
        amp: bool = False,
    ) -> None:
        amp = bool(amp) and torch.device(device).type == "cuda"
        super().__init__(
            device=device, max_epochs=max_epochs, data_loader=train_data_loader, epoch_length=epoch_length, decollate=False, amp=amp
        )
        if assistant_fusion not in ("replace", "uncertain"):
            raise ValueError(f"unknown assistant_fusion '{assistant_fusion}': use replace or uncertain")
        if assistant_schedule not in ("constant", "rampup", "rampdown"):
            raise ValueError(f"unknown assistant_schedule '{assistant_schedule}': use constant, rampup or rampdown")
        if method.uses_unlabeled and not getattr(train_data_loader.dataset, "unlabeled", True):
            raise DataError(
                f"The SSL method {type(method).__name__} needs unlabelled cases, but the labelled split covers every training case: "
                "label fewer cases (config id 'labeled') or use method 'supervised'."
            )
        self.network = network
        self.optimizer = optimizer
        self.method = method
        self.assistant = assistant
        self.assistant_weight = assistant_weight
        self.assistant_schedule = assistant_schedule
        self.assistant_ramp_iterations = assistant_ramp_iterations
        self.assistant_update_every = assistant_update_every
        self.assistant_update_confidence = assistant_update_confidence
        self._last_unlabeled: tuple | None = None
        self.pseudo_cache = PseudoLabelCache(pseudo_label_refresh) if pseudo_label_refresh else None
        self.assistant_fusion = assistant_fusion
        self.fusion_threshold = fusion_threshold
        method.setup(self)
        attach_handlers(self, train_handlers)

    def assistant_share(self) -> float:
        """The assistant's share ``r`` of the unlabelled loss at this iteration (0 without an assistant; under 1 % counts as 0)."""
        if self.assistant is None:
            return 0.0
        it, n = self.state.iteration, self.assistant_ramp_iterations
        share = {"constant": 1.0, "rampup": sigmoid_rampup(it, n), "rampdown": sigmoid_rampdown(it, n)}[self.assistant_schedule]
        return share if share >= 0.01 else 0.0

    def unlabeled_loss(self, own_loss: Callable[[], torch.Tensor], assistant_loss: Callable[[], torch.Tensor]) -> torch.Tensor:
        """The method's unlabelled loss handed over to the assistant's: ``weight * r * assistant_loss() + (1 - r) * own_loss()``
        with ``r`` = :meth:`assistant_share`; a part whose share is 0 is not computed (the assistant is not even asked)."""
        share = self.assistant_share()
        if share >= 1.0:
            return self.assistant_weight * assistant_loss()
        if share <= 0.0:
            return own_loss()
        return self.assistant_weight * share * assistant_loss() + (1.0 - share) * own_loss()

    def pseudo_targets(self, images: torch.Tensor, probs: torch.Tensor, batch: dict) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        """The assistant's targets (pseudo-labels and weights, the merged pseudo-label first) for unlabelled
        ``images`` given the student's ``probs``; None without an assistant."""
        if self.assistant is None:
            return None
        meta = {"slice_pos": batch.get("u_pos"), "text": batch.get("u_text")}
        self._last_unlabeled = (images, probs, meta)
        if self.pseudo_cache is not None and "u_theta" in batch:
            targets = [self.pseudo_cache.lookup(batch, self.state.iteration, lambda plain, rows: self._refine_plain(plain, rows, batch))]
        else:
            targets = self.assistant.targets(images, probs, meta)
        if self.assistant_fusion == "uncertain":
            conf, student = probs.max(1)
            sure = conf >= self.fusion_threshold
            targets = [(torch.where(sure, student, labels), torch.where(sure, torch.ones_like(weights), weights)) for labels, weights in targets]
        return targets

    def pseudo_labels(self, images: torch.Tensor, probs: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The assistant's pseudo-labels and weights (the first of :meth:`pseudo_targets`); None without an assistant."""
        targets = self.pseudo_targets(images, probs, batch)
        return None if targets is None else targets[0]

    @torch.no_grad()
    def _refine_plain(self, plain: torch.Tensor, rows: list[int], batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """The assistant's refinement of un-augmented images from the student's current prediction on them."""
        student = unwrap(self.network)  # outside the training pass: no DistributedDataParallel collective
        was_training = student.training
        student.eval()
        probs = torch.softmax(student(plain), 1)
        student.train(was_training)
        pos, texts = batch.get("u_pos"), batch.get("u_text")
        meta = {"slice_pos": pos[rows] if pos is not None else None, "text": [texts[r] for r in rows] if texts else None}
        return self.assistant(plain, probs, meta)

    def update_assistant(self) -> dict:
        """Dynamic interaction: the assistant learns from the student's confident prediction on the last unlabelled batch."""
        if self.assistant is None or not self.assistant_update_every or self._last_unlabeled is None:
            return {}
        if self.state.iteration % self.assistant_update_every:
            return {}
        images, probs, meta = self._last_unlabeled
        conf, labels = probs.max(1)
        return self.assistant.update(images, labels, (conf >= self.assistant_update_confidence).float(), meta)

    def _iteration(self, engine: "Stage2Trainer", batchdata: dict) -> dict:
        batch = {k: (v.to(engine.state.device) if torch.is_tensor(v) else v) for k, v in batchdata.items()}
        engine.network.train()
        learned = engine.assistant.train_step(batch) if engine.assistant is not None else {}
        engine.optimizer.zero_grad(set_to_none=True)
        with autocast(engine):
            terms = engine.method.losses(engine, batch)
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        loss = sum(terms.values())
        engine.fire_event(IterationEvents.LOSS_COMPLETED)
        backward_and_step(engine, loss)
        engine.method.after_step(engine)
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        updated = engine.update_assistant()
        engine._last_unlabeled = None
        return {"loss": loss.detach().item(), **{k: v.detach().item() for k, v in terms.items()}, **learned, **updated}
