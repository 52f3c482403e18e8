"""SemiSAM+ generalist: one or several frozen SAM2 predictors prompted by the student's prediction.

For every unlabelled image and every foreground class the student predicts (argmax), prompts are
sampled from the student's mask (``generalist_prompts.prompts_from_mask``: interior-most point of the
largest component, uniform positives, a nearby negative; optionally the mask's box) and, by default,
the student's class probability is given as SAM2's dense mask prompt. Each frozen SAM2 model answers
each of ``draws`` prompt samples with one binary mask; their mean is the class probability ``p_k``,
merged as :class:`vessa.assistants.generalist.PromptedGeneralist` says.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vessa.assistants.generalist import PromptedGeneralist
from vessa.assistants.generalist_prompts import box_from_mask, prompts_from_mask
from vessa.errors import CheckpointError
from vessa.networks.sam2_encoder import DEFAULT_SAM2_CONFIG, build_sam2_model

__all__ = ["Sam2Generalist", "DEFAULT_SAM2_CONFIG"]

logger = logging.getLogger(__name__)

CONFIG_ID = "sam2_checkpoints"  # the config id users set (configs/stage2.json)
CONFIG_PATH = "assistant_args#sam2_generalist#checkpoints"
LOW_RES = 256  # SAM2's dense mask prompt size (4 x the 64 x 64 image embedding at 1024)
PROB_EPS = 1e-4  # student probabilities are clamped to [eps, 1-eps] before the logit: |logit| <= 9.2


def _as_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, (str, Path)):
        return [value]
    return list(value)


class Sam2Generalist(PromptedGeneralist):
    """SemiSAM+ pseudo-labels from frozen SAM2 image predictors prompted by the student.

    ``checkpoints`` and ``configs`` pair up (a single config is used for every checkpoint); one
    ``SAM2ImagePredictor`` is built per pair. Checkpoints are local paths only: ``None`` or a missing
    file is a ``CheckpointError``, unless ``allow_random_weights=True`` (tests/smoke runs; then
    ``checkpoints=None`` builds one random model per config).
    """

    def __init__(
        self,
        checkpoints: list[str] | str | None,
        configs: list[str] | str = DEFAULT_SAM2_CONFIG,
        num_points: int = 5,
        use_box: bool = False,
        use_mask_prompt: bool = True,
        draws: int = 1,
        min_area: int = 10,
        device: str | torch.device = "cpu",
        seed: int = 0,
        allow_random_weights: bool = False,
    ) -> None:
        ckpts, cfgs = _as_list(checkpoints), _as_list(configs)
        if not cfgs:
            raise ValueError("Sam2Generalist needs at least one SAM2 config (e.g. configs/sam2.1/sam2.1_hiera_t.yaml).")
        hint = (
            f"set `{CONFIG_ID}` in configs/stage2.json ({CONFIG_PATH}) to the local path(s) of SAM2 release "
            f"checkpoint(s) matching {cfgs} (large_files.yml lists them, with where to download them once); "
            "nothing is downloaded at run time"
        )
        if not ckpts:
            if not allow_random_weights:
                raise CheckpointError(f"Sam2Generalist (SemiSAM+) has no SAM2 checkpoint: {hint}.")
            ckpts = [None] * len(cfgs)
        if len(cfgs) == 1:
            cfgs = cfgs * len(ckpts)
        if len(cfgs) != len(ckpts):
            raise ValueError(f"Sam2Generalist got {len(ckpts)} checkpoints but {len(cfgs)} configs; give one config or one per checkpoint.")
        for ckpt, cfg in zip(ckpts, cfgs):  # fail fast, before any (slow) build
            if ckpt is None:
                if not allow_random_weights:
                    raise CheckpointError(f"Sam2Generalist (SemiSAM+) has no SAM2 checkpoint for {cfg}: {hint}.")
            elif not Path(ckpt).expanduser().is_file():
                raise CheckpointError(f"SAM2 checkpoint not found: {Path(ckpt).expanduser()} (config {cfg}); {hint}.")
        if any(c is None for c in ckpts):
            logger.warning(
                "!!! Sam2Generalist is running SAM2 with RANDOM WEIGHTS (allow_random_weights=True): its pseudo-labels "
                "are meaningless. Use this for tests and smoke runs only; %s. !!!",
                hint,
            )
        if int(draws) < 1 or int(num_points) < 1:
            raise ValueError(f"draws and num_points must be >= 1, got draws={draws}, num_points={num_points}.")

        from sam2.sam2_image_predictor import SAM2ImagePredictor

        self.device = torch.device(device)
        self.checkpoints, self.configs = ckpts, cfgs
        self.num_points, self.use_box, self.use_mask_prompt = int(num_points), bool(use_box), bool(use_mask_prompt)
        self.draws, self.min_area = int(draws), int(min_area)
        self.rng = np.random.default_rng(seed)
        self.models: list[torch.nn.Module] = []
        self.predictors = []
        for ckpt, cfg in zip(ckpts, cfgs):
            model = build_sam2_model(cfg, ckpt, device=self.device, allow_random_weights=allow_random_weights)
            model.requires_grad_(False)
            model.eval()
            self.models.append(model)
            self.predictors.append(SAM2ImagePredictor(model))

    @staticmethod
    def _to_hwc_uint8(image: torch.Tensor) -> np.ndarray:
        x = image.detach().float().clamp(0, 1).cpu()
        if x.shape[0] == 1:
            x = x.repeat(3, 1, 1)
        return (x * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()

    @staticmethod
    def _mask_prompt(prob: torch.Tensor) -> np.ndarray:
        """A (H, W) class probability -> SAM2's dense prompt: (1, 256, 256) clamped logits."""
        p = F.interpolate(prob[None, None].float().cpu(), size=(LOW_RES, LOW_RES), mode="bilinear", align_corners=False)
        p = p.clamp(PROB_EPS, 1 - PROB_EPS)
        return torch.logit(p)[0].numpy().astype(np.float32)

    def _answers(self, image: torch.Tensor, probs: torch.Tensor, student: np.ndarray, prompted: list[int]) -> torch.Tensor:
        """Binary SAM2 masks (P, S, H, W) for the prompted classes; S = models x draws, ordered (model, draw)."""
        rgb = self._to_hwc_uint8(image)
        dense = {k: self._mask_prompt(probs[k]) for k in prompted} if self.use_mask_prompt else {}
        boxes = {k: box_from_mask(student == k) for k in prompted} if self.use_box else {}
        out = {k: [] for k in prompted}
        for predictor in self.predictors:
            predictor.set_image(rgb)  # one embedding per image per model
            for k in prompted:
                mask = student == k
                for _ in range(self.draws):
                    coords, point_labels = prompts_from_mask(mask, self.num_points, rng=self.rng)
                    masks, _, _ = predictor.predict(
                        point_coords=coords,
                        point_labels=point_labels,
                        box=boxes.get(k),
                        mask_input=dense.get(k),
                        multimask_output=False,
                    )
                    out[k].append(torch.from_numpy(np.asarray(masks[0], dtype=np.float32)))
            predictor.reset_predictor()  # keep the embedding for this image only
        return torch.stack([torch.stack(out[k]) for k in prompted])
