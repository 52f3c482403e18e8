"""Segmenting images with a trained assistant and its template bank (used by evaluation, stage 2 and the app)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vessa.data.template_bank import TemplateBank, resize_image, resize_label
from vessa.errors import CheckpointError
from vessa.networks.assistant import VessaAssistant, merge_classes


class AssistantPredictor:
    """Retrieves templates for an image, runs the assistant at its working size and maps the result back.

    Args:
        model: trained :class:`VessaAssistant`.
        bank: the template bank it was trained with (or one grown since).
        num_templates: exemplars retrieved per image.
    """

    def __init__(self, model: VessaAssistant, bank: TemplateBank, num_templates: int = 1, device: str | torch.device = "cpu", threshold: float = 0.5) -> None:
        self.model = model.to(device).eval()
        self.bank = bank
        self.num_templates = num_templates
        self.device = torch.device(device)
        self.threshold = threshold

    def _templates(self, image: torch.Tensor, slice_pos: float | None, exclude_id: str | None) -> tuple[list[int], torch.Tensor, torch.Tensor]:
        idx = self.bank.retrieve(image, self.num_templates, slice_pos, exclude_id)
        t_img, t_mask = self.bank.gather(idx)
        return idx, t_img[None].to(self.device), t_mask[None].to(self.device)

    @torch.no_grad()
    def prepare(self, image: np.ndarray | torch.Tensor, slice_pos: float | None = None, exclude_id: str | None = None) -> dict:
        """What :meth:`predict` needs of one (C, H, W) image before any prompt: the image at the working size,
        its retrieved templates and its embedding. Keep it to answer several prompts on the same image."""
        img = torch.as_tensor(np.asarray(image, dtype=np.float32))
        x = resize_image(img, self.bank.image_size)[None].to(self.device)
        idx, t_img, t_mask = self._templates(x[0], slice_pos, exclude_id)
        return {"x": x, "shape": tuple(img.shape[-2:]), "templates": idx, "t_img": t_img, "t_mask": t_mask, "features": self.model.encode(x)}

    @torch.no_grad()
    def predict(
        self,
        image: np.ndarray | torch.Tensor | None = None,
        slice_pos: float | None = None,
        exclude_id: str | None = None,
        coarse_label: np.ndarray | torch.Tensor | None = None,
        points: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        prepared: dict | None = None,
    ) -> dict:
        """Segment one (C, H, W) image in [0, 1] (or a :meth:`prepare` result of one).

        ``coarse_label`` is an optional (H, W) class-index map used as the coarse-mask prompt of every class.
        ``points`` (K, P, 2) are user clicks as (x, y) pixels of the image, ``point_labels`` (K, P) 1 foreground,
        0 background, -1 padding; ``boxes`` (K, 4) optional (x0, y0, x1, y1) pixels, NaN rows for none. A class
        with a foreground click is never judged absent.
        Returns ``label`` (H, W) long, ``probs`` (K, H, W), ``iou`` (K,) predicted IoU of the chosen masks,
        ``templates`` the bank indices used.
        """
        prep = prepared if prepared is not None else self.prepare(image, slice_pos, exclude_id)
        h, w = prep["shape"]
        size = self.bank.image_size
        coarse = None
        if coarse_label is not None:
            lab = resize_label(coarse_label, size)
            coarse = torch.stack([(lab == v) for v in self.bank.foreground]).float()[None].to(self.device)
        scale = torch.tensor([size / w, size / h])
        if points is not None:
            points = (points.float() * scale)[None].to(self.device)
            point_labels = point_labels[None].to(self.device)
        if boxes is not None:
            boxes = (boxes.float() * scale.repeat(2))[None].to(self.device)
        out = self.model(prep["x"], prep["t_img"], prep["t_mask"], coarse_mask=coarse, points=points, point_labels=point_labels, boxes=boxes, query_features=prep["features"])
        best = out["best"]
        if points is not None:
            clicked = (point_labels == 1).any(-1)  # (1, K)
            chosen = torch.gather(out["masks"], 2, out["iou"].argmax(-1)[:, :, None, None, None].expand(-1, -1, 1, *best.shape[-2:])).squeeze(2)
            best = torch.where(clicked[..., None, None], chosen, best)
        logits = F.interpolate(best, size=(h, w), mode="bilinear", align_corners=False)
        best_iou = out["iou"].max(-1).values[0]
        values = torch.tensor([0] + self.bank.foreground)
        label = values[merge_classes(logits, self.threshold)[0].cpu()]
        return {"label": label, "probs": torch.sigmoid(logits)[0].cpu(), "iou": best_iou.cpu(), "templates": prep["templates"]}

    def template_copy(self, image: np.ndarray | torch.Tensor, slice_pos: float | None = None, exclude_id: str | None = None) -> torch.Tensor:
        """The baseline: the label of the most similar exemplar, resized to the image. (H, W) long."""
        img = torch.as_tensor(np.asarray(image, dtype=np.float32))
        idx = self.bank.retrieve(resize_image(img, self.bank.image_size), 1, slice_pos, exclude_id)[0]
        mask = self.bank.masks[idx].float()[None, None]
        return F.interpolate(mask, size=tuple(img.shape[-2:]), mode="nearest")[0, 0].long()


    def predict_volume(self, volume: dict, mode: str = "assistant", coarse_labels: list | None = None) -> torch.Tensor:
        """Label map of a :func:`vessa.data.volumes.group_volumes` case, slice by slice: (H, W) or (H, W, D).

        ``mode``: "assistant" (optionally with one coarse label per slice in ``coarse_labels``) or
        "template" (copying the retrieved exemplar's mask: the floor).
        """
        if mode not in ("assistant", "template"):
            raise ValueError(f"unknown prediction mode '{mode}': use 'assistant' or 'template'")
        self.model.eval()
        preds = []
        for i, (image, pos) in enumerate(zip(volume["images"], volume["positions"])):
            if mode == "template":
                preds.append(self.template_copy(image, pos))
            else:
                preds.append(self.predict(image, pos, coarse_label=coarse_labels[i] if coarse_labels is not None else None)["label"])
        return preds[0] if len(preds) == 1 and np.ndim(volume.get("label", np.zeros((1, 1)))) == 2 else torch.stack(preds, dim=-1)

ASSISTANT_FIX = "train an assistant for these labels (stage 1 with its own --ckpt_dir, or stage 2 with a new --assistant_dir) or point at the assistant.pt that belongs to this bank.pt"


def bank_record(bank: TemplateBank) -> dict:
    """What an assistant must have been made for to be used with ``bank``: its labels and input channels."""
    from vessa.training.checkpoints import labels_record

    return labels_record(bank.labels, int(bank.images[0].shape[0]))


def evaluation_bank(assistant_path: str | Path, bank_path: str | Path, dataset_dir: str | Path, labeled, seed: int = 0, sample_kind: str | None = None, normalize: str = "slice") -> TemplateBank:
    """The template bank an evaluation uses: stage 1's ``bank_path`` for a trained assistant; for VESSA-base (no
    training) the labelled cases of the data set's split (``labeled``, ``seed``: the split rule of stage 1) at the
    base's working size."""
    from vessa.data.prepare import load_split
    from vessa.data.slices import load_slices
    from vessa.training.checkpoints import read_made_for

    record = (read_made_for(assistant_path) if Path(assistant_path).is_file() else None) or {}
    if record.get("run") != "pretrain":
        return TemplateBank.load(bank_path)
    datalist, split = load_split(dataset_dir, labeled, seed, None, sample_kind)
    return TemplateBank.from_slices(load_slices(split.labeled, datalist.label_values, normalize=normalize), datalist.labels, int(record.get("image_size", 128)))


def load_assistant(checkpoint: str | Path, bank: TemplateBank, device: str | torch.device = "cpu") -> VessaAssistant:
    """Build the assistant that fits ``bank`` and its stage-1 checkpoint (width and text size as saved) and load
    it; one trained for other labels or channels than the bank's is refused (:class:`vessa.errors.CheckpointError`)."""
    from vessa.training.checkpoints import load_weights, read_weights, weights_record

    how = "train stage 1 first (python -m monai.bundle run training --config_file configs/stage1.json) or set 'assistant_path' / --ckpt_dir."
    state = read_weights(checkpoint, "assistant checkpoint", how)
    if (weights_record(state) or {}).get("run") == "pretrain":  # VESSA-base itself: the bank's classes, no training
        from vessa.networks.pretrained import assistant_from_base

        return assistant_from_base(checkpoint, bank.labels, int(bank.images[0].shape[0])).to(device)
    if "class_text" not in state:
        raise CheckpointError(f"{checkpoint} is not an assistant checkpoint (no 'class_text' entry); point 'assistant_path' at the assistant.pt that stage 1 wrote.")
    model = VessaAssistant(
        num_classes=len(bank.foreground),
        in_channels=int(bank.images[0].shape[0]),
        image_size=bank.image_size,
        embed_dim=int((weights_record(state) or {}).get("embed_dim", 128)),
        text_dim=int(state["class_text"].shape[-1]),
    )
    return load_weights(model, checkpoint, device, expected=bank_record(bank), fix=ASSISTANT_FIX, state=state).eval()
