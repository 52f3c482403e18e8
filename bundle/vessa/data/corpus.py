"""The pre-training corpus of VESSA-base: the training cases of several Decathlon-style data sets, each held as a
template bank of its labelled slices at the assistant's working size (3D volumes slice by slice)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from vessa.data.datalist import load_datalist
from vessa.data.slices import load_slices
from vessa.data.template_bank import TemplateBank
from vessa.errors import DataError

logger = logging.getLogger(__name__)

PREPARE_FIX = "build it with `python ../shared/tools/prepare_data.py NAME MIRROR ../data/NAME` (../shared/data/README.md) or add its name to 'exclude'"


@dataclass
class CorpusSet:
    """One data set of the corpus: its training exemplars (``bank``) and its held-out cases (``heldout``)."""

    name: str
    weight: float
    bank: TemplateBank
    heldout: TemplateBank | None

    @property
    def classes(self) -> list[int]:
        """Foreground label values present in the bank."""
        return [v for v in self.bank.foreground if any(bool((m == v).any()) for m in self.bank.masks)]

    def with_class(self, value: int, bank: TemplateBank | None = None) -> list[int]:
        """Indices of the exemplars of ``bank`` (default: the training bank) that show class ``value``."""
        bank = bank or self.bank
        return [i for i, m in enumerate(bank.masks) if bool((m == value).any())]


def _bank(items: list[dict], labels: dict[int, str], image_size: int, desc: str) -> TemplateBank:
    """A bank of every slice of ``items`` that shows a structure, loaded case by case (a 3D set never sits in memory whole)."""
    bank = TemplateBank(labels, image_size)
    for item in tqdm(items, desc=desc, leave=False):
        for s in load_slices([item], sorted(labels), normalize="slice"):
            if (s["label"] > 0).any():
                bank.add(s["image"], s["label"], s["id"], s["slice_pos"])
    return bank


def heldout_cases(training: list[dict], validation: list[dict], fraction: float = 0.1) -> tuple[list[dict], list[dict]]:
    """(cases to train on, held-out cases): the data set's validation list where it has one, else the last
    ``fraction`` of its training cases by id (at least one). Test cases never enter either."""
    if validation:
        return training, validation
    ordered = sorted(training, key=lambda e: str(e.get("id", e["image"])))
    n = max(1, round(fraction * len(ordered))) if len(ordered) > 1 else 0
    return ordered[: len(ordered) - n], ordered[len(ordered) - n :]


def load_corpus(datasets: dict[str, dict], image_size: int, exclude: list[str] | None = None) -> list[CorpusSet]:
    """Load every data set of ``datasets`` ({name: {"dir": folder, "weight": w}}) not named in ``exclude``; an
    excluded data set is never opened. Only training (and validation) cases are read, never the test split."""
    exclude = set(exclude or [])
    unknown = sorted(exclude - set(datasets))
    if unknown:
        raise DataError(f"'exclude' names {unknown}, which are not in 'datasets' ({sorted(datasets)}); fix the name.")
    corpus = []
    for name, spec in datasets.items():
        if name in exclude:
            logger.info(f"Pre-training corpus: {name} excluded.")
            continue
        folder = Path(str(spec["dir"])).expanduser()
        if not (folder / "dataset.json").is_file():
            raise DataError(f"Pre-training data set {name!r}: no dataset.json in {folder}; {PREPARE_FIX}.")
        datalist = load_datalist(folder)
        train, held = heldout_cases(datalist.training, datalist.validation)
        bank = _bank(train, datalist.labels, image_size, f"{name}: training cases")
        if len(bank) == 0:
            raise DataError(f"Pre-training data set {name!r} has no labelled slice with a structure in its training cases; check its labels.")
        heldout = _bank(held, datalist.labels, image_size, f"{name}: held-out cases") if held else None
        corpus.append(CorpusSet(name, float(spec.get("weight", 1.0)), bank, heldout if heldout is not None and len(heldout) else None))
        logger.info(f"Pre-training corpus: {name}, {len(train)} cases ({len(bank)} slices with a structure), {len(held)} held out, classes {bank.class_names}.")
    if not corpus:
        raise DataError("The pre-training corpus is empty: every data set is excluded. Remove a name from 'exclude'.")
    return corpus
