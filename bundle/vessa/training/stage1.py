"""Stage 1: the assistant learns from (query, template) episodes of the labelled split."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from monai.engines import Trainer
from monai.engines.utils import IterationEvents
from torch.optim import Optimizer
from torch.utils.data import DataLoader

from vessa.training.amp import autocast, backward_and_step
from vessa.training.handlers import attach_handlers
from vessa.prompts import corrective_clicks, simulate_prompts
from vessa.losses.assistant_loss import AssistantLoss
from vessa.losses.contrastive import DualContrastiveLoss
from vessa.networks.assistant import VessaAssistant
from vessa.networks.image_text import ImageTextPrompts
from vessa.networks.text_encoder import TextEncoder


class Stage1Trainer(Trainer):
    """An ignite/MONAI trainer whose iteration is one batch of assistant episodes with simulated prompts.

    Args:
        network: the assistant.
        prompt_kwargs: probabilities of the simulated coarse-mask, click and box prompts
            (see :func:`vessa.prompts.simulate_prompts`).
        corrective_clicks: probability that a batch is trained as an annotator's click session (RITM / SAM
            style): rounds of (no-grad) prediction, each adding one click per class mask inside the largest error
            of the assistant's own previous prediction and handing that prediction back as the mask prompt; the
            loss is taken on the prediction from all of them, so the assistant learns what a click means.
        click_rounds: most rounds of a click session (1 to ``click_rounds`` drawn per batch).
        seed: seed of the prompt simulation.
        dual_loss: with an assistant built with ``text_alignment``, the DuSSS dual contrastive loss that
            replaces the cross-entropy alignment term (weighted by the loss function's ``align_weight``):
            query and template class regions (two views) against ``descriptions``.
        descriptions: (sentence embeddings (M, text_dim), class index (M,)) of the class descriptions.
        image_texts: where the queries carry their own sentence (episode ``text``), the text token is made from it
            joined with the class text (:mod:`vessa.networks.image_text`); None: the class text only.
        task_texts: the sentence encoder of episodes that name their own binary task (pre-training's ``task``):
            each episode's text token is then its task's embedding.
        amp: mixed precision on CUDA (``torch.autocast`` and MONAI's gradient scaler); ignored on the CPU.
        Other arguments as :class:`monai.engines.SupervisedTrainer`.
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: DataLoader,
        network: VessaAssistant,
        optimizer: Optimizer,
        loss_function: AssistantLoss,
        epoch_length: int | None = None,
        prompt_kwargs: dict | None = None,
        corrective_clicks: float = 0.0,
        click_rounds: int = 1,
        seed: int = 0,
        dual_loss: DualContrastiveLoss | None = None,
        descriptions: tuple[torch.Tensor, torch.Tensor] | None = None,
        image_texts: ImageTextPrompts | None = None,
        task_texts: TextEncoder | None = None,
        train_handlers: Sequence | None = None,
        key_train_metric: dict | None = None,
        postprocessing: Callable | None = None,
        amp: bool = False,
    ) -> None:
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            data_loader=train_data_loader,
            epoch_length=epoch_length,
            key_metric=key_train_metric,
            postprocessing=postprocessing,
            decollate=False,
            amp=bool(amp) and torch.device(device).type == "cuda",
        )
        self.network = network
        self.optimizer = optimizer
        self.loss_function = loss_function
        self.prompt_kwargs = prompt_kwargs or {}
        if bool(network.text_aligned) and (dual_loss is None or descriptions is None):
            raise ValueError("an assistant with text_alignment needs dual_loss and descriptions (config ids 'dual_loss', 'descriptions')")
        self.dual_loss = dual_loss
        self.descriptions = descriptions
        self.image_texts = image_texts
        self.task_texts = task_texts
        self.corrective_clicks = corrective_clicks
        self.click_rounds = max(1, int(click_rounds))
        self.generator = torch.Generator().manual_seed(seed)
        attach_handlers(self, train_handlers)

    @torch.no_grad()
    def _click_session(self, engine: "Stage1Trainer", batch: dict, prompts: dict) -> dict:
        """The prompts after 1 to ``click_rounds`` rounds of corrective clicks on the assistant's own predictions,
        the last prediction as the mask prompt."""
        engine.network.eval()
        masks = batch["label"]
        b, k = masks.shape[:2]
        truth = (masks > 0.5).flatten(0, 1).cpu()
        rounds = int(torch.randint(1, self.click_rounds + 1, (1,), generator=self.generator))
        for _ in range(rounds):
            with autocast(engine):
                previous = engine.network(batch["image"], batch["templates"], batch["template_masks"], **prompts)["best"].float()
            coords, labels = corrective_clicks((previous > 0).flatten(0, 1).cpu(), truth)
            coords, labels = coords.view(b, k, 1, 2).to(masks.device), labels.view(b, k, 1).to(masks.device)
            if prompts["points"] is not None:
                coords, labels = torch.cat([prompts["points"], coords], 2), torch.cat([prompts["point_labels"], labels], 2)
            prompts = {**prompts, "points": coords, "point_labels": labels, "coarse_mask": torch.sigmoid(previous)}
        return prompts

    def _dual_contrastive(self, network: VessaAssistant, out: dict, batch: dict) -> dict[str, torch.Tensor]:
        """Dual contrastive loss of the query's and the first template's class regions (two views) and the class descriptions."""
        features, classes = (t.to(out["query_embedding"].device) for t in self.descriptions)
        (q_mu, q_var, q_cls, _), (t_mu, t_var) = network.region_text_gaussians(out["query_embedding"], batch["label"], features)
        (r_mu, r_var, r_cls, _), _ = network.region_text_gaussians(out["template_embedding"], batch["template_masks"][:, 0], features)
        view = torch.cat([torch.zeros_like(q_cls), torch.ones_like(r_cls)])
        regions = (torch.cat([q_mu, r_mu]), torch.cat([q_var, r_var]), torch.cat([q_cls, r_cls]))
        return self.dual_loss(regions, (t_mu, t_var, classes), view_of=view)

    def _iteration(self, engine: "Stage1Trainer", batchdata: dict[str, torch.Tensor]) -> dict:
        device = engine.state.device
        texts, tasks = batchdata.get("text"), batchdata.get("task")
        batch = {k: v.to(device) for k, v in batchdata.items() if isinstance(v, torch.Tensor)}
        prompts = simulate_prompts(batch["label"].cpu(), self.generator, **self.prompt_kwargs)
        prompts = {k: (v.to(device) if v is not None else None) for k, v in prompts.items()}
        if self.image_texts is not None and engine.network.has_class_text:
            prompts["text_embeddings"] = self.image_texts(engine.network.class_text, texts)
        if self.task_texts is not None and tasks is not None:
            prompts["text_embeddings"] = self.task_texts.encode_cached(list(tasks)).to(device)[:, None]
        if self.corrective_clicks > 0 and torch.rand(1, generator=self.generator) < self.corrective_clicks:
            prompts = self._click_session(engine, batch, prompts)
        engine.network.train()
        engine.optimizer.zero_grad(set_to_none=True)
        with autocast(engine):
            out = engine.network(batch["image"], batch["templates"], batch["template_masks"], **prompts)
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            align = None
            if engine.network.has_class_text and engine.loss_function.align_weight > 0 and not engine.network.text_aligned:
                align = engine.network.alignment_logits(out["query_embedding"], batch["label"], engine.network.class_text)
            terms = engine.loss_function(out, batch["label"], align)
            if engine.network.text_aligned and engine.loss_function.align_weight > 0:
                dual = self._dual_contrastive(engine.network, out, batch)
                terms["loss"] = terms["loss"] + engine.loss_function.align_weight * dual["loss"]
                terms.update({"align": dual["loss"], **{f"align_{k}": v for k, v in dual.items() if k != "loss"}})
        engine.fire_event(IterationEvents.LOSS_COMPLETED)
        backward_and_step(engine, terms["loss"])
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return {name: value.detach().item() for name, value in terms.items()}
