"""Validation of the assistant: each volume segmented slice by slice with templates from the bank."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.engines import Evaluator

from vessa.data.template_bank import TemplateBank
from vessa.engines.assistant_inference import AssistantPredictor
from vessa.networks.assistant import VessaAssistant


def one_hot(label: torch.Tensor, values: list[int]) -> torch.Tensor:
    """(...spatial) label values -> (1, len(values), ...spatial) float one-hot, channel i for ``values[i]``."""
    index = torch.searchsorted(torch.tensor(values), label.long().contiguous())
    return F.one_hot(index, len(values)).movedim(-1, 0)[None].float()


class AssistantEvaluator(Evaluator):
    """Evaluator over volumes from :func:`vessa.data.volumes.group_volumes` (one per iteration).

    Its output ``pred`` and ``label`` are (1, K + 1, ...) one-hot volumes for MONAI's metric handlers.
    ``mode`` selects what is evaluated: ``"assistant"`` or ``"template"`` (copying the retrieved mask).
    """

    def __init__(
        self,
        device: str | torch.device,
        val_data_loader,
        network: VessaAssistant,
        bank: TemplateBank,
        num_templates: int = 1,
        mode: str = "assistant",
        key_val_metric: dict | None = None,
        additional_metrics: dict | None = None,
        val_handlers: Sequence | None = None,
    ) -> None:
        super().__init__(
            device=device,
            val_data_loader=val_data_loader,
            key_val_metric=key_val_metric,
            additional_metrics=additional_metrics,
            val_handlers=val_handlers,
            decollate=False,
        )
        if mode not in ("assistant", "template"):
            raise ValueError(f"unknown evaluation mode '{mode}': use 'assistant' or 'template'")
        self.network = network
        self.predictor = AssistantPredictor(network, bank, num_templates, device)
        self.mode = mode

    def _iteration(self, engine: "AssistantEvaluator", volume: dict) -> dict:
        self.predictor.model.eval()
        preds = []
        for image, pos in zip(volume["images"], volume["positions"]):
            if self.mode == "template":
                preds.append(self.predictor.template_copy(image, pos))
            else:
                preds.append(self.predictor.predict(image, pos)["label"])
        pred = preds[0] if volume["label"].ndim == 2 else torch.stack(preds, dim=-1)
        values = [0] + self.predictor.bank.foreground
        return {"pred": one_hot(pred, values), "label": one_hot(torch.as_tensor(volume["label"]), values), "id": volume["id"]}


class StudentEvaluator(Evaluator):
    """Evaluator of a 2D student over volumes from :func:`vessa.data.volumes.group_volumes`: each slice
    resized to ``patch_size``, predicted, resized back (the SSL4MIS ACDC protocol); output as AssistantEvaluator's."""

    def __init__(
        self,
        device: str | torch.device,
        val_data_loader,
        network: torch.nn.Module,
        label_values: list[int],
        patch_size: int = 256,
        key_val_metric: dict | None = None,
        additional_metrics: dict | None = None,
        val_handlers: Sequence | None = None,
    ) -> None:
        super().__init__(
            device=device,
            val_data_loader=val_data_loader,
            key_val_metric=key_val_metric,
            additional_metrics=additional_metrics,
            val_handlers=val_handlers,
            decollate=False,
        )
        self.network = network
        self.label_values = list(label_values)
        self.patch_size = patch_size

    def _iteration(self, engine: "StudentEvaluator", volume: dict) -> dict:
        from vessa.engines.student_eval import predict_volume_slicewise

        image = volume["images"][0] if len(volume["images"]) == 1 else np.stack(volume["images"], axis=-1)
        index = predict_volume_slicewise(self.network, image, self.patch_size, engine.state.device)
        pred = torch.tensor(self.label_values)[torch.as_tensor(index).long()]
        return {"pred": one_hot(pred, self.label_values), "label": one_hot(torch.as_tensor(volume["label"]), self.label_values), "id": volume["id"]}
