"""Labelled / unlabelled splits of the training set (UniMatch-style explicit splits, saved with the run).

Unlabelled entries are copies of the training entries WITHOUT the ``"label"`` key: this is how
"labels of unlabelled cases are never read" is enforced during semi-supervised training.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from vessa.data.datalist import Datalist
from vessa.errors import DataError


def case_of(entry_id: str) -> str:
    """The case an entry belongs to: ACDC ``patient003_frame01`` -> ``patient003``; else the whole id."""
    i = entry_id.find("_frame")
    return entry_id[:i] if i > 0 else entry_id


@dataclass
class Split:
    labeled: list[dict]
    unlabeled: list[dict]
    _hidden_labels: dict[str, str] = field(default_factory=dict, repr=False)
    seed: int = 0
    rule: str = ""

    def hidden_label_paths(self) -> dict[str, str]:
        """Label paths of the unlabelled entries, by id.

        For benchmark diagnostics only (e.g. measuring pseudo-label quality); training must never use them.
        """
        return dict(self._hidden_labels)

    @property
    def labeled_ids(self) -> list[str]:
        return [e["id"] for e in self.labeled]

    @property
    def unlabeled_ids(self) -> list[str]:
        return [e["id"] for e in self.unlabeled]

    def to_json(self, path: str | Path) -> Path:
        """Write ``{"labeled": [ids], "unlabeled": [ids], "seed": ..., "rule": ...}`` atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"labeled": self.labeled_ids, "unlabeled": self.unlabeled_ids, "seed": self.seed, "rule": self.rule}
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(payload, f, indent=2)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return path

    @classmethod
    def from_json(cls, path: str | Path, datalist: Datalist) -> "Split":
        path = Path(path)
        if not path.is_file():
            raise DataError(f"Split file not found: {path}. Check the path, or create the split with make_split().")
        try:
            raw = json.loads(path.read_text())
            lab_ids, unl_ids = list(raw["labeled"]), list(raw.get("unlabeled", []))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DataError(
                f"Cannot read split file {path}: {e}. It must hold {{'labeled': [ids], 'unlabeled': [ids]}}."
            ) from e
        by_id = {e["id"]: e for e in datalist.training}
        unknown = [i for i in lab_ids + unl_ids if i not in by_id]
        if unknown:
            raise DataError(
                f"Split file {path} names ids not in the training list of {datalist.dataset_dir}: {unknown[:5]}. "
                "Use the split with the data set it was made for, or make a new split."
            )
        lab_set = set(lab_ids)
        return _build(datalist, lambda e: e["id"] in lab_set, raw.get("seed", 0), raw.get("rule", ""),
                      only=set(lab_ids) | set(unl_ids))


def _build(datalist: Datalist, is_labeled, seed: int, rule: str, only: set | None = None) -> Split:
    labeled, unlabeled, hidden = [], [], {}
    for entry in datalist.training:
        if only is not None and entry["id"] not in only:
            continue
        if is_labeled(entry):
            if not entry.get("label"):
                raise DataError(
                    f"Training entry {entry['id']} ({entry['image']}) is in the labelled split but has no "
                    "'label'; add its label path in dataset.json or leave it out of the labelled list."
                )
            labeled.append(dict(entry))
        else:
            copy = {k: v for k, v in entry.items() if k != "label"}
            if entry.get("label"):
                hidden[entry["id"]] = entry["label"]
            unlabeled.append(copy)
    if not labeled:
        raise DataError(
            f"The labelled split is empty (rule: {rule}); semi-supervised training needs at least one labelled "
            "case. Give labelled case ids that exist in the training list, a count >= 1 or a ratio in (0, 1]."
        )
    return Split(labeled, unlabeled, hidden, seed, rule)


def make_split(
    datalist: Datalist, labeled: None | str | int | float | list[str] = None, seed: int = 0
) -> Split:
    """Split ``datalist.training`` into labelled and unlabelled entries.

    ``labeled``: a list of case ids (an entry matches an id if equal or starting with ``id + "_"``);
    a key (str) into the data set's ``labeled_patients`` / ``labeled_cases`` lists; an int number of cases
    drawn with ``random.Random(seed)``; a float ratio of cases in (0, 1]; or None (all labelled).
    """
    if labeled is None:
        return _build(datalist, lambda e: True, seed, "all")

    if isinstance(labeled, str):
        for key in ("labeled_patients", "labeled_cases"):
            lists = datalist.extra.get(key)
            if isinstance(lists, dict) and labeled in lists:
                ids = [str(i) for i in lists[labeled]]
                split = make_split(datalist, ids, seed)
                split.rule = f"{key}[{labeled}]"
                return split
        available = {
            k: sorted(v) for k in ("labeled_patients", "labeled_cases") if isinstance(v := datalist.extra.get(k), dict)
        }
        raise DataError(
            f"Labelled split key {labeled!r} not found in dataset.json of {datalist.dataset_dir} "
            f"(available: {available or 'none'}). Use one of those keys, a number of cases, a ratio, or a list of ids."
        )

    if isinstance(labeled, (list, tuple)):
        ids = [str(i) for i in labeled]
        train_ids = [e["id"] for e in datalist.training]

        def matches(entry_id: str, wanted: str) -> bool:
            return entry_id == wanted or entry_id.startswith(wanted + "_")

        unknown = [w for w in ids if not any(matches(t, w) for t in train_ids)]
        if unknown:
            raise DataError(
                f"Labelled ids {unknown[:5]} match no training entry of {datalist.dataset_dir} "
                f"(ids look like {train_ids[:3]}). Check the ids against the training list in dataset.json."
            )
        wanted = set(ids)
        return _build(
            datalist, lambda e: any(matches(e["id"], w) for w in wanted), seed, f"ids:{','.join(ids)}"
        )

    if isinstance(labeled, bool) or not isinstance(labeled, (int, float)):
        raise DataError(
            f"Unsupported labelled split {labeled!r}; give None, a list of ids, a split key (str), "
            "a number of cases (int) or a ratio (float in (0, 1])."
        )

    cases = list(dict.fromkeys(case_of(e["id"]) for e in datalist.training))
    if isinstance(labeled, int):
        if labeled < 1:
            raise DataError(
                f"The labelled split is empty (count {labeled}); give a number of labelled cases >= 1."
            )
        if labeled > len(cases):
            raise DataError(
                f"Asked for {labeled} labelled cases but the training list has only {len(cases)}; "
                "give a smaller number or None for fully supervised training."
            )
        n, rule = labeled, f"count:{labeled}"
    else:
        if not 0 < labeled <= 1:
            raise DataError(f"Labelled ratio {labeled} is outside (0, 1]; give e.g. 0.1 for 10 % of the cases.")
        n, rule = max(1, int(round(labeled * len(cases)))), f"ratio:{labeled}"
    chosen = set(random.Random(seed).sample(sorted(cases), n))
    return _build(datalist, lambda e: case_of(e["id"]) in chosen, seed, rule)
