"""Benchmark (not a test): VESSA-base on ACDC, the data set it was pre-trained without (vessa_base_no_acdc).

Assistant alone on the 40 ACDC test volumes (slice by slice, 5 templates of the labelled patients, Dice per
volume averaged), for ACDC-3 and ACDC-7:
  zero_shot  the base with no training, templates of the labelled patients;
  finetuned  stage 1 started from the base (``--pretrained``), the stage-1 budget of docs/results.md (1500 it);
  scratch    stage 1 from random weights, the same budget.
The annotation-team case: zero-shot with a bank of 1, 3 and 5 approved training volumes (cases), no training.
One JSON record per run in docs/results/vessa_base/<name>.json; ``--report --write`` redraws the pre-training
curves and writes the section of docs/results.md.

    python benchmarks/vessa_base.py --runs zero_shot            # minutes
    python benchmarks/vessa_base.py --runs finetuned scratch    # about 15 min each on 2 CPU cores
    python benchmarks/vessa_base.py --runs team
    python benchmarks/vessa_base.py --report --write
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
ACDC = REPO.parent / "shared" / "data" / "acdc"
OUT = REPO / "docs" / "results" / "vessa_base"
RUNS = REPO / "runs" / "bench" / "vessa_base"
BASE = REPO / "models" / "vessa_base_no_acdc.pt"
PRETRAIN_RUN = REPO / "runs" / "pretrain" / "vessa_base_no_acdc"
STAGE1_ITERATIONS = 1500
MODES = ("zero_shot", "finetuned", "scratch")


def machine() -> str:
    import torch

    return f"{platform.node()} {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, " + ("CUDA" if torch.cuda.is_available() else "CPU")


def evaluate(assistant_path: Path, labeled, eval_dir: Path, bank_path: Path | None = None) -> dict:
    """``evaluate_assistant.json`` on the ACDC test split; returns the assistant's per-class and mean Dice."""
    from monai.bundle import ConfigWorkflow

    overrides = {"dataset_dir": str(ACDC), "labeled": labeled, "assistant_path": str(assistant_path), "eval_dir": str(eval_dir), "eval_modes": ["assistant", "template"]}
    if bank_path is not None:
        overrides["bank_path"] = str(bank_path)
    wf = ConfigWorkflow(config_file=[str(REPO / "configs" / "stage1.json"), str(REPO / "configs" / "evaluate_assistant.json")], workflow_type="infer", run_id="evaluating", **overrides)
    wf.initialize()
    wf.run()
    report = json.loads((eval_dir / "assistant_test.json").read_text())
    return {m: {"per_class": r["per_class"], "mean": {"dice": r["mean"]}} for m, r in report.items()}


def train_stage1(name: str, labeled, pretrained: str) -> tuple[Path, Path, float]:
    """Stage 1 on ACDC (resumable); returns the assistant, its bank and the training time of this call."""
    from monai.bundle import ConfigWorkflow

    run_dir, ckpt_dir = RUNS / name / "stage1", RUNS / name / "models"
    overrides = {
        "dataset_dir": str(ACDC), "labeled": labeled, "iterations": STAGE1_ITERATIONS, "epoch_length": 100, "val_interval": 2,
        "run_dir": str(run_dir), "ckpt_dir": str(ckpt_dir), "pretrained": pretrained, "train#handlers#4#_disabled_": True,
    }
    start = time.time()
    wf = ConfigWorkflow(config_file=str(REPO / "configs" / "stage1.json"), workflow_type="train", run_id="training", **overrides)
    wf.initialize()
    wf.run()
    wf.finalize()
    return ckpt_dir / "assistant.pt", ckpt_dir / "bank.pt", time.time() - start


def run(mode: str, labeled: str, base: Path) -> dict:
    """One record: ``mode`` (zero_shot / finetuned / scratch / team) with ``labeled`` patients (team: cases)."""
    name = f"acdc{labeled}_{mode}"
    train_s = 0.0
    if mode in ("zero_shot", "team"):
        assistant, bank, labeled_arg = base, None, (int(labeled) if mode == "team" else f"{labeled}")
    else:
        labeled_arg = labeled
        assistant, bank, train_s = train_stage1(name, labeled, str(base) if mode == "finetuned" else "none")
    start = time.time()
    test = evaluate(assistant, labeled_arg, RUNS / name / "eval", bank)
    record = {
        "name": name, "dataset": "acdc", "labeled": labeled_arg, "mode": "zero_shot" if mode == "team" else mode,
        "bank": "approved volumes" if mode == "team" else "labelled patients",
        "checkpoint": str(base.relative_to(REPO)) if mode != "scratch" else None,
        "stage1_iterations": STAGE1_ITERATIONS if mode in ("finetuned", "scratch") else 0,
        "train_seconds": round(train_s, 1), "eval_seconds": round(time.time() - start, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1), "machine": machine(),
        "test": test["assistant"], "template_copy": test["template"],
    }
    from vessa.engines.checkpoints import atomic_write_json

    atomic_write_json(record, OUT / f"{name}.json")
    print(f"{name}: mean Dice {100 * record['test']['mean']['dice']:.1f}")
    return record


def pretraining_curves(path: Path) -> Path | None:
    """Held-out Dice per data set against iteration, and the training loss, of the pre-training run."""
    curve_file = PRETRAIN_RUN / "heldout_curve.json"
    if not curve_file.is_file():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = json.loads(curve_file.read_text())
    sets = [k for k in curve[0] if k not in ("iteration", "epoch", "mean")]
    fig, (ax_loss, ax_dice) = plt.subplots(1, 2, figsize=(11, 4))
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        acc = EventAccumulator(str(PRETRAIN_RUN))
        acc.Reload()
        tag = "loss" if "loss" in acc.Tags()["scalars"] else acc.Tags()["scalars"][0]
        events = acc.Scalars(tag)
        ax_loss.plot([e.step for e in events], [e.value for e in events], lw=0.5)
        ax_loss.set_title(f"training {tag}")
    except Exception as err:  # TensorBoard logs are optional for the figure
        ax_loss.set_title(f"no loss log ({type(err).__name__})")
    for name in sets + ["mean"]:
        ax_dice.plot([p["iteration"] for p in curve], [100 * p[name] for p in curve], label=name, lw=2 if name == "mean" else 1)
    ax_dice.set(title="held-out Dice per data set", xlabel="iteration", ylabel="Dice (%)")
    ax_dice.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def report() -> str:
    rows = [json.loads(p.read_text()) for p in sorted(OUT.glob("*.json"))]
    lines = [
        "| ACDC labelled | bank | mode | RV | Myo | LV | mean | copying the template | stage-1 time | peak RSS |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["bank"], str(r["labeled"]), MODES.index(r["mode"]))):
        pc = " | ".join(f"{100 * v:.1f}" for v in r["test"]["per_class"].values())
        lines.append(
            f"| {r['labeled']} | {r['bank']} | {r['mode']} | {pc} | **{100 * r['test']['mean']['dice']:.1f}** | {100 * r['template_copy']['mean']['dice']:.1f} "
            f"| {r['train_seconds'] / 60:.1f} min | {r['peak_rss_mb'] / 1024:.2f} GB |"
        )
    figure = pretraining_curves(OUT / "pretraining.png")
    if figure is not None:
        lines += ["", f"![pre-training curves]({figure.relative_to(REPO / 'docs').as_posix()})"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="*", default=[], choices=[*MODES, "team"])
    parser.add_argument("--labeled", nargs="*", default=["3", "7"], help="labelled ACDC patients (team: cases in the bank, default 1 3 5)")
    parser.add_argument("--base", type=Path, default=BASE)
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--write", action="store_true", help="with --report: write the section of docs/results.md")
    args = parser.parse_args()
    for mode in args.runs:
        for labeled in (["1", "3", "5"] if mode == "team" and args.labeled == ["3", "7"] else args.labeled):
            run(mode, labeled, args.base)
    if args.report:
        from results_md import show_section

        show_section("vessa_base", report(), args.write)


if __name__ == "__main__":
    main()
