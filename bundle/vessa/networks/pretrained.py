"""Start an assistant from VESSA-base, the assistant pre-trained across data sets (configs/pretrain.json)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from vessa.training.checkpoints import labels_record, read_weights, weights_record
from vessa.errors import CheckpointError
from vessa.networks.text_encoder import TextEncoder, class_text_embeddings

logger = logging.getLogger(__name__)

HOW = "train it with `vessa pretrain` (configs/pretrain.json), point 'pretrained' at another file, or set 'pretrained' to none to train from scratch"
RUN_OWN = ("class_text", "text_aligned")  # each stage-1 run sets its own classes' texts and its text-alignment switch
SHIPPED = "models/vessa_base.pt"  # the base shipped in the repository, relative to the bundle root


def warm_start(network: torch.nn.Module, pretrained: str, bundle_root: str | Path) -> torch.nn.Module:
    """Stage 1's ``pretrained`` id: ``default`` loads the shipped VESSA-base (``<bundle_root>/models/vessa_base.pt``)
    when the bundle has it, else trains from scratch with a warning; ``none`` trains from scratch; any other value
    is a checkpoint path, which must exist."""
    if pretrained == "none":
        return network
    if pretrained == "default":
        path = Path(bundle_root) / SHIPPED
        if not path.is_file():
            logger.warning(f"No VESSA-base at {path}: the assistant trains from scratch (restore it with `git checkout {SHIPPED}`, or set pretrained none to say so).")
            return network
        return load_pretrained(network, path)
    return load_pretrained(network, pretrained)


def load_pretrained(network: torch.nn.Module, path: str | Path, state: dict | None = None) -> torch.nn.Module:
    """Load every weight of the VESSA-base checkpoint at ``path`` into ``network`` but the per-data-set class texts.
    A gray (1-channel) assistant takes the sum of the base's RGB stem filters: on a gray image it then answers as
    the base does on that image repeated to three channels, the way the base saw gray images. ``state``: the file's
    already read state dict."""
    state = dict(state if state is not None else read_weights(path, "VESSA-base checkpoint", HOW))
    own = network.state_dict()
    for key in RUN_OWN:
        state.pop(key, None)
    for key, value in state.items():
        target = own.get(key)
        if isinstance(target, torch.Tensor) and value.dim() == 4 and target.dim() == 4 and value.shape[1] == 3 and target.shape[1] == 1:
            state[key] = value.sum(1, keepdim=True)
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items() if isinstance(own.get(k), torch.Tensor) and v.shape != own[k].shape]
    missing, unexpected = network.load_state_dict(state, strict=False) if not wrong else ([], [])
    missing = [k for k in missing if k not in RUN_OWN]
    if wrong or missing or unexpected:
        detail = "; ".join(filter(None, [f"shapes differ: {wrong[:3]}" if wrong else "", f"missing: {missing[:3]}" if missing else "", f"unexpected: {unexpected[:3]}" if unexpected else ""]))
        raise CheckpointError(f"{path} does not fit this assistant (another image_size / embed_dim / encoder?): {detail}; {HOW}.")
    logger.info(f"Assistant initialised from VESSA-base {path}.")
    return network


def assistant_from_base(path: str | Path, labels: dict[int, str], in_channels: int, encoder: TextEncoder | None = None, text_model_path: str | None = None) -> torch.nn.Module:
    """A ready assistant for ``labels`` straight from VESSA-base, no training: one class channel per foreground label
    (the base's weights are shared by every class), each class's text token from stage 1's class prompt (by
    ``encoder``, a :class:`~vessa.networks.text_encoder.TextEncoder`; None: one loaded from ``text_model_path``)."""
    from vessa.networks.assistant import VessaAssistant

    state = read_weights(path, "VESSA-base checkpoint", HOW)
    record = weights_record(state) or {}
    model = VessaAssistant(
        num_classes=len([v for v in labels if int(v) != 0]),
        in_channels=in_channels,
        image_size=int(record.get("image_size", 128)),
        embed_dim=int(record.get("embed_dim", 128)),
        text_dim=int(record.get("text_dim", 384)),
    )
    load_pretrained(model, path, state)
    model.set_class_text(class_text_embeddings(encoder or TextEncoder(text_model_path), labels))
    model.set_made_for({**labels_record(labels, in_channels), "run": "zero_shot", "base": Path(path).name})
    return model.eval()
