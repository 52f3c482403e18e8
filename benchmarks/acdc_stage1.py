"""Benchmark (not a test): stage 1 on ACDC with 3 and 7 labelled patients, evaluated on the 40 test volumes.

Each setting trains the assistant with ``configs/stage1.json`` on the standard labelled patients
(templates come from those patients only), then segments every test volume slice by slice:
the assistant alone, the assistant with a coarse-mask prompt (the true label degraded by the same
perturbation stage 1 simulates: a stand-in for a student's prediction), and the floor of copying the
retrieved template's mask. Wall time and peak resident memory of each run are recorded.

    python benchmarks/acdc_stage1.py --iterations 1500            # both settings, then the report
    python benchmarks/acdc_stage1.py --labeled 3 --iterations 1500 # one setting
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ACDC = REPO.parent / "shared" / "data" / "acdc"
OUT = REPO / "docs" / "results" / "acdc_stage1"


def run_one(labeled: str, iterations: int, image_size: int, device: str, eval_only: bool = False) -> dict:
    """Train and evaluate one setting in this process; returns the record written to ``OUT/acdc<labeled>.json``."""
    import torch
    from monai.bundle import ConfigWorkflow

    from vessa.data import load_datalist, load_slices
    from vessa.data.template_bank import TemplateBank
    from vessa.data.volumes import group_volumes
    from vessa.evaluation.assistant import evaluate_assistant, format_table
    from vessa.inference.predictor import AssistantPredictor

    run_dir = REPO / "runs" / "bench" / f"acdc{labeled}"
    ckpt_dir = run_dir / "models"
    overrides = {
        "dataset_dir": str(ACDC),
        "labeled": labeled,
        "iterations": iterations,
        "epoch_length": 100,
        "val_interval": 2,
        "image_size": image_size,
        "run_dir": str(run_dir),
        "ckpt_dir": str(ckpt_dir),
        "device": device,
        "train#handlers#4#_disabled_": True,
    }
    start = time.time()
    wf = ConfigWorkflow(config_file=str(REPO / "configs" / "stage1.json"), workflow_type="train", run_id="training", **overrides)
    wf.initialize()
    previous = OUT / f"acdc{labeled}.json"
    if eval_only:  # re-evaluate the trained assistant, keeping the recorded training time and memory
        train_s = json.loads(previous.read_text())["train_seconds"]
    else:
        wf.run()
        train_s = time.time() - start
    network = wf.parser.get_parsed_content("network")
    network.load_state_dict(torch.load(ckpt_dir / "assistant.pt", map_location=device, weights_only=True))
    bank = TemplateBank.load(ckpt_dir / "bank.pt")
    datalist = load_datalist(ACDC)
    volumes = group_volumes(load_slices(datalist.test, datalist.label_values, normalize="volume"))
    start = time.time()
    num_templates = int(wf.parser.get_parsed_content("num_templates"))
    results = evaluate_assistant(AssistantPredictor(network, bank, num_templates, device=device), volumes)
    eval_s = time.time() - start
    record = {
        "labeled_patients": labeled,
        "labeled_slices": len(wf.parser.get_parsed_content("data")["labeled_slices"]),
        "bank_exemplars": len(bank),
        "iterations": iterations,
        "image_size": image_size,
        "device": str(device),
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "train_seconds": round(train_s, 1),
        "eval_seconds": round(eval_s, 1),
        "eval_seconds_per_volume": round(eval_s / len(volumes) / len(results), 2),
        "peak_rss_mb": json.loads(previous.read_text())["peak_rss_mb"] if eval_only else round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "num_templates": int(wf.parser.get_parsed_content("num_templates")),
        "test_volumes": len(volumes),
        "results": {m: {"per_class": r["per_class"], "mean": r["mean"]} for m, r in results.items()},
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"acdc{labeled}.json").write_text(json.dumps(record, indent=2))
    print(format_table(results))
    return record


def figures() -> None:
    """Dice bars of every recorded setting and example segmentations by each trained assistant."""
    from monai.bundle import ConfigWorkflow

    from vessa.data import load_datalist, load_slices
    from vessa.data.volumes import group_volumes
    from vessa.evaluation.figures import dice_bars, example_segmentations

    records = [json.loads(p.read_text()) for p in sorted(OUT.glob("acdc*.json"))]
    rows = {f"ACDC, {r['labeled_patients']} labelled patients": r["results"] for r in records}
    dice_bars(rows, OUT / "dice.png", "Stage-1 assistant on the 40 ACDC test volumes")
    datalist = load_datalist(ACDC)
    volumes = group_volumes(load_slices(datalist.test, datalist.label_values, normalize="volume"))
    for r in records:
        ckpt_dir = REPO / "runs" / "bench" / f"acdc{r['labeled_patients']}" / "models"
        wf = ConfigWorkflow(config_file=str(REPO / "configs" / "inference.json"), workflow_type="infer", ckpt_dir=str(ckpt_dir), device="cpu")
        wf.initialize()
        example_segmentations(wf.parser.get_parsed_content("predictor"), volumes, OUT / f"examples_acdc{r['labeled_patients']}.png")


def report() -> str:
    """Markdown of every recorded setting."""
    lines = [
        "| labelled patients (slices) | mode | RV | Myo | LV | mean | train time | peak RSS |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for path in sorted(OUT.glob("acdc*.json")):
        r = json.loads(path.read_text())
        for mode, res in r["results"].items():
            pc = list(res["per_class"].values())
            lines.append(
                f"| {r['labeled_patients']} ({r['labeled_slices']}) | {mode} | "
                + " | ".join(f"{100 * v:.1f}" for v in pc)
                + f" | {100 * res['mean']:.1f} | {r['train_seconds'] / 60:.1f} min | {r['peak_rss_mb'] / 1024:.2f} GB |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labeled", choices=["1", "3", "7", "14"], help="one setting (default: 3 then 7, each in its own process)")
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--image_size", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--report", action="store_true", help="only redraw the figures and print the table of recorded runs")
    parser.add_argument("--eval_only", action="store_true", help="with --labeled: re-evaluate the trained assistant of that setting")
    args = parser.parse_args()
    if not ACDC.is_dir():
        sys.exit(f"ACDC not found at {ACDC}: this benchmark reads ../shared/data/acdc")
    if args.report:
        figures()
        print(report())
    elif args.labeled:
        run_one(args.labeled, args.iterations, args.image_size, args.device, args.eval_only)
    else:
        for labeled in ("3", "7"):  # separate processes, so each peak RSS is its own
            cmd = [sys.executable, __file__, "--labeled", labeled, "--iterations", str(args.iterations), "--image_size", str(args.image_size), "--device", args.device]
            subprocess.run(cmd, check=True)
        figures()
        print(report())


if __name__ == "__main__":
    main()
