"""Per-image text prompts: each image's own sentence (MoNuSeg's "The nuclei are sparsely distributed.") joined
with the description of the class to segment.

The prompt of class k for image b is, in the sentence encoder's space, the unit vector of the sum of the class
text (the normalised mean of its descriptions) and the image's sentence: an equal-weight mean of the two
directions. An image without a sentence keeps the class text alone, as before per-image texts existed.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from vessa.networks.text_encoder import TextEncoder

__all__ = ["combine_prompts", "ImageTextPrompts"]


def combine_prompts(class_text: torch.Tensor, sentences: torch.Tensor, has_text: torch.Tensor) -> torch.Tensor:
    """(B, K, T) prompts from class texts (K, T) and sentence embeddings (B, T): ``normalize(class_k + sentence_b)``
    where ``has_text[b]``, else ``class_k``."""
    joined = F.normalize(class_text[None] + sentences[:, None], dim=-1)
    return torch.where(has_text[:, None, None], joined, class_text[None].expand_as(joined))


class ImageTextPrompts:
    """Sentence embeddings of the images' own texts and the per-image class prompts built from them.

    The sentence model (``model_path``; None: the packaged all-MiniLM-L6-v2) is loaded on first use, so a data
    set without texts never loads it; pass ``encoder`` to share one already loaded.
    """

    def __init__(self, model_path: str | None = None, encoder: TextEncoder | None = None) -> None:
        self.model_path = model_path
        self._encoder = encoder

    @property
    def encoder(self) -> TextEncoder:
        if self._encoder is None:
            self._encoder = TextEncoder(self.model_path)
        return self._encoder

    def sentences(self, texts: Sequence[str], device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) embeddings of ``texts`` (zeros for "") and (B,) which images have a text; at least one must."""
        has = torch.tensor([bool(t) for t in texts], device=device)
        present = self.encoder.encode_cached([t for t in texts if t]).to(device)
        out = torch.zeros(len(texts), present.shape[-1], device=device, dtype=present.dtype)
        out[has] = present
        return out, has

    def __call__(self, class_text: torch.Tensor, texts: Sequence[str] | None) -> torch.Tensor | None:
        """(B, K, T) prompts for a batch whose images have ``texts``; None when no image of the batch has one."""
        if not texts or not any(texts):
            return None
        sentences, has = self.sentences(list(texts), class_text.device)
        return combine_prompts(class_text, sentences.to(class_text.dtype), has)
