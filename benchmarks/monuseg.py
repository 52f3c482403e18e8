"""Benchmark (not a test): DuSSS's own benchmark, MoNuSeg on the LViT split at 25 % and 50 % labels.

Every run trains by the LViT / DuSSS protocol (``configs/monuseg.json``: 224 x 224 RGB, batch 4, Adam 1e-3 with
cosine warm restarts, at most 2000 epochs with early stopping after 50 epochs without a better validation Dice,
model selection on the 6 validation images) and is scored on the 14 test images at 224 x 224 (Dice, mIoU). Each
run is its own process (``benchmarks/stage2.py --dataset monuseg --one RUN``); records go to
``docs/results/monuseg/<setting>_<run>.json``; a killed run resumes from its ``latest.pt``.

    python ../shared/tools/prepare_data.py monuseg MIRROR /data/monuseg       # once (../shared/data/README.md)
    python benchmarks/monuseg.py --data /data/monuseg                          # the main table, seeds 0 1 2
    python benchmarks/monuseg.py --data /data/monuseg --ablation               # DuSSS's parts, seed 0
    python benchmarks/monuseg.py --data /data/monuseg --labeled 0.25 --seeds 0 --runs mean_teacher+text_vlm
    python benchmarks/monuseg.py --report --write                              # the table in docs/results.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from stage2 import setting_name

HERE = Path(__file__).resolve().parent
RECORDS = HERE.parent / "docs" / "results" / "monuseg"
MAIN_RUNS = ("supervised+none", "mean_teacher+none", "unimatch+none", "mean_teacher+text_vlm", "unimatch+vessa", "unimatch+vessa+text")
ABLATION_RUNS = tuple(f"mean_teacher+text_vlm+{v}" for v in ("nosss", "nocontrast", "notextloss", "nopretrain", "classtext"))
# DuSSS (Pan et al., AAAI 2025) on MoNuSeg, as ../shared/data/README.md quotes it: Dice % by labelled fraction
# (the only mIoU quoted is U-Net's with 100 %: 68.46)
PUBLISHED = {
    "U-Net": {1.0: 78.66},
    "Mean Teacher": {0.25: 72.80, 0.5: 75.15},
    "LViT": {0.25: 75.69, 0.5: 76.57},
    "DuSSS": {0.25: 76.51, 0.5: 78.03},
}
NAMES = {
    "supervised+none": "supervised only",
    "mean_teacher+none": "Mean Teacher",
    "unimatch+none": "UniMatch",
    "mean_teacher+text_vlm": "Mean Teacher + text_vlm (our DuSSS)",
    "unimatch+vessa": "UniMatch + vessa",
    "unimatch+vessa+text": "UniMatch + vessa, text alignment",
    "mean_teacher+text_vlm+nosss": "our DuSSS without semantic-similarity supervision",
    "mean_teacher+text_vlm+nocontrast": "our DuSSS without the dual contrastive loss",
    "mean_teacher+text_vlm+notextloss": "our DuSSS without the text-guided loss",
    "mean_teacher+text_vlm+nopretrain": "our DuSSS without VLM pre-training",
    "mean_teacher+text_vlm+classtext": "our DuSSS with the class text only",
}


def run_name(r: dict) -> str:
    return "+".join(x for x in (r["method"], r["assistant"], r.get("variant", "")) if x)


def records() -> list[dict]:
    found = [json.loads(p.read_text()) for p in RECORDS.glob("*.json") if not p.name.endswith(("_stage1.json", "_stage1_text.json"))]
    return sorted(found, key=lambda r: (float(r["labeled"]), run_name(r), r["seed"]))


def cell(values: list[float]) -> str:
    """Mean and standard deviation (population) over seeds, in percent."""
    v = 100 * np.asarray(values)
    return f"{v.mean():.2f} +- {v.std():.2f}" if len(v) > 1 else f"{v.mean():.2f}"


def paired_with_supervised(runs: list[dict], supervised: list[dict]) -> str:
    """Test Dice minus supervised only's on the same split (a seed draws the labelled images), mean and per seed."""
    by_seed = {r["seed"]: r["test"]["mean"]["dice"] for r in supervised}
    diffs = [(r["seed"], 100 * (r["test"]["mean"]["dice"] - by_seed[r["seed"]])) for r in runs if r["seed"] in by_seed]
    if not diffs or runs[0]["method"] == "supervised":
        return ""
    mean = np.mean([d for _, d in diffs])
    return f"{mean:+.1f} ({', '.join(f's{seed} {d:+.1f}' for seed, d in diffs)})"


def unlabelled_dice(runs: list[dict]) -> str:
    """Benchmark-only diagnostics per seed: the student's (/ the assistant's) Dice on the hidden labels of the unlabelled images."""
    cells = []
    for r in runs:
        if r.get("pseudo_label_dice"):
            end = r["pseudo_label_dice"][-1]
            assistant = end.get("assistant_dice")
            cells.append(f"s{r['seed']} {100 * end['student_dice']:.1f}" + (f" / {100 * assistant:.1f}" if assistant is not None else ""))
    return ", ".join(cells)


def seed_figure(groups: dict[tuple[str, float], list[dict]]) -> Path:
    """Test Dice of every run, one point per seed, against the published figures: ``docs/results/monuseg/dice_by_seed.png``."""
    from vessa.evaluation.figures import plt, save_figure

    fractions = sorted({frac for _, frac in groups if frac < 1.0})
    fig, axes = plt.subplots(1, len(fractions), figsize=(6 * len(fractions), 4), squeeze=False, sharey=True)
    for ax, frac in zip(axes[0], fractions):
        names = [n for n in MAIN_RUNS + ABLATION_RUNS if (n, frac) in groups]
        for x, name in enumerate(names):
            for r in groups[(name, frac)]:
                ax.scatter(x, 100 * r["test"]["mean"]["dice"], color=f"C{r['seed']}", label=f"seed {r['seed']}", zorder=3)
            ax.hlines(100 * np.mean([r["test"]["mean"]["dice"] for r in groups[(name, frac)]]), x - 0.3, x + 0.3, color="k")
        for seed in sorted({r["seed"] for n in names for r in groups[(n, frac)]}):  # a seed is one split: join its runs
            xy = [(x, 100 * r["test"]["mean"]["dice"]) for x, n in enumerate(names) for r in groups[(n, frac)] if r["seed"] == seed]
            ax.plot(*zip(*xy), color=f"C{seed}", alpha=0.3, linewidth=1)
        ax.set_xlim(-0.5, len(names) - 0.5)
        for i, (method, by) in enumerate(PUBLISHED.items()):
            if frac in by:
                ax.axhline(by[frac], color=f"C{i + 5}", linestyle="--", linewidth=1, label=f"{method} (published)")
        ax.set_xticks(range(len(names)), [NAMES[n].replace(" (our DuSSS)", "\n(our DuSSS)") for n in names], rotation=30, ha="right", fontsize=8)
        ax.set_title(f"MoNuSeg, {100 * frac:.0f} % labelled: test Dice, mean (bar) and seeds")
        ax.set_ylabel("test Dice %")
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        ax.legend(unique.values(), unique.keys(), fontsize=7)
    return save_figure(fig, RECORDS / "dice_by_seed.png", dpi=110)


def report(write_figure: bool = False) -> str:
    """Our runs beside DuSSS's published table: Dice and mIoU mean +- std over the seeds, paired differences, diagnostics,
    epochs and time per run; with ``write_figure`` also the per-seed figure."""
    found = records()
    groups: dict[tuple[str, float], list[dict]] = {}
    for r in found:
        groups.setdefault((run_name(r), float(r["labeled"])), []).append(r)
    rows = [
        "| method | labelled | test Dice % | test mIoU % | seeds | paired with supervised only, Dice points (per seed) "
        "| student (/ assistant) on the unlabelled images at the end, Dice % per seed | iterations (early stop) | time per run | published Dice % (/ mIoU) |",
        "|---" * 10 + "|",
    ]
    for name in list(MAIN_RUNS) + list(ABLATION_RUNS):
        for frac in (0.25, 0.5, 1.0):
            runs = groups.get((name, frac))
            if not runs:
                continue
            published = ""
            if name == "supervised+none" and frac == 1.0:
                published = "U-Net 78.66 / 68.46"
            elif name == "mean_teacher+none":
                published = f"{PUBLISHED['Mean Teacher'][frac]:.2f}"
            elif name == "mean_teacher+text_vlm":
                published = f"DuSSS {PUBLISHED['DuSSS'][frac]:.2f}; LViT {PUBLISHED['LViT'][frac]:.2f}"
            its = ", ".join(str(r["iterations"]) for r in runs)
            minutes = np.mean([r["train_seconds"] for r in runs]) / 60
            rows.append(
                f"| {NAMES.get(name, name)} | {100 * frac:.0f} % | {cell([r['test']['mean']['dice'] for r in runs])} | "
                f"{cell([r['test']['mean']['jaccard'] for r in runs])} | {', '.join(str(r['seed']) for r in runs)} | "
                f"{paired_with_supervised(runs, groups.get(('supervised+none', frac), []))} | {unlabelled_dice(runs)} | {its} | {minutes:.0f} min | {published} |"
            )
    figure = ""
    if write_figure and groups:
        figure = f"\n\n![MoNuSeg test Dice per seed]({seed_figure(groups).relative_to(RECORDS.parents[1]).as_posix()})"
    machine = next((r["machine"] for r in found), "")
    published = ["| DuSSS's table (published) | 25 % Dice | 50 % Dice |", "|---|---|---|"]
    published += [f"| {name} | {by.get(0.25, '')} | {by.get(0.5, '')} |" for name, by in PUBLISHED.items() if name != "U-Net"]
    published.append(f"| U-Net, 100 % labelled | {PUBLISHED['U-Net'][1.0]} (mIoU 68.46) | |")
    return "\n".join(rows) + (f"\n\nMachine: {machine}." if machine else "") + figure + "\n\n" + "\n".join(published)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="the MoNuSeg folder built by ../shared/tools/prepare_data.py monuseg")
    parser.add_argument("--labeled", default="0.25,0.5", help="comma-separated labelled fractions; supervised-only also runs at 'all'")
    parser.add_argument("--seeds", default="", help="comma-separated seeds (default: 0,1,2; with --ablation: 0)")
    parser.add_argument("--runs", default="", help="comma-separated method+assistant[+variant] runs (default: the main table)")
    parser.add_argument("--ablation", action="store_true", help="DuSSS's parts, one at a time (seed 0 unless --seeds)")
    parser.add_argument("--stage1_iterations", type=int, default=1000, help="stage-1 iterations of the vessa runs' assistant")
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--write", action="store_true", help="with --report: write the table into docs/results.md")
    args = parser.parse_args()
    if args.report:
        from results_md import show_section

        show_section("monuseg", report(write_figure=args.write), args.write)
        return
    if not args.data or not (Path(args.data) / "dataset.json").is_file():
        sys.exit("--data must be the MoNuSeg folder with its dataset.json: build it with "
                 "python ../shared/tools/prepare_data.py monuseg MIRROR OUT (../shared/data/README.md)")
    runs = args.runs.split(",") if args.runs else list(ABLATION_RUNS if args.ablation else MAIN_RUNS)
    seeds = args.seeds.split(",") if args.seeds else (["0"] if args.ablation else ["0", "1", "2"])
    fractions = args.labeled.split(",")
    if "supervised+none" in runs and not args.runs:
        fractions.append("all")
    for frac in fractions:
        for seed in seeds if frac != "all" else seeds[:1]:
            base = [sys.executable, str(HERE / "stage2.py"), "--dataset", "monuseg", "--data", args.data, "--labeled", frac, "--seed", seed]
            todo = [r for r in runs if frac != "all" or r == "supervised+none"]
            for text in sorted({"text" in r.split("+")[2:] for r in todo if r.split("+")[1] == "vessa"}):
                subprocess.run(base + ["--stage1", "--stage1_iterations", str(args.stage1_iterations)] + (["--text"] if text else []), check=True)
            for run in todo:
                if (RECORDS / f"{setting_name('monuseg', frac, seed=int(seed))}_{run}.json").is_file():
                    continue  # done: one record per run
                if subprocess.run(base + ["--one", run]).returncode:
                    print(f"run {run} at {frac}, seed {seed} failed; going on with the others", file=sys.stderr)


if __name__ == "__main__":
    main()
