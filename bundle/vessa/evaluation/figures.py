"""Figures a person would rather look at than read: Dice bars and example segmentations."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vessa.inference.predictor import AssistantPredictor  # noqa: E402


def save_figure(fig, path: str | Path, dpi: int = 100) -> Path:
    """Lay out, write (the folder made) and close ``fig``."""
    path = Path(path)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def dice_bars(rows: dict[str, dict], path: str | Path, title: str) -> Path:
    """Grouped bars: ``rows`` maps a setting name to :func:`evaluate_assistant` results (per_class + mean)."""
    settings = list(rows)
    modes = list(rows[settings[0]])
    classes = list(rows[settings[0]][modes[0]]["per_class"]) + ["mean"]
    fig, axes = plt.subplots(1, len(settings), figsize=(5 * len(settings), 3.5), squeeze=False, sharey=True)
    width = 0.8 / len(modes)
    for ax, setting in zip(axes[0], settings):
        for i, mode in enumerate(modes):
            res = rows[setting][mode]
            vals = [100 * res["per_class"][c] for c in classes[:-1]] + [100 * res["mean"]]
            ax.bar(np.arange(len(classes)) + i * width, vals, width, label=mode)
        ax.set_xticks(np.arange(len(classes)) + width * (len(modes) - 1) / 2, classes)
        ax.set_title(setting)
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("Dice (%)")
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=len(modes), fontsize=8)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def example_segmentations(predictor: AssistantPredictor, volumes: list[dict], path: str | Path, count: int = 4) -> Path:
    """Rows of (image, retrieved template with its mask, assistant, truth) for the middle slice of a few volumes."""
    picks = volumes[:: max(1, len(volumes) // count)][:count]
    fig, axes = plt.subplots(len(picks), 4, figsize=(10, 2.6 * len(picks)), squeeze=False)
    for row, vol in zip(axes, picks):
        z = len(vol["images"]) // 2
        image, pos = vol["images"][z], vol["positions"][z]
        label = vol["label"] if np.asarray(vol["label"]).ndim == 2 else vol["label"][..., z]
        out = predictor.predict(image, pos)
        t = out["templates"][0]
        panels = [
            (image[0], None, vol["id"]),
            (predictor.bank.images[t].float()[0].numpy(), predictor.bank.masks[t].numpy(), "template"),
            (image[0], out["label"].numpy(), "assistant"),
            (image[0], np.asarray(label), "truth"),
        ]
        for ax, (img, mask, title) in zip(row, panels):
            ax.imshow(img, cmap="gray")
            if mask is not None:
                ax.imshow(np.ma.masked_equal(mask, 0), cmap="tab10", vmin=0, vmax=9, alpha=0.5, interpolation="nearest")
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    return save_figure(fig, path)


def stage2_curves(records: list[dict], out_dir: str | Path) -> list[Path]:
    """Per setting (data set + labelled split + the record's ``tag``), two panels: validation Dice over iterations of every
    run, and pseudo-label Dice on hidden labels (student solid, assistant dashed). One colour per method + assistant,
    one marker per seed. One PNG per setting."""
    out_dir = Path(out_dir)
    settings: dict[str, list[dict]] = {}
    for r in records:
        settings.setdefault(f"{r['dataset']}{r['labeled']}" + (f"_{r['tag']}" if r.get("tag") else ""), []).append(r)
    paths = []
    for name, runs in settings.items():
        fig, (ax_val, ax_pl) = plt.subplots(1, 2, figsize=(13, 4.2))
        kinds = sorted({_run_kind(r) for r in runs})
        colours = {k: plt.get_cmap("tab10")(i % 10) for i, k in enumerate(kinds)}
        for r in runs:
            kind, seed = _run_kind(r), r.get("seed", 0)
            label = kind + (f", seed {seed}" if seed else "")
            style = {"color": colours[kind], "marker": "osD^v"[seed % 5], "ms": 3}
            if r["val_curve"]:
                ax_val.plot([c["iteration"] for c in r["val_curve"]], [100 * c["val_dice"] for c in r["val_curve"]], label=label, **style)
            rows = r["pseudo_label_dice"]
            if rows:
                ax_pl.plot([p["iteration"] for p in rows], [100 * p["student_dice"] for p in rows], label=f"{label}: student", **style)
                if "assistant_dice" in rows[0]:
                    ax_pl.plot([p["iteration"] for p in rows], [100 * p["assistant_dice"] for p in rows], "--", label=f"{label}: assistant", **style)
        ax_val.set(title=f"{name.upper()}: validation Dice", xlabel="iteration", ylabel="mean Dice (%)")
        ax_pl.set(title=f"{name.upper()}: pseudo-labels vs hidden labels", xlabel="iteration", ylabel="mean Dice (%)")
        for ax in (ax_val, ax_pl):
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=6, loc="lower right", ncol=2)
        if not ax_val.lines:
            ax_val.text(0.5, 0.5, "no validation split:\nfinal checkpoint evaluated", ha="center", va="center", transform=ax_val.transAxes)
        paths.append(save_figure(fig, out_dir / f"curves_{name}.png", dpi=110))
    return paths


def _run_kind(record: dict) -> str:
    """A run's method + assistant (+ variant), the part of its name that seeds share."""
    return record["method"] + ("" if record["assistant"] == "none" else f" + {record['assistant']}") + (f" ({record['variant']})" if record.get("variant") else "")
