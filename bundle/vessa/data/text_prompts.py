"""Class descriptions (text prompts) for the vision-language parts: the user's own text first, then a JSON
file of descriptions per label name (default: ``text_prompts.json`` beside this module, with the ACDC, LA and
sample-data labels), and generic sentences for any other label."""

from __future__ import annotations

import json
from pathlib import Path

from vessa.errors import DataError

__all__ = ["GENERIC_TEMPLATES", "DEFAULT_PROMPTS_FILE", "class_descriptions"]

DEFAULT_PROMPTS_FILE = Path(__file__).with_name("text_prompts.json")

GENERIC_TEMPLATES = ("a medical image showing the {name}", "the {name} in a scan", "segmentation of the {name}")


def _as_list(value, where: str) -> list[str]:
    texts = [value] if isinstance(value, str) else list(value)
    if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise DataError(f"Text prompts for {where} must be a non-empty string or list of strings, got {value!r}.")
    return texts


def class_descriptions(labels: dict, prompts_file: str | Path | None = None, user_prompts: dict | None = None) -> list[list[str]]:
    """Descriptions of each foreground class, ordered by label value (background skipped).

    ``user_prompts`` ({label name or value: text or [texts]}) wins over ``prompts_file`` (JSON {label name:
    [texts]}; None: :data:`DEFAULT_PROMPTS_FILE`); a label in neither gets :data:`GENERIC_TEMPLATES`. A user
    prompt naming no label is an error.
    """
    path = Path(prompts_file) if prompts_file is not None else DEFAULT_PROMPTS_FILE
    if not path.is_file():
        raise DataError(f"Text prompts file not found: {path}. Point 'text_prompts_file' at a JSON of {{label name: [descriptions]}} or set it to null.")
    file_prompts = {str(k).lower(): v for k, v in json.loads(path.read_text()).items()}
    user = {str(k).lower(): v for k, v in (user_prompts or {}).items()}
    names = {str(value): str(name) for value, name in labels.items()}
    unknown = [k for k in user if k not in names and k not in {n.lower() for n in names.values()}]
    if unknown:
        raise DataError(f"Text prompts given for unknown labels {unknown}: the data set's labels are {names}.")
    out = []
    for value, name in sorted(names.items(), key=lambda kv: int(kv[0])):
        if int(value) == 0 or name.lower() == "background":
            continue
        key = name.lower()
        if key in user or value in user:
            out.append(_as_list(user.get(key, user.get(value)), f"label {name!r}"))
        elif key in file_prompts:
            out.append(_as_list(file_prompts[key], f"label {name!r} in {prompts_file}"))
        else:
            out.append([t.format(name=name.replace("_", " ")) for t in GENERIC_TEMPLATES])
    return out
