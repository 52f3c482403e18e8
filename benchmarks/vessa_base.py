"""Benchmark (not a test): VESSA-base, the assistant pre-trained across data sets (configs/pretrain.json).

Assistant alone on the test split of a data set (slice by slice, 5 templates of the labelled cases, Dice per
case averaged), by default ACDC-3 and ACDC-7 from ``vessa_base_no_acdc`` (the base that never saw ACDC):
  zero_shot  the base with no training, templates of the labelled cases;
  finetuned  stage 1 started from the base (``--pretrained``), the stage-1 budget of docs/results.md (1500 it);
  scratch    stage 1 from random weights, the same budget.
The annotation-team case: zero-shot with a bank of 1, 3 and 5 approved training volumes (cases), no training.
``--dataset_dir`` scores another data set (a pre-training set's test split, never seen in pre-training).
``--pretrain_record NAME`` keeps the held-out curve, loss and time of ``runs/pretrain/NAME`` as
docs/results/vessa_base/pretrain_NAME.json (runs/ is not committed).
One JSON record per run in docs/results/vessa_base/<name>.json; ``--report --write`` draws the pre-training
curves and writes the section of docs/results.md.

    python benchmarks/vessa_base.py --runs zero_shot            # minutes
    python benchmarks/vessa_base.py --runs finetuned scratch    # about 15 min each on 2 CPU cores
    python benchmarks/vessa_base.py --runs team
    python benchmarks/vessa_base.py --runs zero_shot --base models/vessa_base.pt --dataset_dir ../data/hc18 --labeled 3
    python benchmarks/vessa_base.py --pretrain_record vessa_base
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
PRETRAIN_RUNS = REPO / "runs" / "pretrain"
STAGE1_ITERATIONS = 1500
MODES = ("zero_shot", "finetuned", "scratch")


def machine() -> str:
    import torch

    return f"{platform.node()} {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, " + ("CUDA" if torch.cuda.is_available() else "CPU")


def evaluate(dataset_dir: Path, assistant_path: Path, labeled, eval_dir: Path, bank_path: Path | None = None) -> dict:
    """``evaluate_assistant.json`` on the test split of ``dataset_dir``; returns the assistant's per-class and mean Dice."""
    from monai.bundle import ConfigWorkflow

    overrides = {"dataset_dir": str(dataset_dir), "labeled": labeled, "assistant_path": str(assistant_path), "eval_dir": str(eval_dir), "eval_modes": ["assistant", "template"]}
    if bank_path is not None:
        overrides["bank_path"] = str(bank_path)
    wf = ConfigWorkflow(config_file=[str(REPO / "configs" / "stage1.json"), str(REPO / "configs" / "evaluate_assistant.json")], workflow_type="infer", run_id="evaluating", **overrides)
    wf.initialize()
    wf.run()
    report = json.loads((eval_dir / "assistant_test.json").read_text())
    return {m: {"per_class": r["per_class"], "mean": {"dice": r["mean"]}} for m, r in report.items()}


def train_stage1(dataset_dir: Path, name: str, labeled, pretrained: str, runs: Path = RUNS, **settings) -> tuple[Path, Path, float]:
    """Stage 1 on ``dataset_dir`` (resumable) into ``runs/<name>``, ``settings`` overriding stage1.json's; returns
    the assistant, its bank and the training time of this call."""
    from vessa.training.stage1_runner import run_stage1

    overrides = {
        "dataset_dir": str(dataset_dir), "labeled": labeled, "iterations": STAGE1_ITERATIONS, "epoch_length": 100, "val_interval": 2,
        "run_dir": str(runs / name / "stage1"), "pretrained": pretrained, "train#handlers#4#_disabled_": True, **settings,
    }
    start = time.time()
    assistant, bank = run_stage1(runs / name / "models", **overrides)
    return assistant, bank, time.time() - start


def split_key(dataset_dir: Path, labeled: str) -> str | int:
    """The data set's own labelled split of that name (``labeled_patients`` / ``labeled_cases``), else a count of cases."""
    spec = json.loads((dataset_dir / "dataset.json").read_text())
    named = {**spec.get("labeled_patients", {}), **spec.get("labeled_cases", {})}
    return labeled if labeled in named else int(labeled)


def run(mode: str, labeled: str, base: Path, dataset_dir: Path) -> dict:
    """One record: ``mode`` (zero_shot / finetuned / scratch / team) with ``labeled`` cases of ``dataset_dir``."""
    dataset = dataset_dir.name
    name = f"{dataset}{labeled}_{mode}" + ("" if base == BASE else f"_{base.stem}")
    train_s = 0.0
    labeled_arg = int(labeled) if mode == "team" else split_key(dataset_dir, labeled)
    if mode in ("zero_shot", "team"):
        assistant, bank = base, None
    else:
        assistant, bank, train_s = train_stage1(dataset_dir, name, labeled_arg, str(base) if mode == "finetuned" else "none")
    start = time.time()
    test = evaluate(dataset_dir, assistant, labeled_arg, RUNS / name / "eval", bank)
    record = {
        "name": name, "dataset": dataset, "labeled": labeled_arg, "mode": "zero_shot" if mode == "team" else mode,
        "bank": "approved volumes" if mode == "team" else "labelled patients" if dataset == "acdc" else "labelled cases",
        "checkpoint": str(base.relative_to(REPO)) if mode != "scratch" else None,
        "stage1_iterations": STAGE1_ITERATIONS if mode in ("finetuned", "scratch") else 0,
        "train_seconds": round(train_s, 1), "eval_seconds": round(time.time() - start, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1), "machine": machine(),
        "test": test["assistant"], "template_copy": test["template"],
    }
    from vessa.training.checkpoints import atomic_write_json

    atomic_write_json(record, OUT / f"{name}.json")
    print(f"{name}: mean Dice {100 * record['test']['mean']['dice']:.1f}")
    return record


def keep_pretraining(name: str) -> Path:
    """The held-out curve, training loss (every 50th iteration) and wall time of ``runs/pretrain/<name>`` as one record."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from vessa.training.checkpoints import atomic_write_json

    run_dir = PRETRAIN_RUNS / name
    curve = json.loads((run_dir / "heldout_curve.json").read_text())
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    tag = next((t for t in ("loss", "train_loss") if t in acc.Tags()["scalars"]), None)  # MONAI logs a dict output's keys as tags
    loss = acc.Scalars(tag) if tag else []
    gaps = [b.wall_time - a.wall_time for a, b in zip(loss, loss[1:])]
    best = max(curve, key=lambda p: p["mean"])
    record = {
        "name": name, "iterations": curve[-1]["iteration"], "machine": machine(),
        "train_seconds": round(sum(g for g in gaps if g < 600), 1),  # pauses between resumed runs left out
        "seconds_per_iteration": round(sum(g for g in gaps if g < 600) / max(1, loss[-1].step - loss[0].step), 3) if len(loss) > 1 else None,
        "best": best, "heldout_curve": curve, "train_loss": [[e.step, round(e.value, 4)] for e in loss if e.step % 50 == 0],
    }
    path = atomic_write_json(record, OUT / f"pretrain_{name}.json")
    print(f"{name}: {record['iterations']} iterations, best held-out mean Dice {100 * best['mean']:.1f} at iteration {best['iteration']}")
    return path


def pretraining_curves(record: dict, path: Path) -> Path:
    """Training loss and held-out Dice per data set against iteration, from a :func:`keep_pretraining` record."""
    from vessa.evaluation.figures import plt, save_figure

    curve = record["heldout_curve"]
    sets = [k for k in curve[0] if k not in ("iteration", "epoch", "mean")]
    fig, (ax_loss, ax_dice) = plt.subplots(1, 2, figsize=(11, 4))
    if record["train_loss"]:
        steps, values = zip(*record["train_loss"])
        ax_loss.plot(steps, values, lw=0.7)
    ax_loss.set(title=f"{record['name']}: training loss", xlabel="iteration")
    for name in sets + ["mean"]:
        ax_dice.plot([p["iteration"] for p in curve], [100 * p[name] for p in curve], label=name, lw=2 if name == "mean" else 1)
    ax_dice.set(title="held-out Dice per data set", xlabel="iteration", ylabel="Dice (%)")
    ax_dice.legend(fontsize=8)
    return save_figure(fig, path)


def pretraining_table(records: list[dict]) -> list[str]:
    sets = sorted({k for r in records for k in r["best"] if k not in ("iteration", "epoch", "mean")})
    lines = ["| base | iterations | time | s / it | best at | held-out mean | " + " | ".join(sets) + " |", "|---" * (6 + len(sets)) + "|"]
    for r in records:
        b = r["best"]
        cells = " | ".join(f"{100 * b[k]:.1f}" if k in b else "-" for k in sets)
        lines.append(f"| `{r['name']}` | {r['iterations']} | {r['train_seconds'] / 3600:.2f} h | {r['seconds_per_iteration']} | {b['iteration']} | **{100 * b['mean']:.1f}** | {cells} |")
    return lines


def report() -> str:
    rows = [json.loads(p.read_text()) for p in sorted(OUT.glob("*.json")) if not p.name.startswith("pretrain_")]
    pretrainings = [json.loads(p.read_text()) for p in sorted(OUT.glob("pretrain_*.json"))]
    lines = []
    if pretrainings:
        lines += ["Pre-training, held-out Dice (%) of the kept (best) checkpoint on 8 fixed episodes per data set:", "", *pretraining_table(pretrainings), ""]
        for record in pretrainings:
            figure = pretraining_curves(record, OUT / f"pretraining_{record['name']}.png")
            lines += [f"![pre-training curves of {record['name']}]({figure.relative_to(REPO / 'docs').as_posix()})", ""]
    acdc = [r for r in rows if r["dataset"] == "acdc"]
    if acdc:
        lines += [
            "| ACDC labelled | bank | mode | RV | Myo | LV | mean | copying the template | stage-1 time | peak RSS |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in sorted(acdc, key=lambda r: (r["bank"], str(r["labeled"]), MODES.index(r["mode"]))):
            pc = " | ".join(f"{100 * v:.1f}" for v in r["test"]["per_class"].values())
            lines.append(
                f"| {r['labeled']} | {r['bank']} | {r['mode']} | {pc} | **{100 * r['test']['mean']['dice']:.1f}** | {100 * r['template_copy']['mean']['dice']:.1f} "
                f"| {r['train_seconds'] / 60:.1f} min | {r['peak_rss_mb'] / 1024:.2f} GB |"
            )
        lines.append("")
    others = [r for r in rows if r["dataset"] != "acdc"]
    if others:
        lines += [
            "Test splits of the pre-training sets (never seen in pre-training), templates of N labelled training cases (split seed 0), no training:",
            "",
            "| data set | labelled | mode | checkpoint | Dice per class | mean | copying the template | eval time |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in sorted(others, key=lambda r: (r["dataset"], str(r["labeled"]), MODES.index(r["mode"]))):
            pc = ", ".join(f"{k} {100 * v:.1f}" for k, v in r["test"]["per_class"].items())
            lines.append(
                f"| {r['dataset']} | {r['labeled']} | {r['mode']} | `{r['checkpoint']}` | {pc} | **{100 * r['test']['mean']['dice']:.1f}** "
                f"| {100 * r['template_copy']['mean']['dice']:.1f} | {r['eval_seconds']:.0f} s |"
            )
    return "\n".join(lines).strip() or "No record yet."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="*", default=[], choices=[*MODES, "team"])
    parser.add_argument("--labeled", nargs="*", default=["3", "7"], help="labelled cases (team: cases in the bank, default 1 3 5)")
    parser.add_argument("--base", type=Path, default=BASE)
    parser.add_argument("--dataset_dir", type=Path, default=ACDC)
    parser.add_argument("--pretrain_record", nargs="*", default=[], help="names of runs/pretrain/<name> to keep as records")
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--write", action="store_true", help="with --report: write the section of docs/results.md")
    args = parser.parse_args()
    for name in args.pretrain_record:
        keep_pretraining(name)
    base, dataset_dir = args.base.resolve(), args.dataset_dir.resolve()
    for mode in args.runs:
        for labeled in (["1", "3", "5"] if mode == "team" and args.labeled == ["3", "7"] else args.labeled):
            run(mode, labeled, base, dataset_dir)
    if args.report:
        from results_md import show_section

        show_section("vessa_base", report(), args.write)


if __name__ == "__main__":
    main()
