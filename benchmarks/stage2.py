"""Benchmark (not a test): stage 2, every method on the same labelled split and iteration budget.

Per setting (a data set and its standard labelled split) it trains the stage-1 assistant once on the
labelled cases, then each stage-2 run in its own process (so each peak resident memory is its own):
supervised-only, Mean Teacher, UniMatch, UniMatch + vessa, Mean Teacher + vessa, and a SemiSAM+
smoke run with a randomly initialised SAM2 (no checkpoint exists on this machine: its Dice means
nothing, its time per iteration does). ``--labeled all`` trains the fully supervised ceiling.
Runs with the ``text`` variant (``unimatch+vessa+text``) use a second stage-1 assistant trained with
text alignment on (``stage1_text``); ``+text_vlm`` runs use DuSSS's text-guided assistant.
``--tag`` keeps a comparison's stage-1 assistants and records apart from earlier ones.
The best checkpoint on the validation volumes is evaluated on the test volumes by the published protocol. LA has
no validation split: on a schedule the last 8 of its 80 training cases by id (none of them in a labelled split)
validate, so the converged runs have a curve and a best checkpoint; the short budget keeps the final weights. Benchmark-only pseudo-label diagnostics read
the hidden labels of the unlabelled cases to log the Dice of the student and of the assistant over time.

    python benchmarks/stage2.py --dataset acdc --labeled 3 --iterations 600
    python benchmarks/stage2.py --dataset acdc --labeled all --runs supervised+none --iterations 600
    python benchmarks/stage2.py --dataset la --labeled 4 --iterations 300
    python benchmarks/stage2.py --dataset acdc --labeled 3 --tag compare --runs supervised+none,unimatch+vessa,unimatch+vessa+text,mean_teacher+text_vlm
    python benchmarks/stage2.py --report        # figures and the markdown table of every recorded run

``--schedule cpu`` (or ``published``) stacks ``configs/schedule_<name>.json`` on every run of the setting
instead of the short budget above (its iterations, patch, batch and optimiser): the converged benchmark,
with ``--seed`` for the split and training; records go to ``docs/results/converged``:

    python benchmarks/stage2.py --schedule cpu --dataset acdc --labeled 3 --seed 0 --runs supervised+none,unimatch+vessa
    python benchmarks/stage2.py --schedule cpu --report
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "docs" / "results"
ALL_RUNS = ("supervised+none", "mean_teacher+none", "unimatch+none", "unimatch+vessa", "mean_teacher+vessa", "mean_teacher+sam2_generalist")
CONVERGED_RUNS = (
    "supervised+none", "mean_teacher+none", "unimatch+none", "unimatch+vessa", "unimatch_v2+none", "unimatch_v2+vessa", "mean_teacher+text_vlm",
)


DATA_DIRS: dict[str, Path] = {}  # data sets built outside ../shared/data (--data)


def dataset_dir(dataset: str) -> Path:
    """Where ``dataset`` lives: its ``--data`` folder, else ../shared/data/<dataset>."""
    return DATA_DIRS.get(dataset, DATA / dataset)


def run_dataset_dir(dataset: str, schedule: str = "") -> Path:
    """The data set a run trains on: on a schedule, a data set without a validation list (LA) gets one carved out of its
    training cases (``heldout_validation``, the pre-training corpus's rule: the last tenth by id, none of them in a
    labelled split), written as a data list under runs/ that points at the original files; otherwise the data set."""
    source = dataset_dir(dataset)
    fraction = DATASETS.get(dataset, {}).get("heldout_validation")
    if not schedule or not fraction:
        return source
    from vessa.data.corpus import heldout_cases

    raw = json.loads((source / "dataset.json").read_text())
    if raw.get("validation"):
        return source
    train, held = heldout_cases(raw["training"], [], fraction)
    held_ids = {Path(e["image"]).name for e in held}
    for key in ("labeled_cases", "labeled_patients"):
        for ids in raw.get(key, {}).values():
            if any(Path(e["image"]).name.startswith(i + ".") for i in ids for e in held):
                raise SystemExit(f"{dataset}: a held-out validation case is in a labelled split; carve the validation cases elsewhere")
    absolute = lambda e: {k: (str((source / v).resolve()) if k in ("image", "label") else v) for k, v in e.items()}  # noqa: E731
    derived = {**raw, "training": [absolute(e) for e in train], "validation": [absolute(e) for e in held], "test": [absolute(e) for e in raw.get("test", [])]}
    derived["description"] = f"{raw.get('description', dataset)}; validation: {len(held_ids)} training cases held out (benchmarks/stage2.py)"
    folder = REPO / "runs" / "bench" / "data" / f"{dataset}_val"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "dataset.json"
    if not path.is_file() or json.loads(path.read_text()) != derived:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(derived, indent=1))
        tmp.replace(path)
    return folder


def out_dir(schedule: str, dataset: str = "") -> Path:
    """Records of the short budget in docs/results/stage2, of a schedule overlay in docs/results/converged; a data set
    with its own protocol (MoNuSeg) in docs/results/<its name>."""
    if DATASETS.get(dataset, {}).get("own_protocol"):
        return RESULTS / dataset
    return RESULTS / ("converged" if schedule else "stage2")


def runs_dir(schedule: str, dataset: str = "") -> Path:
    if DATASETS.get(dataset, {}).get("own_protocol"):
        return REPO / "runs" / "bench" / dataset
    return REPO / "runs" / "bench" / (f"stage2_{schedule}" if schedule else "stage2")
# Optional third part of a run name: settings of a variant of the assistant's use (method+assistant+variant)
VARIANTS = {
    "uncertain": {"assistant_fusion": "uncertain"},
    "dynamic": {"assistant_update_every": 10},
    "handover": {"assistant_schedule": "rampdown"},  # the assistant's targets first, handed over to the method's own by a third of the run
    "text": {},  # the stage-1 assistant trained with text alignment (see stage1_name)
    "nosss": {"assistant_args#text_vlm#sss_lambda": 0.0},  # text_vlm: plain cosines in the contrastive losses
    "nocontrast": {"assistant_args#text_vlm#contrastive_weight": 0.0},  # text_vlm: mask loss only
    "notextloss": {"assistant_args#text_vlm#use_text_target": False},  # text_vlm: no loss on its text-guided mask
    "nopretrain": {"vlm_pretrain_iterations": 0},  # text_vlm: no vision-language pre-training before stage 2
    "classtext": {"assistant_args#text_vlm#use_image_text": False},  # text_vlm: class descriptions only, not the image's own text
}
SMOKE_ITERATIONS = 6  # SemiSAM+ with random SAM2 weights: a smoke run, not a result

# Settings per data set: config files, stage-2 overrides, stage-1 overrides and the evaluation protocol.
DATASETS = {
    "acdc": {
        "configs": ["stage2.json"],
        "stage2": {"patch_size": 128, "batch_size": 4, "epoch_length": 50, "val_interval": 2},
        "stage1": {"image_size": 128},
        "eval": {"mode": "slicewise", "normalize": "volume", "overlap": 0.5},
        "diag_interval": 100,
    },
    "la": {
        "configs": ["stage2.json", "stage2_3d.json"],
        # CPU-sized: a quarter-width 3D UNet on 64 x 64 x 32 patches (UA-MT: full width, 112 x 112 x 80)
        "stage2": {"batch_size": 2, "epoch_length": 25, "patch_size": [64, 64, 32], "student_features": [8, 16, 32, 64, 128]},
        "stage1": {"image_size": 128, "train_normalize": "slice"},
        "eval": {"mode": "sliding", "normalize": "none", "overlap": 0.25},
        "diag_interval": 50,
        "heldout_validation": 0.1,  # on a schedule: 8 of the 80 training cases validate (best checkpoint, the curve)
    },
    # LViT / DuSSS protocol (configs/monuseg.json: its schedule, early stopping and optimiser); scored at 224 x 224 as LViT does
    "monuseg": {
        "configs": ["stage2.json", "monuseg.json"],
        "own_protocol": True,
        "stage2": {},
        "stage1": {"image_size": 224, "train_normalize": "slice"},
        "eval": {"mode": "slicewise", "normalize": "slice", "overlap": 0.5, "resize": 224},
        "diag_interval": 60,
    },
}


def setting_name(dataset: str, labeled: str, tag: str = "", seed: int = 0) -> str:
    """``acdc3``, ``acdc3_compare``, ``acdc3_s1``: names the setting's run folder and prefixes its records."""
    return f"{dataset}{labeled}" + (f"_{tag}" if tag else "") + (f"_s{seed}" if seed else "")


def setting_dir(dataset: str, labeled: str, tag: str = "", seed: int = 0, schedule: str = "") -> Path:
    return runs_dir(schedule, dataset) / setting_name(dataset, labeled, tag, seed)


def stage1_name(text: bool) -> str:
    """Folder of the setting's stage-1 assistant: trained with text alignment on (``stage1_text``) or off."""
    return "stage1_text" if text else "stage1"


def labeled_arg(labeled: str):
    """The config's ``labeled`` value: a split key of dataset.json, a ratio ("0.25") or None (all cases) for "all"."""
    if labeled == "all":
        return None
    try:
        return float(labeled) if "." in labeled else labeled
    except ValueError:
        return labeled


def labeled_name(labeled: str) -> str:
    """How the table names a labelled split: the split key, or a ratio as a percentage of the training cases."""
    return f"{100 * float(labeled):.0f} %" if "." in labeled else labeled


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def machine() -> str:
    import torch

    return f"{platform.node()} {platform.processor() or platform.machine()}, CPU, {torch.get_num_threads()} threads"


def train_stage1(
    dataset: str, labeled: str, iterations: int, tag: str = "", text: bool = False, seed: int = 0, schedule: str = "", pretrained: str = "none"
) -> dict:
    """Stage 1 on the setting's labelled cases, into the setting's ``stage1`` (or, with text alignment, ``stage1_text``)
    folder (skipped when it exists). ``pretrained``: stage 1's warm start; ``none`` by default, because the shipped
    VESSA-base saw every training case of ACDC and LA with its label, the hidden labels of the unlabelled ones too."""
    from vessa.data.prepare import load_split
    from vessa.training.stage1_runner import ensure_stage1

    cfg = DATASETS[dataset]
    root = setting_dir(dataset, labeled, tag, seed, schedule)
    name = stage1_name(text)
    out = out_dir(schedule, dataset)
    record_path = out / f"{setting_name(dataset, labeled, tag, seed)}_{name}.json"
    if (root / name / "assistant.pt").is_file() and record_path.is_file():
        return json.loads(record_path.read_text())
    start = time.time()
    data = run_dataset_dir(dataset, schedule)
    _, split = load_split(data, labeled_arg(labeled), seed, root / f"{name}_run")
    overrides = {
        **cfg["stage1"], "iterations": iterations, "epoch_length": 100, "val_interval": 2, "text_alignment": text, "seed": seed, "pretrained": pretrained,
        "train#handlers#4#_disabled_": True,
    }
    ensure_stage1(root / name, split, dataset_dir=str(data), labeled=labeled_arg(labeled), run_dir=str(root / f"{name}_run"), **overrides)
    record = {
        "dataset": dataset, "labeled": labeled, "tag": tag, "seed": seed, "schedule": schedule or "short", "text_alignment": text, "iterations": iterations,
        "pretrained": pretrained,
        "train_seconds": round(time.time() - start, 1), "peak_rss_mb": peak_rss_mb(), "machine": machine(),
    }
    out.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(record, indent=2))
    return record


def run_one(dataset: str, labeled: str, run: str, iterations: int, tag: str = "", seed: int = 0, schedule: str = "") -> dict:
    """Train one stage-2 run in this process, evaluate it on the test volumes, write its record."""
    import torch
    from ignite.engine import Events
    from monai.bundle import ConfigWorkflow

    from vessa.data import load_datalist
    from vessa.evaluation.diagnostics import PseudoLabelDiagnostics
    from vessa.evaluation.student import evaluate_student, load_eval_volumes
    from vessa.training.checkpoints import atomic_write_json

    method, assistant, *variant = run.split("+")
    cfg = DATASETS[dataset]
    root = setting_dir(dataset, labeled, tag, seed, schedule) / run
    smoke = assistant == "sam2_generalist"
    configs = cfg["configs"] + ([f"schedule_{schedule}.json"] if schedule else [])
    overrides = {
        **({} if schedule else cfg["stage2"]),  # a schedule overlay brings its own iterations, patch, batch and optimiser
        **({} if schedule or cfg.get("own_protocol") else {"iterations": iterations}),
        "dataset_dir": str(run_dataset_dir(dataset, schedule)),
        "labeled": labeled_arg(labeled),
        "seed": seed,
        "method": method,
        "assistant": assistant,
        "bundle_root": str(REPO),
        "run_dir": str(root),
        "ckpt_dir": str(root / "models"),
        "assistant_dir": str(setting_dir(dataset, labeled, tag, seed, schedule) / stage1_name("text" in variant)),
        "resume": True,
        "device": "cpu",
        "train#handlers#4#_disabled_": True,
    }
    for name in variant:
        overrides.update(VARIANTS[name])
    if smoke:
        overrides.update({"iterations": SMOKE_ITERATIONS, "batch_size": 1, "epoch_length": 2, "val_interval": 1000, "resume": False})
    wf = ConfigWorkflow(config_file=[str(REPO / "configs" / c) for c in configs], workflow_type="train", run_id="training", **overrides)
    if smoke:
        wf.parser["assistant_args"]["sam2_generalist"]["allow_random_weights"] = True
    wf.initialize()
    trainer = wf.parser.get_parsed_content("train#trainer")
    data = wf.parser.get_parsed_content("data")
    curve_path = root / "val_curve.json"
    curve: list[dict] = json.loads(curve_path.read_text()) if curve_path.is_file() else []  # a resumed run keeps its curve
    if data["val_volumes"]:
        evaluator = wf.parser.get_parsed_content("validate#evaluator")

        def record_point(engine) -> None:
            curve.append({"iteration": trainer.state.iteration, "val_dice": float(engine.state.metrics["val_mean_dice"])})
            curve_path.write_text(json.dumps(curve))

        evaluator.add_event_handler(Events.COMPLETED, record_point)
    diagnostics = None
    if data["split"].unlabeled and not smoke:
        label_values = wf.parser.get_parsed_content("label_values")
        patch = wf.parser.get_parsed_content("patch_size")
        diagnostics = PseudoLabelDiagnostics.for_split(data["split"], label_values, patch, root / "pseudo_labels.csv", interval=cfg["diag_interval"])
        if diagnostics.csv_path.is_file():  # a resumed run keeps the rows of its first part
            with open(diagnostics.csv_path) as f:
                diagnostics.rows = [{k: (int(float(v)) if k == "iteration" else float(v)) for k, v in row.items()} for row in csv.DictReader(f)]
        diagnostics.attach(trainer)
    elapsed_path = root / "train_seconds.json"  # wall time over every part of a resumed run, up to its last checkpoint
    before = json.loads(elapsed_path.read_text()) if elapsed_path.is_file() else {"seconds": 0.0, "iterations": 0}
    start = time.time()
    first = {}

    def on_first_iteration(engine) -> None:
        """Where this part starts (after a resume); the diagnostics rows a killed part logged past it are dropped."""
        if "iteration" in first:
            return
        first["iteration"] = engine.state.iteration - 1
        if diagnostics:
            diagnostics.rows = [r for r in diagnostics.rows if r["iteration"] <= first["iteration"]]

    def save_elapsed(engine) -> dict:
        elapsed = {"seconds": before["seconds"] + time.time() - start, "iterations": before["iterations"] + engine.state.iteration - first.get("iteration", 0)}
        atomic_write_json(elapsed, elapsed_path)
        return elapsed

    trainer.add_event_handler(Events.ITERATION_STARTED, on_first_iteration)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, save_elapsed)  # with each checkpoint, so a killed part keeps its time
    wf.run()
    train_s = time.time() - start
    elapsed = save_elapsed(trainer)
    network = wf.parser.get_parsed_content("network")
    network.load_state_dict(torch.load(root / "models" / "model.pt", map_location="cpu", weights_only=True))
    datalist = load_datalist(dataset_dir(dataset))
    volumes = load_eval_volumes(datalist, "test", cfg["eval"]["normalize"])
    if cfg["eval"].get("resize"):
        volumes = [resized(v, cfg["eval"]["resize"]) for v in volumes]
    start = time.time()
    patch = wf.parser.get_parsed_content("patch_size")
    result = evaluate_student(network, volumes, datalist.label_values, datalist.labels, cfg["eval"]["mode"], patch, "cpu", progress=False, overlap=cfg["eval"]["overlap"])
    record = {
        "dataset": dataset,
        "labeled": fraction(labeled) if cfg.get("own_protocol") else labeled,
        "tag": tag,
        "seed": seed,
        "schedule": schedule or "short",
        "labeled_cases": len(data["split"].labeled),
        "method": method,
        "assistant": assistant,
        "variant": "+".join(variant),
        "smoke": smoke,
        "iterations": trainer.state.iteration,
        "batch_size": wf.parser.get_parsed_content("batch_size"),
        "patch_size": patch,
        "train_seconds": round(elapsed["seconds"], 1),
        "seconds_per_iteration": round(elapsed["seconds"] / max(1, elapsed["iterations"]), 3),
        "eval_seconds": round(time.time() - start, 1),
        "peak_rss_mb": peak_rss_mb(),
        "machine": machine(),
        "checkpoint": "best on validation" if data["val_volumes"] else "final",
        "early_stopped": trainer.state.iteration < wf.parser.get_parsed_content("iterations"),
        "val_curve": curve,
        "pseudo_label_dice": diagnostics.rows if diagnostics else [],
        "test": result["summary"],
    }
    out = out_dir(schedule, dataset)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(record, out / f"{setting_name(dataset, labeled, tag, seed)}_{run}.json")
    print(f"{setting_name(dataset, labeled, tag, seed)} {run}: test mean Dice {100 * result['summary']['mean']['dice']:.1f}, {train_s / 60:.1f} min, peak RSS {record['peak_rss_mb'] / 1024:.2f} GB")
    return record


def resized(volume: dict, size: int) -> dict:
    """A 2D test case with its image (bilinear) and label (nearest) resized to ``size`` x ``size``: LViT scores MoNuSeg at 224."""
    from vessa.data.template_bank import resize_image, resize_label

    return {**volume, "image": resize_image(volume["image"], size).numpy(), "label": resize_label(volume["label"], size).numpy()}


def fraction(labeled: str) -> float:
    """The labelled fraction of a ratio split ("0.25"), 1.0 for "all"."""
    return 1.0 if labeled == "all" else float(labeled)


def records(schedule: str = "") -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out_dir(schedule).glob("*.json")) if not p.name.endswith(("_stage1.json", "_stage1_text.json"))]


def report(tag: str = "", schedule: str = "") -> str:
    """Markdown table of the recorded runs of ``tag`` ("" the untagged ones), and the figures next to the records."""
    from vessa.evaluation.figures import stage2_curves

    rows = ["| data set | labelled | seed | method | assistant | test Dice | Jaccard | HD95 | ASD | per class Dice | iterations | time | s/it | peak RSS |", "|---" * 14 + "|"]
    for r in records(schedule):
        if r.get("tag", "") != tag:
            continue
        t = r["test"]
        per_class = " / ".join(f"{100 * v['dice']:.1f}" for v in t["classes"].values()) if len(t["classes"]) > 1 else ""
        names = {"text": "text alignment on", "nosss": "no semantic-similarity supervision", "nocontrast": "no contrastive loss", "dynamic": "dynamic interaction", "handover": "handed over to the method's own targets"}
        variant = names.get(r.get("variant", ""), r.get("variant", ""))
        note = " (smoke, random SAM2)" if r["smoke"] else (f" ({variant})" if variant else "")
        rows.append(
            f"| {r['dataset'].upper()} | {labeled_name(r['labeled'])} | {r.get('seed', 0)} | {r['method']} | {r['assistant']}{note} | {100 * t['mean']['dice']:.1f} | {100 * t['mean']['jaccard']:.1f} | "
            f"{t['mean']['hd95']:.1f} | {t['mean']['asd']:.1f} | {per_class} | {r['iterations']} | {r['train_seconds'] / 60:.1f} min | {r['seconds_per_iteration']:.2f} | {r['peak_rss_mb'] / 1024:.2f} GB |"
        )
    stage2_curves([r for r in records(schedule) if not r["smoke"]], out_dir(schedule))
    return "\n".join(rows)


PUBLISHED = {  # Dice % on the same splits (../shared/data/README.md): supervised only, UA-MT, BCP, UniMatch, fully supervised
    ("acdc", "1"): {"UniMatch": 85.4},
    ("acdc", "3"): {"supervised only": 48, "UA-MT": 46, "BCP": 87.6, "UniMatch": 88.9},
    ("acdc", "7"): {"supervised only": 79, "UA-MT": 82, "BCP": 88.8, "UniMatch": 89.9},
    ("acdc", "all"): {"fully supervised": 91.4},
    ("la", "4"): {"supervised only": 52, "UA-MT": 82, "BCP": 88.0},
    ("la", "8"): {"supervised only": 83, "UA-MT": 88, "BCP": 89.6},
    ("la", "all"): {"fully supervised": 91.5},
}


def run_name(r: dict) -> str:
    return "+".join(x for x in (r["method"], r["assistant"], r.get("variant", "")) if x)


def crossing(diag: list[dict]) -> str:
    """Where the assistant's pseudo-labels fall below the student's own prediction (Dice on the hidden labels)."""
    below = [row["iteration"] for row in diag if row["assistant_dice"] < row["student_dice"]]
    return f"first below at iteration {below[0]}, below at {len(below)} of {len(diag)} checks" if below else f"above at all {len(diag)} checks"


def flat_range(record: dict) -> str:
    """How much the validation Dice moved over the last 20 % of a run (flat: converged)."""
    tail = [p["val_dice"] for p in record["val_curve"] if p["iteration"] >= 0.8 * record["iterations"]]
    return f"{100 * (max(tail) - min(tail)):.1f} points" if len(tail) > 1 else ""


def pseudo_cell(record: dict) -> str:
    """The assistant's and the student's pseudo-label Dice at the end of a run, and where the assistant fell below."""
    diag = record["pseudo_label_dice"]
    return f"{100 * diag[-1]['assistant_dice']:.1f} vs {100 * diag[-1]['student_dice']:.1f}; {crossing(diag)}" if diag and "assistant_dice" in diag[-1] else ""


def per_seed(runs: list[dict], cell) -> str:
    """One table cell from ``cell(record)`` of each run, named by seed when there are several; empty cells left out."""
    cells = [(r.get("seed", 0), cell(r)) for r in runs]
    return "; ".join(f"s{seed} {text}" if len(runs) > 1 else text for seed, text in cells if text)


def converged_table() -> str:
    """The CPU-schedule runs, mean and spread over seeds, beside the published figures and the short-budget run of
    the same method (docs/results/stage2, 500 iterations), with the curve's last change and the pseudo-label Dice."""
    import numpy as np

    short = {(r["dataset"], r["labeled"], run_name(r)): r for r in records("") if not r.get("smoke") and r.get("tag", "") in ("", "compare")}
    groups: dict[tuple, list[dict]] = {}
    for r in records("cpu"):
        if not r.get("smoke"):
            groups.setdefault((r["dataset"], r["labeled"], run_name(r)), []).append(r)
    rows = [
        "| setting | method + assistant | test Dice, mean (spread) | per seed | s/it | time per run | validation Dice range over the last 20 % | pseudo-label Dice, assistant vs student (end) | short budget | published |",
        "|---" * 10 + "|",
    ]
    for (dataset, labeled, name), runs in sorted(groups.items()):
        runs = sorted(runs, key=lambda r: r.get("seed", 0))
        dice = np.array([100 * r["test"]["mean"]["dice"] for r in runs])
        spread = f" (+-{(dice.max() - dice.min()) / 2:.1f})" if len(dice) > 1 else ""
        seeds = ", ".join(f"s{r.get('seed', 0)} {100 * r['test']['mean']['dice']:.1f}" for r in runs)
        flat, pseudo = per_seed(runs, flat_range), per_seed(runs, pseudo_cell)
        prev = short.get((dataset, labeled, name))
        short_cell = f"{100 * prev['test']['mean']['dice']:.1f} ({prev['iterations']} it)" if prev else ""
        published = ", ".join(f"{k} {v}" for k, v in PUBLISHED.get((dataset, labeled), {}).items())
        seconds = np.mean([r["seconds_per_iteration"] for r in runs])
        minutes = np.mean([r["train_seconds"] for r in runs]) / 60
        rows.append(
            f"| {dataset.upper()} {labeled_name(labeled)} | {name} | {dice.mean():.1f}{spread} | {seeds} | {seconds:.2f} | {minutes:.0f} min | {flat} | {pseudo} | {short_cell} | {published} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="acdc")
    parser.add_argument("--data", help="folder of the data set when it is not in ../shared/data (MoNuSeg: built by ../shared/tools/prepare_data.py)")
    parser.add_argument("--labeled", default="3", help="a split key of dataset.json (ACDC 1/3/7, LA 4/8), a ratio of the training cases (0.25) or 'all'")
    parser.add_argument("--runs", default="", help="comma-separated method+assistant[+variant] runs (default: the short or the converged list)")
    parser.add_argument("--iterations", type=int, default=600, help="stage-2 iterations of the short budget (a --schedule sets its own)")
    parser.add_argument("--stage1_iterations", type=int, default=1000)
    parser.add_argument(
        "--pretrained", default="none",
        help="stage 1's warm start: none (default), or a base that never saw this data set (ACDC: models/vessa_base_no_acdc.pt); "
        "models/vessa_base.pt saw every ACDC and LA training label",
    )
    parser.add_argument("--schedule", default="", choices=["", "cpu", "published"], help="a schedule overlay (configs/schedule_<name>.json)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split (count and ratio splits) and of training")
    parser.add_argument("--tag", default="", help="name of this comparison: its own stage-1 assistants, runs and records")
    parser.add_argument("--one", help="(internal) run one method+assistant in this process")
    parser.add_argument("--stage1", action="store_true", help="(internal) train the setting's assistant in this process")
    parser.add_argument("--text", action="store_true", help="(internal) with --stage1: text alignment on")
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--write", action="store_true", help="with --report --schedule cpu: write the converged table into docs/results.md")
    args = parser.parse_args()
    if args.report:
        print(report(args.tag, args.schedule))
        if args.schedule == "cpu":
            table = converged_table()
            print("\n" + table)
            if args.write:
                from results_md import write_section

                write_section("converged", table)
        return
    if args.data:
        DATA_DIRS[args.dataset] = Path(args.data).resolve()
    if not dataset_dir(args.dataset).is_dir():
        sys.exit(f"{args.dataset} not found at {dataset_dir(args.dataset)}: build it (../shared/data/README.md) and pass --data FOLDER")
    if args.stage1:
        train_stage1(args.dataset, args.labeled, args.stage1_iterations, args.tag, args.text, args.seed, args.schedule, args.pretrained)
        return
    if args.one:
        run_one(args.dataset, args.labeled, args.one, args.iterations, args.tag, args.seed, args.schedule)
        return
    runs = args.runs.split(",") if args.runs else list(CONVERGED_RUNS if args.schedule else ALL_RUNS)
    base = [sys.executable, __file__, "--dataset", args.dataset, "--labeled", args.labeled, "--iterations", str(args.iterations), "--tag", args.tag]
    base += ["--seed", str(args.seed), "--schedule", args.schedule] + (["--data", args.data] if args.data else [])
    vessa_runs = [r.split("+") for r in runs if r.split("+")[1] == "vessa"]
    for text in sorted({"text" in r[2:] for r in vessa_runs}):
        stage1 = ["--stage1", "--stage1_iterations", str(args.stage1_iterations), "--pretrained", args.pretrained]
        subprocess.run(base + stage1 + (["--text"] if text else []), check=True)
    for run in runs:
        if subprocess.run(base + ["--one", run]).returncode:
            print(f"run {run} failed; going on with the others", file=sys.stderr)


if __name__ == "__main__":
    main()
