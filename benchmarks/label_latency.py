"""Benchmark (not a test): how fast the MONAI Label app answers, measured through its REST API as 3D Slicer
calls it, on the real ACDC and LA test volumes with the checkpoints of the stage-2 benchmark.

Per data set one `monailabel start_server` serves the app (student, assistant, interactive assistant, and
MONAI Label's own SAM2 task ``sam_2d`` on a SAM2.1 hiera-tiny with random weights: no SAM2 checkpoint is on this
machine, so its masks mean nothing, its latency does) over a folder of test volumes, and the client measures:
the first click on a new image, clicks after the first (median of 5, the clicked slice only and with the mask
propagated), automatic segmentation of a whole volume by the student and by the assistant, and the server's
resident memory with every model loaded. ACDC also gets one 256 x 256 slice saved as PNG (the issue's target).

    python benchmarks/label_latency.py                 # ACDC (and LA where its benchmark checkpoints exist)
    python benchmarks/label_latency.py --report        # the markdown table of docs/results/label_latency.json
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
DATA = REPO.parent / "shared" / "data"
BENCH = REPO / "runs" / "bench" / "stage2"
OUT = REPO / "docs" / "results" / "label_latency.json"

SETTINGS = {
    "acdc": {"stage1": BENCH / "acdc3" / "stage1", "student": BENCH / "acdc3" / "unimatch+vessa" / "models", "conf": {"student_configs": "stage2.json"}, "volumes": 2},
    "la": {
        "stage1": BENCH / "la4" / "stage1",
        "student": BENCH / "la4" / "unimatch+vessa" / "models",
        "conf": {"student_configs": "stage2.json,stage2_3d.json", "student_overrides": json.dumps({"student_features": [8, 16, 32, 64, 128], "patch_size": [64, 64, 32]})},
        "volumes": 1,
    },
}


def random_sam2_checkpoint(folder: Path) -> tuple[Path, Path]:
    """A SAM2.1 hiera-tiny built from the sam2 package's config with random weights, saved as a checkpoint."""
    import sam2
    from sam2.build_sam import build_sam2

    config = Path(sam2.__file__).parent / "configs" / "sam2.1" / "sam2.1_hiera_t.yaml"
    ckpt = folder / "sam2.1_hiera_tiny_random.pt"
    torch.save({"model": build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", ckpt_path=None, device="cpu").state_dict()}, ckpt)
    return ckpt, config


def server_rss_mb(pid: int) -> dict:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {k: round(int(status[k].split()[0]) / 1024, 1) for k in ("VmRSS", "VmHWM")}


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def click_series(client, model: str, image_id: str, clicks: list, params: dict, repeats: int = 5) -> dict:
    """First click on the image, then ``repeats`` more requests as a user adds clicks: client wall time (s)."""
    first, _ = timed(lambda: client.infer(model, image_id, {**params, "foreground": clicks[:1]}))
    later = [timed(lambda n=n: client.infer(model, image_id, {**params, "foreground": clicks[: 1 + n % len(clicks)]}))[0] for n in range(1, repeats + 1)]
    return {"first_click_s": round(first, 3), "later_click_s": round(statistics.median(later), 3), "later_clicks": [round(t, 3) for t in later]}


def bench(dataset: str, tmp: Path) -> dict:
    from label_server import LabelServer
    from monailabel.client.client import MONAILabelClient, MONAILabelClientException

    cfg = SETTINGS[dataset]
    ckpt = tmp / dataset / "models"
    ckpt.mkdir(parents=True)
    for src in (cfg["stage1"] / "assistant.pt", cfg["stage1"] / "bank.pt", cfg["student"] / "model.pt"):
        if not src.is_file():
            raise SystemExit(f"{src} missing: run benchmarks/stage2.py for {dataset} first")
        shutil.copy(src, ckpt / src.name)
    studies = tmp / dataset / "studies"
    studies.mkdir()
    test = json.loads((DATA / dataset / "dataset.json").read_text())["test"][: cfg["volumes"]]
    ids = []
    for entry in test:
        src = DATA / dataset / entry["image"]
        (studies / src.name).symlink_to(src)
        ids.append(src.name.split(".")[0])
    volume = np.asanyarray(nib.load(str(DATA / dataset / test[0]["image"])).dataobj)
    label = np.asanyarray(nib.load(str(DATA / dataset / test[0]["label"])).dataobj)
    z = int(np.argmax((label > 0).sum((0, 1))))
    rows, cols = np.nonzero(label[..., z] > 0)
    fg_value = int(np.bincount(label[..., z][label[..., z] > 0]).argmax())
    picks = np.random.default_rng(0).choice(len(rows), 4, replace=False)
    clicks = [[int(rows[i]), int(cols[i]), z] for i in picks]
    if dataset == "acdc":  # one 256 x 256 slice as an image of its own
        sl = volume[..., z].astype(np.float32)
        sl = (255 * (sl - sl.min()) / max(1e-6, np.ptp(sl))).astype(np.uint8)
        Image.fromarray(sl).resize((256, 256), Image.BILINEAR).save(studies / "slice256.png")
    sam_ckpt, sam_cfg = random_sam2_checkpoint(tmp)
    conf = {"ckpt_dir": ckpt, "work_dir": tmp / dataset / "work", "device": "cpu", "sam2_checkpoint": sam_ckpt, "sam2_config": sam_cfg, **cfg["conf"]}
    start = time.perf_counter()
    server = LabelServer(str(studies), conf, tmp / f"{dataset}_server.log", timeout=300)
    startup = time.perf_counter() - start
    try:
        client = MONAILabelClient(server.url, tmpdir=str(tmp / "client"))
        labels = client.info()["models"]["vessa_interactive"]["labels"]
        name = next(n for n, v in labels.items() if v == fg_value)
        result = {"dataset": dataset, "volume_shape": list(volume.shape), "clicked_slice": z, "label": name, "server_start_s": round(startup, 1)}
        result["vessa_interactive_slice"] = click_series(client, "vessa_interactive", ids[0], clicks, {"label": name, "propagate": 0})
        result["vessa_interactive_propagate5"] = click_series(client, "vessa_interactive", ids[-1], clicks, {"label": name, "propagate": 5})
        result["sam_2d"] = click_series(client, "sam_2d", ids[0], clicks, {"label": name})
        if dataset == "acdc":
            png_clicks = [[128, 128], [120, 128], [136, 128], [128, 120]]
            result["vessa_interactive_256px"] = click_series(client, "vessa_interactive", "slice256", png_clicks, {"label": name})
            try:  # MONAI Label 0.8.5's SAM2 task answers 500 on a PNG (its 2D path expects a volume)
                result["sam_2d_256px"] = click_series(client, "sam_2d", "slice256", [c + [0] for c in png_clicks], {"label": name})
            except MONAILabelClientException as err:
                result["sam_2d_256px"] = {"error": str(err)}
        for model in ("vessa_student", "vessa_assistant"):
            runs = [timed(lambda: client.infer(model, ids[0], {}))[0] for _ in range(3)]
            result[f"{model}_volume_s"] = {"first": round(runs[0], 3), "later": round(statistics.median(runs[1:]), 3)}
        result["server_memory_mb"] = server_rss_mb(server.process.pid)
    except Exception:
        print(server.log_tail(60), file=sys.stderr)
        raise
    finally:
        server.stop()
    result["machine"] = f"{platform.node()}, CPU, {torch.get_num_threads()} threads"
    return result


def report(results: dict) -> str:
    rows = ["| data set | volume | interactive: first click | later clicks (slice) | later clicks (+5 slices each way) | 256 px slice, later clicks | SAM2 (MONAI Label) first / later | student, volume | assistant, volume | server RSS (peak) |", "|---" * 10 + "|"]
    for r in results.values():
        px = r.get("vessa_interactive_256px", {})
        sam = r["sam_2d"]
        rows.append(
            f"| {r['dataset'].upper()} | {'x'.join(map(str, r['volume_shape']))} | {r['vessa_interactive_slice']['first_click_s']:.2f} s | {r['vessa_interactive_slice']['later_click_s']:.2f} s | "
            f"{r['vessa_interactive_propagate5']['later_click_s']:.2f} s | {px.get('later_click_s', float('nan')):.2f} s | {sam['first_click_s']:.2f} / {sam['later_click_s']:.2f} s | "
            f"{r['vessa_student_volume_s']['later']:.2f} s | {r['vessa_assistant_volume_s']['later']:.2f} s | {r['server_memory_mb']['VmRSS'] / 1024:.2f} GB ({r['server_memory_mb']['VmHWM'] / 1024:.2f}) |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="acdc,la")
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    results = json.loads(OUT.read_text()) if OUT.is_file() else {}
    if not args.report:
        with tempfile.TemporaryDirectory() as tmp:
            for dataset in args.datasets.split(","):
                if not (SETTINGS[dataset]["student"] / "model.pt").is_file():
                    print(f"{dataset}: no benchmark checkpoints ({SETTINGS[dataset]['student']}); skipped")
                    continue
                results[dataset] = bench(dataset, Path(tmp))
                OUT.parent.mkdir(parents=True, exist_ok=True)
                OUT.write_text(json.dumps(results, indent=2))
    print(report(results))


if __name__ == "__main__":
    main()
