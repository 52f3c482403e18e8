"""Benchmark (not a test): interactive segmentation measured as it is in the literature (RITM, SAM): a robot
annotator clicks until the structure is right.

For each test case and class (on a volume: the slice where that class is largest) the robot places each click
where the current mask is most wrong, as stage 1's click sessions do (:func:`vessa.prompts.corrective_clicks`:
the interior-most pixel of the larger error, foreground where the structure was missed, background where the mask
spilled over), up to ``--max_clicks``. Methods, all answering through :func:`vessa.inference.click_response.click_answer`
as the MONAI Label task does:
  learnt  the assistant's own response (clicks as point prompts, its answer to the previous clicks as the coarse-mask
          prompt, from its click-free mask: :func:`vessa.inference.click_response.learnt_answer`);
  paint   the interactive task as it was before click training: a disk per click edits that mask, the disks kept;
  disks   painting alone: a disk per click on an empty mask, no model;
  deepedit  the DeepEdit-style baseline (benchmarks/deepedit_baseline.py: MONAI's deepedit transforms and a UNet
          trained on the same labelled cases for the assistant's fine-tuning time), ``--deepedit`` its weights.
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
RUNS = REPO / "runs" / "bench" / "clicks"
CLICK_SESSIONS = {"corrective_clicks": 0.5, "click_rounds": 3}  # half the batches trained as 1 to 3 click rounds
METHODS = ("learnt", "paint", "disks", "deepedit")
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


def session(predictor, item: dict, method: str, max_clicks: int, prepared: dict, start: np.ndarray, deepedit=None) -> list[float]:
    """Dice after each of up to ``max_clicks`` robot clicks (1.0 from the click that leaves no error on);
    ``start`` is the assistant's click-free mask of the structure, ``deepedit`` the baseline's DeepEditClicker."""
    from vessa.inference.click_response import apply_clicks, click_answer, learnt_answer
    from vessa.prompts import corrective_clicks

    truth = item["truth"]
    radius = RADIUS * min(truth.shape)
    mask, clicks, scores, answers = np.zeros_like(truth), [], [], {}
    for _ in range(max_clicks):
        coords, labels = corrective_clicks(torch.from_numpy(mask)[None], torch.from_numpy(truth)[None])
        if labels[0, 0] < 0:  # nothing left to correct
            scores += [1.0] * (max_clicks - len(scores))
            break
        clicks.append(((float(coords[0, 0, 0]), float(coords[0, 0, 1])), int(labels[0, 0])))
        if method == "disks":
            mask = apply_clicks(np.zeros_like(truth), clicks, radius)
        elif method == "deepedit":
            mask = deepedit.answer(item["image"], predictor.bank.foreground[item["k"]], clicks)
        elif method == "learnt":
            mask = learnt_answer(predictor, prepared, item["k"], clicks, start, answers=answers)
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


def train(dataset_dir: Path, labeled: str, base: Path, sessions: dict | None, tag: str = "") -> tuple[Path, Path]:
    """Stage 1 (vessa_base.py's budget) from ``base`` on the labelled cases, with click ``sessions``
    (``corrective_clicks``, ``click_rounds``) or without (None); returns the assistant and its bank (resumes a run
    that was stopped). ``tag`` ends the run's name, and so the record's."""
    from vessa_base import split_key, train_stage1

    name = f"{dataset_dir.name}{labeled}_" + ("from_base" if sessions is None else "click_trained")
    if sessions is not None and sessions != CLICK_SESSIONS:
        name += f"_p{sessions['corrective_clicks']:g}_r{sessions['click_rounds']}"
    name += f"_{tag}" if tag else ""
    settings = sessions or {"corrective_clicks": 0.0, "click_rounds": 1}
    assistant, bank, seconds = train_stage1(dataset_dir, name, split_key(dataset_dir, labeled), str(base), RUNS, **settings)
    print(f"{name}: stage 1 from {base.name} in {seconds / 60:.1f} min ({settings})")
    return assistant, bank


def run(dataset_dir: Path, assistant: Path, bank: Path | None, labeled, cases: int, max_clicks: int, methods: list[str], deepedit: Path | None = None) -> dict:
    from tqdm import tqdm

    from vessa.training.checkpoints import atomic_write_json
    from vessa_base import machine, split_key

    start = time.time()
    predictor, volumes = load(dataset_dir, assistant, bank, split_key(dataset_dir, str(labeled)))
    items = structures(volumes, predictor.bank.foreground, cases)
    clicker = None
    if "deepedit" in methods:
        from deepedit_baseline import DeepEditClicker

        if deepedit is None or not deepedit.is_file():
            raise SystemExit(f"--deepedit {deepedit}: no DeepEdit-style weights there; train them with benchmarks/deepedit_baseline.py.")
        clicker = DeepEditClicker(deepedit)
    assistant_methods = [m for m in methods if m in ("learnt", "paint")]
    names = predictor.bank.class_names
    per_method: dict = {m: {n: [] for n in names} for m in methods}
    for item in tqdm(items, desc=f"{dataset_dir.name}: click sessions"):
        prepared = predictor.prepare(item["image"], item["position"] if item["slice"] is not None else None)
        click_free = predictor.predict(prepared=prepared)["probs"][item["k"]].numpy() > predictor.threshold if assistant_methods else None
        for method in methods:
            per_method[method][names[item["k"]]].append(session(predictor, item, method, max_clicks, prepared, click_free, clicker))
    shown = str(assistant.resolve().relative_to(REPO)) if assistant.resolve().is_relative_to(REPO) else str(assistant)
    record = {
        "name": f"{dataset_dir.name}_" + (assistant.stem if assistant.stem != "assistant" else assistant.parent.parent.name) if assistant_methods else f"{dataset_dir.name}_deepedit",
        "dataset": dataset_dir.name, "assistant": shown if assistant_methods else None,
        "labeled": labeled, "cases": min(cases, len(volumes)), "max_clicks": max_clicks, "robot": "vessa.prompts.corrective_clicks", "learnt_prompt": "previous answer",
        "machine": machine(), "seconds": 0.0, "methods": {},
    }
    if clicker is not None:
        record["deepedit"] = {"weights": str(deepedit), "iterations": clicker.iterations, "train_seconds": clicker.train_seconds}
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
    """Mean Dice against click count, one panel per data set, one line per method and model (painting alone once)."""
    from vessa.evaluation.figures import plt, save_figure

    datasets = sorted({r["dataset"] for r in records})
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        drawn = set()
        for r in (r for r in records if r["dataset"] == dataset):
            model = r["name"].removeprefix(f"{dataset}_")
            for method, m in r["methods"].items():
                label = method if method in ("disks", "deepedit") else f"{method}, {model}"
                if label in drawn:
                    continue
                drawn.add(label)
                style = "--" if method == "learnt" else ":" if method == "disks" else "-"
                ax.plot(range(1, len(m["dice_after"]) + 1), [100 * v for v in m["dice_after"]], style, marker=".", label=label)
        ax.set(title=dataset, xlabel="clicks", ylabel="Dice (%)", ylim=(0, 100))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def report() -> str:
    records = [json.loads(p.read_text()) for p in sorted(OUT.glob("*.json"))]
    if not records:
        return "No record yet."
    lines = [
        "| data set | assistant | structures | method | NoC@85 | NoC@90 | Dice after 1 | 3 | 5 | 20 clicks |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        de = r.get("deepedit")
        model = f"`{r['assistant']}`" if r["assistant"] else f"DeepEdit-style UNet, {de['iterations']} it, {de['train_seconds'] / 60:.0f} min"
        for method, m in r["methods"].items():
            d = m["dice_after"]
            method = method if method != "learnt" or r.get("learnt_prompt") else "learnt (click-free mask prompt)"  # before learnt_answer
            lines.append(
                f"| {r['dataset']} | {model} ({r['labeled']} labelled) | {m['structures']} | {method} | **{m['noc85']:.2f}** | {m['noc90']:.2f} "
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
    parser.add_argument("--methods", nargs="*", default=["learnt", "paint", "disks"], choices=METHODS)
    parser.add_argument("--deepedit", type=Path, help="the DeepEdit-style baseline's weights (method deepedit)")
    parser.add_argument("--train", choices=("clicks", "plain"), help="first fine-tune --base by stage 1 on the labelled cases, with click sessions "
                        f"({CLICK_SESSIONS}) or without, and measure that assistant")
    parser.add_argument("--corrective_clicks", type=float, default=CLICK_SESSIONS["corrective_clicks"], help="with --train clicks: share of batches trained as click sessions")
    parser.add_argument("--click_rounds", type=int, default=CLICK_SESSIONS["click_rounds"], help="with --train clicks: most rounds of a session")
    parser.add_argument("--base", type=Path, default=REPO / "models" / "vessa_base.pt", help="with --train: the checkpoint stage 1 starts from")
    parser.add_argument("--tag", default="", help="with --train: a suffix of the run's and the record's name (keeps an earlier record of that setting)")
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--write", action="store_true", help="with --report: write the section of docs/results.md")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    if args.train:
        with torch.enable_grad():
            args.assistant, args.bank = train(args.dataset_dir.resolve(), args.labeled, args.base, {"corrective_clicks": args.corrective_clicks, "click_rounds": args.click_rounds} if args.train == "clicks" else None, args.tag)
    if args.dataset_dir:
        run(args.dataset_dir.resolve(), args.assistant, args.bank, args.labeled, args.cases, args.max_clicks, args.methods, args.deepedit)
    if args.report:
        from results_md import show_section

        show_section("clicks", report(), args.write)


if __name__ == "__main__":
    main()
