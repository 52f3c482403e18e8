"""Benchmark (not a test): interactive segmentation measured as it is in the literature (RITM, SAM): a robot
annotator clicks until the structure is right.

For each test case and class (on a volume: the slice where that class is largest) the robot places each click
where the current mask is most wrong, as stage 1's click sessions do (:func:`vessa.engines.prompts.corrective_clicks`:
the interior-most pixel of the larger error, foreground where the structure was missed, background where the mask
spilled over), up to ``--max_clicks``. Methods, all answering through :func:`vessa.engines.click_response.click_answer`
as the MONAI Label task does:
  learnt  the assistant's own response (clicks as point prompts, its click-free mask as the coarse-mask prompt);
  paint   the interactive task as it was before click training: a disk per click edits that mask, the disks kept;
  disks   painting alone: a disk per click on an empty mask, no model.
NoC@85 / NoC@90: clicks until Dice reaches 0.85 / 0.90 (``max_clicks`` when never); Dice after each click.
One record per data set and assistant: docs/results/clicks/<name>.json; ``--report --write`` draws the curves
and writes the section of docs/results.md.

    python benchmarks/clicks.py --dataset_dir ../data/hc18 --assistant models/vessa_base.pt --labeled 3
    python benchmarks/clicks.py --dataset_dir ../shared/data/acdc --labeled 3 \\
        --assistant runs/bench/vessa_base/acdc3_finetuned/models/assistant.pt --bank runs/bench/vessa_base/acdc3_finetuned/models/bank.pt
    python benchmarks/clicks.py --report --write
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
OUT = REPO / "docs" / "results" / "clicks"
METHODS = ("learnt", "paint", "disks")
RADIUS = 0.04  # the painted disk, a fraction of the slice's shorter side (the label app's click_radius)


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(2.0 * np.logical_and(pred, truth).sum() / max(1, pred.sum() + truth.sum()))


def structures(volumes: list[dict], foreground: list[int], cases: int) -> list[dict]:
    """One (image, truth) pair per case and class present: the 2D image, or the volume's slice where the class is largest."""
    out = []
    for vol in volumes[:cases]:
        label = np.asarray(vol["label"])
        for k, value in enumerate(foreground):
            mask = label == value
            if not mask.any():
                continue
            z = int(mask.reshape(-1, mask.shape[-1]).sum(0).argmax()) if mask.ndim == 3 else None
            out.append({
                "case": vol["id"], "k": k, "slice": z, "image": vol["images"][z if z is not None else 0],
                "position": vol["positions"][z if z is not None else 0], "truth": mask[..., z] if z is not None else mask,
            })
    return out


def session(predictor, item: dict, method: str, max_clicks: int, prepared: dict, start: np.ndarray) -> list[float]:
    """Dice after each of up to ``max_clicks`` robot clicks (1.0 from the click that leaves no error on);
    ``start`` is the assistant's click-free mask of the structure."""
    from vessa.engines.click_response import apply_clicks, click_answer
    from vessa.engines.prompts import corrective_clicks

    truth = item["truth"]
    radius = RADIUS * min(truth.shape)
    mask, clicks, scores = np.zeros_like(truth), [], []
    for _ in range(max_clicks):
        coords, labels = corrective_clicks(torch.from_numpy(mask)[None], torch.from_numpy(truth)[None])
        if labels[0, 0] < 0:  # nothing left to correct
            scores += [1.0] * (max_clicks - len(scores))
            break
        clicks.append(((float(coords[0, 0, 0]), float(coords[0, 0, 1])), int(labels[0, 0])))
        if method == "disks":
            mask = apply_clicks(np.zeros_like(truth), clicks, radius)
        else:
            mask = click_answer(predictor, prepared, item["k"], clicks, start, mode=method, radius=RADIUS)
        scores.append(dice(mask, truth))
    return scores


def noc(scores: list[float], threshold: float, max_clicks: int) -> int:
    return next((i + 1 for i, s in enumerate(scores) if s >= threshold), max_clicks)


def summarise(sessions: list[list[float]], max_clicks: int) -> dict:
    curves = np.asarray(sessions)
    return {
        "noc85": float(np.mean([noc(s, 0.85, max_clicks) for s in sessions])),
        "noc90": float(np.mean([noc(s, 0.90, max_clicks) for s in sessions])),
        "dice_after": [round(float(v), 4) for v in curves.mean(0)],
        "structures": len(sessions),
    }


def load(dataset_dir: Path, assistant: Path, bank: Path | None, labeled) -> tuple:
    """The predictor and test volumes of ``evaluate_assistant.json`` (templates of ``labeled`` cases for VESSA-base)."""
    from monai.bundle import ConfigWorkflow

    overrides = {"dataset_dir": str(dataset_dir), "labeled": labeled, "assistant_path": str(assistant)}
    if bank is not None:
        overrides["bank_path"] = str(bank)
    wf = ConfigWorkflow(config_file=[str(REPO / "configs" / "stage1.json"), str(REPO / "configs" / "evaluate_assistant.json")], workflow_type="infer", run_id="evaluating", **overrides)
    wf.initialize()
    return wf.parser.get_parsed_content("predictor"), wf.parser.get_parsed_content("eval_volumes")


def run(dataset_dir: Path, assistant: Path, bank: Path | None, labeled, cases: int, max_clicks: int, methods: list[str]) -> dict:
    from tqdm import tqdm

    from vessa.engines.checkpoints import atomic_write_json
    from vessa_base import machine, split_key

    start = time.time()
    predictor, volumes = load(dataset_dir, assistant, bank, split_key(dataset_dir, str(labeled)))
    items = structures(volumes, predictor.bank.foreground, cases)
    names = predictor.bank.class_names
    per_method: dict = {m: {n: [] for n in names} for m in methods}
    for item in tqdm(items, desc=f"{dataset_dir.name}: click sessions"):
        prepared = predictor.prepare(item["image"], item["position"] if item["slice"] is not None else None)
        click_free = predictor.predict(prepared=prepared)["probs"][item["k"]].numpy() > predictor.threshold
        for method in methods:
            per_method[method][names[item["k"]]].append(session(predictor, item, method, max_clicks, prepared, click_free))
    record = {
        "name": f"{dataset_dir.name}_{assistant.stem if assistant.stem != 'assistant' else assistant.parent.parent.name}",
        "dataset": dataset_dir.name, "assistant": str(assistant.resolve().relative_to(REPO)) if assistant.resolve().is_relative_to(REPO) else str(assistant),
        "labeled": labeled, "cases": min(cases, len(volumes)), "max_clicks": max_clicks, "robot": "vessa.engines.prompts.corrective_clicks",
        "machine": machine(), "seconds": 0.0, "methods": {},
    }
    for method, by_class in per_method.items():
        every = [s for rows in by_class.values() for s in rows]
        record["methods"][method] = {**summarise(every, max_clicks), "per_class": {n: summarise(rows, max_clicks) for n, rows in by_class.items() if rows}}
    record["seconds"] = round(time.time() - start, 1)
    atomic_write_json(record, OUT / f"{record['name']}.json")
    for method, r in record["methods"].items():
        after = ", ".join(f"{n}: {100 * r['dice_after'][n - 1]:.1f}" for n in (1, 3, 5, max_clicks) if n <= max_clicks)
        print(f"{record['name']} {method}: NoC@85 {r['noc85']:.2f}, NoC@90 {r['noc90']:.2f}, Dice after clicks {after}")
    return record


def curves_figure(records: list[dict], path: Path) -> Path:
    """Mean Dice against click count, one panel per record, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(records), figsize=(4 * len(records), 3.4), squeeze=False)
    for ax, r in zip(axes[0], records):
        for method, m in r["methods"].items():
            ax.plot(range(1, len(m["dice_after"]) + 1), [100 * v for v in m["dice_after"]], marker=".", label=method)
        ax.set(title=r["name"], xlabel="clicks", ylabel="Dice (%)", ylim=(0, 100))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def report() -> str:
    records = [json.loads(p.read_text()) for p in sorted(OUT.glob("*.json"))]
    if not records:
        return "No record yet."
    lines = [
        "| data set | assistant | structures | method | NoC@85 | NoC@90 | Dice after 1 | 3 | 5 | 20 clicks |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        for method, m in r["methods"].items():
            d = m["dice_after"]
            lines.append(
                f"| {r['dataset']} | `{r['assistant']}` ({r['labeled']} labelled) | {m['structures']} | {method} | **{m['noc85']:.2f}** | {m['noc90']:.2f} "
                f"| {100 * d[0]:.1f} | {100 * d[2]:.1f} | {100 * d[4]:.1f} | {100 * d[-1]:.1f} |"
            )
    figure = curves_figure(records, OUT / "clicks.png")
    return "\n".join(lines + ["", f"![Dice against clicks]({figure.relative_to(REPO / 'docs').as_posix()})"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_dir", type=Path)
    parser.add_argument("--assistant", type=Path, default=REPO / "models" / "vessa_base.pt")
    parser.add_argument("--bank", type=Path, help="the trained assistant's bank.pt (not needed for VESSA-base)")
    parser.add_argument("--labeled", default="3", help="labelled cases (VESSA-base: the templates' cases)")
    parser.add_argument("--cases", type=int, default=20, help="test cases (each gives one structure per class present)")
    parser.add_argument("--max_clicks", type=int, default=20)
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=METHODS)
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--write", action="store_true", help="with --report: write the section of docs/results.md")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    if args.dataset_dir:
        run(args.dataset_dir.resolve(), args.assistant, args.bank, args.labeled, args.cases, args.max_clicks, args.methods)
    if args.report:
        from results_md import show_section

        show_section("clicks", report(), args.write)


if __name__ == "__main__":
    main()
