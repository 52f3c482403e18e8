"""The reference-guided segmentation assistant (VESSA stage 1).

Image encoder (shared by query and templates) -> feature matching (prototypes, dense similarity,
label transfer) -> structured prompts (points and box from the prior, prototype and text tokens,
dense prior and coarse-mask embedding) -> the prompt encoder and mask decoder of the ``sam2`` package
with multi-mask output, an IoU head and an object-presence head. One prompt set per foreground class.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from sam2.modeling.sam.mask_decoder import MaskDecoder
from sam2.modeling.sam.prompt_encoder import PromptEncoder
from sam2.modeling.sam.transformer import TwoWayTransformer
from torch import nn

from vessa.networks.click_maps import ClickEmbedding
from vessa.networks.light_encoder import LightEncoder
from vessa.networks.matching import cues_from_prior, matching_maps
from vessa.networks.records import MadeFor
from vessa.networks.text_vlm import region_gaussians

NO_OBJECT_LOGIT = -20.0


class VessaAssistant(MadeFor):
    """Reference-guided, text-aware promptable segmenter.

    Args:
        num_classes: number of foreground classes K (one prompt set each).
        in_channels: image channels (1 grayscale, 3 RGB).
        image_size: side of the square input the assistant works at.
        embed_dim: transformer / prompt width.
        text_dim: width of the class text embeddings (0 disables the text token).
        encoder: image encoder; default :class:`LightEncoder`. Any module returning a (B, embed_dim, h, w)
            tensor (or that tensor and stride-2/stride-4 high-resolution features) fits.
        num_points: positive points taken from the prior per class.
        decoder_depth, num_heads, mlp_dim: size of the SAM2 two-way transformer.
        num_multimask_outputs: candidate masks per prompt set.
        align_dim: width of the image-text alignment space.
        text_alignment: DuSSS-style alignment: class regions and texts are Gaussians (mean and variance
            heads) aligned by dual contrastive learning, and the text token is made from the aligned text
            embedding (learnt from the data) instead of the fixed sentence embedding. Stored in the weights.

    Its state dict carries what it was trained for (:class:`vessa.networks.records.MadeFor`).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 1,
        image_size: int = 128,
        embed_dim: int = 128,
        text_dim: int = 384,
        encoder: nn.Module | None = None,
        num_points: int = 2,
        decoder_depth: int = 2,
        num_heads: int = 4,
        mlp_dim: int = 512,
        num_multimask_outputs: int = 3,
        align_dim: int = 64,
        text_alignment: bool = False,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.image_size = image_size
        self.embed_dim = embed_dim
        self.text_dim = text_dim
        self.num_points = num_points
        self.encoder = encoder if encoder is not None else LightEncoder(in_channels, embed_dim)
        stride = getattr(self.encoder, "stride", 8)
        self.embed_hw = tuple(getattr(self.encoder, "embed_hw", (image_size // stride, image_size // stride)))
        self.high_res = bool(getattr(self.encoder, "provides_high_res", False))
        self.prompt_encoder = PromptEncoder(
            embed_dim=embed_dim,
            image_embedding_size=self.embed_hw,
            input_image_size=(image_size, image_size),
            mask_in_chans=16,
        )
        self.mask_decoder = MaskDecoder(
            transformer_dim=embed_dim,
            transformer=TwoWayTransformer(depth=decoder_depth, embedding_dim=embed_dim, num_heads=num_heads, mlp_dim=mlp_dim),
            num_multimask_outputs=num_multimask_outputs,
            iou_head_depth=3,
            iou_head_hidden_dim=embed_dim,
            use_high_res_features=self.high_res,
            iou_prediction_use_sigmoid=True,
            pred_obj_scores=True,
            pred_obj_scores_mlp=True,
        )
        self.prior_head = nn.Sequential(nn.Conv2d(4, 32, 3, padding=1), nn.GELU(), nn.Conv2d(32, 1, 1))
        self.prior_embed = nn.Conv2d(5, embed_dim, 1)
        self.proto_token = nn.Linear(embed_dim, embed_dim)
        self.text_token = nn.Linear(text_dim, embed_dim) if text_dim > 0 else None
        self.image_align = nn.Linear(embed_dim, align_dim)
        self.text_align = nn.Linear(text_dim, align_dim) if text_dim > 0 else None
        # variance heads of the Gaussian embeddings and the token of the aligned text (text_alignment); drawn
        # from a forked random stream so that runs without text alignment train as they did before these heads
        with torch.random.fork_rng(devices=[]):
            self.image_align_var = nn.Linear(embed_dim, align_dim)
            self.text_align_var = nn.Linear(text_dim, align_dim) if text_dim > 0 else None
            self.aligned_text_token = nn.Linear(align_dim, embed_dim) if text_dim > 0 else None
            # the user's clicks as dense maps (zero at first: assistants trained before answer as they did)
            self.click_embed = ClickEmbedding(embed_dim, self.prompt_encoder.mask_input_size, image_size)
        self.register_buffer("text_aligned", torch.tensor(bool(text_alignment) and text_dim > 0))
        self.logit_scale = nn.Parameter(torch.tensor(2.659))  # log(1 / 0.07), as CLIP
        # class text embeddings travel with the weights, so inference needs no text model
        self.register_buffer("class_text", torch.zeros(num_classes, max(text_dim, 1)))
        self.has_class_text = False

    def set_class_text(self, text_embeddings: torch.Tensor) -> None:
        """Store the (K, text_dim) class text embeddings used when ``forward`` gets none."""
        self.class_text.copy_(text_embeddings.detach())
        self.has_class_text = True

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self.has_class_text = bool(state_dict.get(prefix + "class_text", torch.zeros(1)).abs().sum() > 0)
        # checkpoints from before text alignment or dense clicks existed: keep the fresh heads (alignment off,
        # clicks embedded as zero)
        for name in ("image_align_var", "text_align_var", "aligned_text_token", "click_embed"):
            module = getattr(self, name)
            if module is not None and not any(key.startswith(f"{prefix}{name}.") for key in state_dict):
                state_dict.update({f"{prefix}{name}.{k}": v for k, v in module.state_dict().items()})
        state_dict.setdefault(prefix + "text_aligned", torch.tensor(False))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """Image embedding (B, D, h, w) and high-resolution features (or None)."""
        out = self.encoder(images)
        if isinstance(out, tuple):
            return out[0], out[1]
        return out, None

    def forward(
        self,
        query: torch.Tensor,
        templates: torch.Tensor,
        template_masks: torch.Tensor,
        text_embeddings: torch.Tensor | None = None,
        coarse_mask: torch.Tensor | None = None,
        points: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        query_features: tuple[torch.Tensor, list[torch.Tensor] | None] | None = None,
        template_features: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Segment every foreground class of ``query`` guided by its templates.

        Args:
            query: (B, C, S, S) images at ``image_size``, intensities in [0, 1].
            templates: (B, T, C, S, S) template images.
            template_masks: (B, T, K, S, S) binary template masks, one channel per foreground class.
            text_embeddings: (K, text_dim) class text embeddings, or (B, K, text_dim) per-image class prompts
                (:mod:`vessa.networks.image_text`: each image's own sentence joined with the class text).
            coarse_mask: (B, K, S, S) optional coarse mask prompt (probabilities in [0, 1]).
            points: (B, K, P, 2) optional clicks as (x, y) pixels; ``point_labels`` (B, K, P) with
                1 foreground, 0 background, -1 padding.
            boxes: (B, K, 4) optional boxes (x0, y0, x1, y1); NaN rows mean "no box" for that class.
            query_features: precomputed :meth:`encode` output of ``query`` (cached between clicks).
            template_features: precomputed (B, T, D, h, w) embeddings of the templates (a frozen assistant's bank).
        Returns:
            ``masks`` (B, K, M, S, S) logits of the candidate masks, ``iou`` (B, K, M) predicted IoU,
            ``object_logits`` (B, K) class presence, ``best`` (B, K, S, S) logits of the candidate with
            the highest predicted IoU (forced to background where the class is judged absent),
            ``prior`` (B, K, S, S) the matching prior logits, ``query_embedding`` (B, D, h, w).
        """
        b, t = templates.shape[:2]
        if text_embeddings is None and self.has_class_text:
            text_embeddings = self.class_text
        k = template_masks.shape[2]
        if k != self.num_classes:
            raise ValueError(f"template_masks has {k} class channels, the assistant was built for {self.num_classes}")
        q_emb, q_high = query_features if query_features is not None else self.encode(query)
        t_emb = template_features.flatten(0, 1) if template_features is not None else self.encode(templates.flatten(0, 1))[0]
        h, w = q_emb.shape[-2:]
        t_emb = t_emb.view(b, t, *t_emb.shape[1:])
        t_small = F.adaptive_avg_pool2d(template_masks.flatten(0, 1).float(), (h, w)).view(b, t, k, h, w)
        maps = matching_maps(q_emb, t_emb, t_small)

        stacked = torch.stack([maps["fg_sim"], maps["bg_sim"], maps["transfer"], maps["fg_sim"] - maps["bg_sim"]], 2)
        prior_logits = self.prior_head(stacked.flatten(0, 1)).view(b, k, h, w)
        prior = torch.sigmoid(prior_logits)

        # sparse prompts: cues from the prior, optional user clicks and box, prototype and text tokens
        coords, labels = cues_from_prior(prior.detach().flatten(0, 1), self.image_size, self.num_points)
        coords, labels = coords.view(b, k, -1, 2), labels.reshape(b, k, -1)
        if boxes is not None:
            has_box = ~torch.isnan(boxes).any(-1)  # (B, K)
            user_box = torch.nan_to_num(boxes).view(b, k, 2, 2)
            coords = coords.clone()
            coords[:, :, -2:] = torch.where(has_box[..., None, None], user_box, coords[:, :, -2:])
        if points is not None:
            coords = torch.cat([coords, points.float()], dim=2)
            labels = torch.cat([labels, point_labels.to(labels.dtype)], dim=2)
        sparse, _ = self.prompt_encoder(points=(coords.flatten(0, 1), labels.flatten(0, 1)), boxes=None, masks=None)
        extra = [self.proto_token(maps["fg_proto"]).flatten(0, 1).unsqueeze(1)]
        if self.text_token is not None and text_embeddings is not None:
            token = self.aligned_text_token(self.text_align(text_embeddings)) if self.text_aligned else self.text_token(text_embeddings)
            token = token if token.dim() == 3 else token.unsqueeze(0).expand(b, -1, -1)
            extra.append(token.flatten(0, 1).unsqueeze(1))
        sparse = torch.cat([sparse] + extra, dim=1)

        # dense prompt: coarse mask (or "no mask") plus the embedded prior maps
        if coarse_mask is not None:
            mask_in = F.interpolate(coarse_mask.flatten(0, 1).unsqueeze(1).float(), size=self.prompt_encoder.mask_input_size, mode="bilinear", align_corners=False)
            dense = self.prompt_encoder._embed_masks(mask_in * 2.0 - 1.0)
        else:
            dense = self.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(b * k, -1, h, w)
        dense = dense + self.prior_embed(torch.cat([stacked, prior_logits.unsqueeze(2)], 2).flatten(0, 1))
        if points is not None:
            dense = dense + self.click_embed(points.flatten(0, 1), point_labels.flatten(0, 1))

        high = None
        if self.high_res and q_high is not None:
            s0 = self.mask_decoder.conv_s0(q_high[0])
            s1 = self.mask_decoder.conv_s1(q_high[1])
            high = [s0.repeat_interleave(k, 0), s1.repeat_interleave(k, 0)]
        masks, iou, _, obj = self.mask_decoder(
            image_embeddings=q_emb.repeat_interleave(k, 0),
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
            repeat_image=False,
            high_res_features=high,
        )
        masks = F.interpolate(masks, size=query.shape[-2:], mode="bilinear", align_corners=False)
        masks = masks.view(b, k, -1, *query.shape[-2:])
        iou = iou.view(b, k, -1)
        obj = obj.view(b, k)
        best_idx = iou.argmax(-1)
        best = torch.gather(masks, 2, best_idx[:, :, None, None, None].expand(-1, -1, 1, *masks.shape[-2:])).squeeze(2)
        absent = (obj < 0) | ~maps["present"]
        best = torch.where(absent[..., None, None], torch.full_like(best, NO_OBJECT_LOGIT), best)
        return {
            "masks": masks,
            "iou": iou,
            "object_logits": obj,
            "best": best,
            "prior": F.interpolate(prior_logits, size=query.shape[-2:], mode="bilinear", align_corners=False),
            "query_embedding": q_emb,
            "template_embedding": t_emb[:, 0],
        }

    def alignment_logits(self, embedding: torch.Tensor, masks: torch.Tensor, text_embeddings: torch.Tensor) -> torch.Tensor:
        """Image-text alignment logits of class regions against class texts.

        Args:
            embedding: (B, D, h, w) query embedding; masks: (B, K, S, S) binary class masks;
            text_embeddings: (K, text_dim).
        Returns:
            (B, K, K) scaled cosine similarities of each class region to each class text.
        """
        if self.text_align is None:
            raise ValueError("the assistant was built with text_dim=0: no image-text alignment")
        small = F.adaptive_avg_pool2d(masks.float(), embedding.shape[-2:])
        region = torch.einsum("bdhw,bkhw->bkd", embedding, small) / (small.sum((-1, -2)).unsqueeze(-1) + 1e-6)
        img = F.normalize(self.image_align(region), dim=-1)
        txt = F.normalize(self.text_align(text_embeddings), dim=-1)
        return self.logit_scale.exp().clamp(max=100) * img @ txt.t()


    def region_text_gaussians(
        self, embeddings: torch.Tensor, masks: torch.Tensor, text_embeddings: torch.Tensor
    ) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """Gaussian embeddings in the alignment space of the class regions and of texts (text_alignment).

        embeddings (B, D, h, w); masks (B, K, S, S); text_embeddings (M, text_dim). Returns the regions'
        (mean, variance, class, image index) of every present class and the texts' (mean, variance).
        """
        if self.text_align is None:
            raise ValueError("the assistant was built with text_dim=0: no image-text alignment")
        mu = self.image_align(embeddings.movedim(1, -1)).movedim(-1, 1)
        var = F.softplus(self.image_align_var(embeddings.movedim(1, -1))).movedim(-1, 1)
        regions = region_gaussians(mu, var, masks)
        return regions, (self.text_align(text_embeddings), F.softplus(self.text_align_var(text_embeddings)))


def merge_classes(best_logits: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Merge per-class logits (B, K, ...) into a label map (B, ...): argmax, background below ``threshold``."""
    prob = torch.sigmoid(best_logits)
    score, idx = prob.max(dim=1)
    return torch.where(score >= threshold, idx + 1, torch.zeros_like(idx))
