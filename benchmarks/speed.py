"""Benchmark (not a test): seconds per stage-2 iteration of every method x assistant on ACDC, with where the time goes.

Each combination trains a few iterations on ACDC with 3 labelled patients in a process of its own (the
stage-1 assistant of the setting is trained once, short: only its cost matters here), after warm-up
iterations that are not counted. The phases come from the trainer's own events and from timers wrapped
around the teacher and the assistant: data (waiting for the batch), assistant (refining pseudo-labels),
teacher (Mean Teacher / UniMatch V2 forward), student (the rest of the forward and the losses), backward,
optimiser step; validation is one pass over the validation volumes. ``--tree`` measures another checkout
of the project (``git worktree add /tmp/before <commit>``) with the same script, so that a before / after
comparison comes from one run on one machine:

    python benchmarks/speed.py --tree /tmp/before --label before && python benchmarks/speed.py --label after
    python benchmarks/speed.py --report          # docs/results/speed.json -> the markdown table
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
SETTINGS = {"acdc": (["stage2.json"], "3"), "la": (["stage2.json", "stage2_3d.json"], "4")}  # configs and labelled split
OUT = REPO / "docs" / "results" / "speed.json"
RUNS = REPO / "runs" / "bench" / "speed"
COMBINATIONS = (
    "supervised+none",
    "mean_teacher+none",
    "unimatch+none",
    "unimatch_v2+none",
    "mean_teacher+vessa",
    "unimatch+vessa",
    "unimatch_v2+vessa",
    "mean_teacher+text_vlm",
    "mean_teacher+sam2_generalist",
)
PHASES = ("data", "assistant", "teacher", "student", "backward", "optimiser")


def _timed(obj, name: str, bucket: dict, key: str) -> None:
    """Wrap ``obj.name`` so that the seconds spent in it add up in ``bucket[key]``."""
    original = getattr(obj, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            bucket[key] += time.perf_counter() - start

    setattr(obj, name, wrapper)


def measure(tree: Path, combination: str, schedule: str, iterations: int, warmup: int, workers: int, batch: int, patch: int, dataset: str = "acdc") -> dict:
    """Train ``warmup + iterations`` iterations of one combination with the configs of ``tree``; the timings of the last ``iterations``."""
    sys.path.insert(0, str(tree / "bundle"))
    import torch
    from ignite.engine import Events
    from monai.bundle import ConfigWorkflow
    from monai.engines.utils import IterationEvents

    method, assistant = combination.split("+")
    names, labeled = SETTINGS[dataset]
    configs = [str(tree / "configs" / c) for c in names] + ([str(tree / "configs" / f"schedule_{schedule}.json")] if schedule else [])
    root = RUNS / tree.name / dataset / combination
    overrides = {
        "bundle_root": str(root), "dataset_dir": str(DATA / dataset), "labeled": labeled, "method": method, "assistant": assistant, "iterations": warmup + iterations,
        "epoch_length": warmup + iterations, "val_interval": 10**6, "run_dir": str(root), "ckpt_dir": str(root / "models"),
        "assistant_dir": str(RUNS / tree.name / dataset / "stage1"), "stage1_iterations": 20, "resume": False, "device": "cpu",
        "train#handlers#4#_disabled_": True,
    }
    if not schedule:  # a schedule overlay brings its own batch and patch
        overrides.update(batch_size=batch, patch_size=patch if dataset == "acdc" else [patch, patch, patch // 2])
    if (tree / "configs" / "stage2.json").read_text().count('"num_workers": "@num_workers"'):
        overrides["num_workers"] = workers
    wf = ConfigWorkflow(config_file=configs, workflow_type="train", run_id="training", **overrides)
    if assistant == "sam2_generalist":
        wf.parser["assistant_args"]["sam2_generalist"]["allow_random_weights"] = True
    wf.initialize()
    trainer = wf.parser.get_parsed_content("train#trainer")
    seconds = dict.fromkeys(PHASES, 0.0)
    marks: dict[str, float] = {}
    counting = {"on": False, "start": 0.0}
    if trainer.assistant is not None:
        _timed(trainer.assistant, "targets", seconds, "assistant")
        _timed(trainer.assistant, "train_step", seconds, "assistant")
    teacher = getattr(trainer.method, "teacher", None)
    if teacher is not None:
        _timed(teacher, "forward", seconds, "teacher")

    def mark(name):
        return lambda engine: marks.__setitem__(name, time.perf_counter())

    trainer.add_event_handler(Events.GET_BATCH_STARTED, mark("get"))
    trainer.add_event_handler(Events.ITERATION_STARTED, mark("start"))
    trainer.add_event_handler(IterationEvents.LOSS_COMPLETED, mark("loss"))
    trainer.add_event_handler(IterationEvents.BACKWARD_COMPLETED, mark("backward"))
    trainer.add_event_handler(IterationEvents.MODEL_COMPLETED, mark("model"))

    def account(engine):
        if engine.state.iteration == warmup:
            counting.update(on=True, start=time.perf_counter())
            for k in seconds:
                seconds[k] = 0.0
            return
        if counting["on"]:
            counting["end"] = time.perf_counter()  # the last iteration's end: not the checkpoint and validation after it
            seconds["data"] += marks["start"] - marks["get"]
            seconds["backward"] += marks["backward"] - marks["loss"]
            seconds["optimiser"] += marks["model"] - marks["backward"]
            seconds["student"] += marks["loss"] - marks["start"]

    trainer.add_event_handler(Events.ITERATION_COMPLETED, account)
    torch.manual_seed(0)
    wf.run()
    total = counting["end"] - counting["start"]
    seconds["student"] -= seconds["assistant"] + seconds["teacher"]  # the loss pass contains them
    evaluator = wf.parser.get_parsed_content("validate#evaluator")
    start = time.perf_counter()
    evaluator.run()
    validation = time.perf_counter() - start
    return {
        "combination": combination,
        "batch_size": wf.parser.get_parsed_content("batch_size"),
        "patch_size": wf.parser.get_parsed_content("patch_size"),
        "student": wf.parser["network_def"]["_target_"].rsplit(".", 1)[-1],
        "seconds_per_iteration": round(total / iterations, 3),
        "phases_per_iteration": {k: round(v / iterations, 3) for k, v in seconds.items()},
        "validation_seconds": round(validation, 1),
        "validation_volumes": len(wf.parser.get_parsed_content("data")["val_volumes"]),
    }


def run_all(tree: Path, label: str, schedule: str, iterations: int, warmup: int, workers: int, batch: int, patch: int, only: list[str], dataset: str = "acdc") -> None:
    results = json.loads(OUT.read_text()) if OUT.is_file() else {"runs": {}}
    import torch

    results["machine"] = f"{platform.node()} {platform.processor() or platform.machine()}, CPU, {torch.get_num_threads()} threads, {os.cpu_count()} cores"
    results["setting"] = f"ACDC with 3 labelled patients (LA with 4 labelled cases where named), {iterations} timed iterations after {warmup} per run, each in a process of its own"
    runs = results["runs"].setdefault(label, {})
    results.setdefault("labels", {})[label] = f"{dataset.upper()}, tree {tree.name}, " + (f"schedule_{schedule}.json" if schedule else f"batch {batch} + {batch}, {patch} x {patch}") + f", {workers} DataLoader workers"
    for combination in only or COMBINATIONS:
        cmd = [sys.executable, __file__, "--one", combination, "--tree", str(tree), "--iterations", str(iterations), "--warmup", str(warmup), "--workers", str(workers)]
        cmd += ["--batch", str(batch), "--patch", str(patch), "--dataset", dataset]
        cmd += ["--schedule", schedule] if schedule else []
        done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tree / "bundle")})
        line = [x for x in done.stdout.splitlines() if x.startswith("{")]
        if done.returncode or not line:
            runs[combination] = {"combination": combination, "error": (done.stderr.strip().splitlines() or ["failed"])[-1][:300]}
        else:
            runs[combination] = json.loads(line[-1])
        print(label, combination, runs[combination].get("seconds_per_iteration", runs[combination].get("error")), flush=True)
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(results, indent=2))


def cell(run: dict) -> str:
    """Seconds per iteration, or why there is none: not measured, not in that tree (a method it lacks), failed."""
    if "seconds_per_iteration" in run:
        return f"{run['seconds_per_iteration']:.2f}"
    if not run:
        return "not measured"
    return "not in that tree" if run["error"].startswith("KeyError") else "failed"


def report() -> str:
    """The before / after table of docs/results/speed.json."""
    results = json.loads(OUT.read_text())
    labels = list(results["runs"])
    head = "| method + assistant | " + " | ".join(f"s/it {label}" for label in labels) + " | where the time goes, s/it (last measured): " + ", ".join(PHASES) + " | validation (20 volumes) |"
    rows = [head, "|---" * (3 + len(labels)) + "|"]
    for combination in COMBINATIONS:
        cells = [results["runs"][label].get(combination, {}) for label in labels]
        measured = [(label, c) for label, c in zip(labels, cells) if "phases_per_iteration" in c]
        label, last = measured[-1] if measured else ("", {})
        phases = " / ".join(f"{last['phases_per_iteration'][p]:.2f}" for p in PHASES) + f" ({label})" if last else ""
        validation = f"{last['validation_seconds']} s" if last else ""
        rows.append(f"| {combination} | " + " | ".join(cell(c) for c in cells) + f" | {phases} | {validation} |")
    legend = "; ".join(f"**{label}**: {text}" for label, text in results.get("labels", {}).items())
    return f"{results['setting']}; {results['machine']}. {legend}.\n\n" + "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", type=Path, default=REPO, help="checkout of the project to measure")
    parser.add_argument("--label", default="after")
    parser.add_argument("--schedule", default="", help="a schedule overlay of that tree (cpu, published), none by default")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers (trees that have the num_workers id)")
    parser.add_argument("--batch", type=int, default=4, help="labelled (and unlabelled) images per batch, without --schedule")
    parser.add_argument("--patch", type=int, default=128, help="slice size, without --schedule")
    parser.add_argument("--only", default="", help="comma list of combinations")
    parser.add_argument("--dataset", default="acdc", choices=sorted(SETTINGS))
    parser.add_argument("--one", help="(internal) measure one combination in this process")
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--write", action="store_true", help="with --report: write the table into docs/results.md")
    args = parser.parse_args()
    if args.report:
        from results_md import show_section

        show_section("speed", report(), args.write)
        return
    if args.one:
        print(json.dumps(measure(args.tree.resolve(), args.one, args.schedule, args.iterations, args.warmup, args.workers, args.batch, args.patch, args.dataset)))
        return
    run_all(args.tree.resolve(), args.label, args.schedule, args.iterations, args.warmup, args.workers, args.batch, args.patch, [c for c in args.only.split(",") if c], args.dataset)


if __name__ == "__main__":
    main()
