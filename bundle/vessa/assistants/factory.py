"""Build the stage-2 assistant named in the config: vessa, sam2_generalist or none."""

from __future__ import annotations

from pathlib import Path

from vessa.assistants.base import Assistant

NAMES = ("none", "vessa", "sam2_generalist")


def build_assistant(name: str, device="cpu", vessa: dict | None = None, sam2_generalist: dict | None = None) -> Assistant | None:
    """The assistant called ``name`` with its settings (the config's ``assistant_args#<name>``)."""
    if name == "none":
        return None
    if name == "vessa":
        from vessa.assistants.vessa_assistant import VessaPseudoLabeler
        from vessa.data.template_bank import TemplateBank
        from vessa.engines.assistant_inference import load_assistant

        args = dict(vessa or {})
        bank = TemplateBank.load(Path(args["bank_path"]))
        model = load_assistant(args["assistant_path"], bank, args.get("embed_dim", 128), device)
        return VessaPseudoLabeler(model, bank, args.get("num_templates", 1), args.get("use_box", True))
    if name == "sam2_generalist":
        from vessa.assistants.sam2_generalist import Sam2Generalist

        return Sam2Generalist(device=device, **(sam2_generalist or {}))
    raise ValueError(f"unknown assistant '{name}': choose one of {NAMES} (config id 'assistant')")
