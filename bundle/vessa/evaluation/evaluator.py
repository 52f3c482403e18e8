"""Validation over whole volumes: the assistant (templates from the bank) or the student, slice by slice."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.engines import Evaluator

from vessa.data.template_bank import TemplateBank
from vessa.inference.predictor import AssistantPredictor
from vessa.evaluation.student import predict_volume_slicewise, predict_volume_sliding
from vessa.networks.assistant import VessaAssistant


def one_hot(label: torch.Tensor, values: list[int]) -> torch.Tensor:
    """(...spatial) label values -> (1, len(values), ...spatial) float one-hot, channel i for ``values[i]``."""
    index = torch.searchsorted(torch.tensor(values), label.long().contiguous())
    return F.one_hot(index, len(values)).movedim(-1, 0)[None].float()


class VolumeEvaluator(Evaluator):
    """Evaluator over volumes from :func:`vessa.data.volumes.group_volumes`, one per iteration.

    Subclasses implement :meth:`predict_volume`; the output ``pred`` and ``label`` are (1, K + 1, ...)
    one-hot volumes for MONAI's metric handlers.
    """

    def __init__(
        self,
        device: str | torch.device,
        val_data_loader,
        label_values: list[int],
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
        self.label_values = list(label_values)

    def predict_volume(self, volume: dict) -> torch.Tensor:
        """Label map (label values) of the shape of ``volume["label"]``."""
        raise NotImplementedError

    def run(self, global_epoch: int = 1) -> None:
        """Validate, unless there is nothing to validate on (a data set without a validation list)."""
        if len(self.data_loader) == 0:
            return
        super().run(global_epoch)

    def _iteration(self, engine: "VolumeEvaluator", volume: dict) -> dict:
        pred = self.predict_volume(volume)
        return {"pred": one_hot(pred, self.label_values), "label": one_hot(torch.as_tensor(volume["label"]), self.label_values), "id": volume["id"]}


class AssistantEvaluator(VolumeEvaluator):
    """The assistant segments each slice with templates retrieved from the bank; ``mode="template"``
    evaluates the floor of copying the retrieved template's mask instead."""

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
        super().__init__(device, val_data_loader, [0] + bank.foreground, key_val_metric, additional_metrics, val_handlers)
        if mode not in ("assistant", "template"):
            raise ValueError(f"unknown evaluation mode '{mode}': use 'assistant' or 'template'")
        self.network = network
        self.predictor = AssistantPredictor(network, bank, num_templates, device)
        self.mode = mode

    def predict_volume(self, volume: dict) -> torch.Tensor:
        return self.predictor.predict_volume(volume, self.mode)


class StudentEvaluator(VolumeEvaluator):
    """The student over each validation volume by the data set's protocol: ``mode="slicewise"`` resizes each
    slice to ``patch_size``, predicts and resizes back (SSL4MIS's ACDC); ``"sliding"`` runs a 3D sliding window
    of ``patch_size`` over ``volume["image"]`` (UA-MT's LA)."""

    def __init__(
        self,
        device: str | torch.device,
        val_data_loader,
        network: torch.nn.Module,
        label_values: list[int],
        patch_size: int | Sequence[int] = 256,
        mode: str = "slicewise",
        key_val_metric: dict | None = None,
        additional_metrics: dict | None = None,
        val_handlers: Sequence | None = None,
    ) -> None:
        super().__init__(device, val_data_loader, label_values, key_val_metric, additional_metrics, val_handlers)
        if mode not in ("slicewise", "sliding"):
            raise ValueError(f"unknown evaluation mode '{mode}': use 'slicewise' or 'sliding'")
        self.network = network
        self.patch_size = patch_size
        self.mode = mode

    def predict_volume(self, volume: dict) -> torch.Tensor:
        if self.mode == "sliding":
            index = predict_volume_sliding(self.network, volume["image"], self.patch_size, device=self.state.device)
        else:
            image = volume["images"][0] if len(volume["images"]) == 1 else np.stack(volume["images"], axis=-1)
            index = predict_volume_slicewise(self.network, image, self.patch_size, self.state.device)
        return torch.tensor(self.label_values)[torch.as_tensor(index).long()]
