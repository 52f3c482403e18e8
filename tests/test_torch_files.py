"""Files a user may be handed (template banks, training states) are read without running pickled code."""

import ast
from pathlib import Path

import pytest
import torch

from vessa.data.template_bank import TemplateBank
from vessa.errors import CheckpointError

PACKAGE = Path(__file__).resolve().parents[1] / "bundle" / "vessa"


class Payload:
    """Unpickling this object would write ``marker``: a stand-in for code a crafted file runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "ran"))


def test_bank_round_trip_reads_weights_only(tmp_path):
    bank = TemplateBank({0: "background", 1: "heart"}, image_size=16)
    bank.add(torch.rand(1, 16, 16), (torch.rand(16, 16) > 0.5).long(), "case0", 0.5)
    bank.save(tmp_path / "bank.pt")
    loaded = TemplateBank.load(tmp_path / "bank.pt")
    assert loaded.ids == ["case0"] and torch.equal(loaded.masks[0], bank.masks[0])


def test_bank_with_a_pickled_object_is_refused(tmp_path):
    marker = tmp_path / "marker.txt"
    path = tmp_path / "bank.pt"
    torch.save({"labels": {0: "background", 1: "heart"}, "image_size": 16, "position_weight": 0.0, "images": None, "masks": None, "ids": [Payload(marker)], "positions": []}, path)
    with pytest.raises(CheckpointError, match="Refused to load the template bank"):
        TemplateBank.load(path)
    assert not marker.exists()


def test_no_torch_load_in_the_package_unpickles():
    """Every torch.load in the package passes weights_only=True."""
    offenders = []
    for source in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" and getattr(node.func.value, "id", None) == "torch":
                flag = next((k.value for k in node.keywords if k.arg == "weights_only"), None)
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    offenders.append(f"{source.relative_to(PACKAGE)}:{node.lineno}")
    assert not offenders, offenders
