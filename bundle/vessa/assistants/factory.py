"""Build the stage-2 assistant named in the config: vessa, sam2_generalist, base_generalist, text_vlm or none."""

from __future__ import annotations

from pathlib import Path

from vessa.assistants.base import Assistant

NAMES = ("none", "vessa", "sam2_generalist", "base_generalist", "text_vlm")


def build_assistant(
    name: str,
    device="cpu",
    vessa: dict | None = None,
    sam2_generalist: dict | None = None,
    base_generalist: dict | None = None,
    text_vlm: dict | None = None,
    slice_stride: int = 1,
) -> Assistant | None:
    """The assistant called ``name`` with its settings (the config's ``assistant_args#<name>``);
    ``slice_stride``: on 3D patches, refine every n-th slice only."""
    settings = {"vessa": vessa, "sam2_generalist": sam2_generalist, "base_generalist": base_generalist, "text_vlm": text_vlm}
    assistant = _build(name, device, settings.get(name))
    if assistant is not None:
        assistant.slice_stride = int(slice_stride)
    return assistant


def _build(name: str, device, args: dict | None) -> Assistant | None:
    if name == "none":
        return None
    if name == "vessa":
        from vessa.assistants.vessa_assistant import VessaPseudoLabeler
        from vessa.data.template_bank import TemplateBank
        from vessa.inference.predictor import load_assistant
        from vessa.networks.image_text import ImageTextPrompts

        args = dict(args or {})
        bank = TemplateBank.load(Path(args["bank_path"]))
        model = load_assistant(args["assistant_path"], bank, device)
        return VessaPseudoLabeler(
            model, bank, args.get("num_templates", 1), args.get("use_box", True), args.get("update_lr", 0.0), args.get("update_coverage", 0.9),
            image_texts=ImageTextPrompts(args.get("text_model_path")) if args.get("use_image_text", True) else None,
        )
    if name == "sam2_generalist":
        from vessa.assistants.sam2_generalist import Sam2Generalist

        return Sam2Generalist(device=device, **(args or {}))
    if name == "base_generalist":
        from vessa.assistants.base_generalist import BaseGeneralist

        return BaseGeneralist(device=device, **(args or {}))
    if name == "text_vlm":
        from vessa.assistants.text_vlm import TextVLMAssistant

        return TextVLMAssistant(device=device, **(args or {}))
    raise ValueError(f"unknown assistant '{name}': choose one of {NAMES} (config id 'assistant')")
