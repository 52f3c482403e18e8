"""docs/results.md is written from the benchmark records: each generated section sits between markers that the
benchmarks' ``--write`` replaces, the rest of the file (commands, notes) stays as written."""

from __future__ import annotations

from pathlib import Path

RESULTS_MD = Path(__file__).resolve().parents[1] / "docs" / "results.md"


def write_section(name: str, markdown: str, path: Path = RESULTS_MD) -> Path:
    """Replace the text between ``<!-- begin NAME -->`` and ``<!-- end NAME -->`` in ``path`` (appended when absent)."""
    begin, end = f"<!-- begin {name} (generated: do not edit) -->", f"<!-- end {name} -->"
    text = path.read_text() if path.is_file() else ""
    block = f"{begin}\n{markdown.strip()}\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
    return path


def show_section(name: str, markdown: str, write: bool) -> None:
    """Print a benchmark's generated table and, with ``write``, put it into docs/results.md as section ``name``."""
    print(markdown)
    if write:
        write_section(name, markdown)
