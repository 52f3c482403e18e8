"""What a network's weights were made for, carried inside its state dict (PyTorch's module extra state)."""

from __future__ import annotations

from torch import nn


class MadeFor(nn.Module):
    """A module whose state dict carries ``made_for``: the record of the data set, labels, input channels,
    labelled split and settings its weights were trained for (see :func:`vessa.training.checkpoints.made_for`).

    The record travels with the weights (key ``_extra_state``, readable with ``torch.load(weights_only=True)``),
    so any checkpoint of the module can be checked before it is used. Loading weights into a module that has
    no record of its own adopts the file's; a module being trained keeps the record of its own run, so a warm
    start never passes an old run's record on. Files from before records load with none.
    """

    made_for: dict | None = None

    def set_made_for(self, record: dict | None) -> None:
        """Record what this module's weights are being made for (saved with every state dict from now on)."""
        self.made_for = dict(record) if record else None

    def get_extra_state(self) -> dict:
        return {"made_for": self.made_for or {}}

    def set_extra_state(self, state: dict) -> None:
        if self.made_for is None:
            self.made_for = dict(state.get("made_for") or {}) or None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.setdefault(prefix + "_extra_state", {"made_for": {}})  # checkpoints from before records
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
