"""Benchmark (not a test): the MONAI Label server under load and after a crash, on 127.0.0.1 with the sample data.

1. Load: while a stage-2 training runs in the app, 4 client threads send 25 requests each, mixing every infer
   task (student, assistant, interactive clicks), label saves and next-sample calls; every answer's status and
   latency is kept (p50 / p95 per kind) and the server's resident memory (with its children) before and after.
2. Crash: during a second training the server and its training process are killed (SIGKILL, as a power cut would);
   the datastore, the approved labels, the template bank and every checkpoint must read back intact (weights-only),
   no temporary file may be left where a checkpoint is served, and a restarted server must answer and train again.

The assistant is VESSA-base (models/vessa_base.pt) with a bank of the labels approved through the API; the
student comes from a short stage-2 training started through the API first.

    python benchmarks/label_faults.py             # about 5 min on 2 CPU cores; docs/results/label_faults.json
    python benchmarks/label_faults.py --report --write
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))
OUT = REPO / "docs" / "results" / "label_faults.json"
LABELS = {"cavity": 1, "wall": 2, "crescent": 3}
THREADS, REQUESTS = 4, 25


def rss_mb(pid: int) -> dict:
    """Resident memory (MB) of the server process, and with its children (a training runs as one)."""
    proc = psutil.Process(pid)
    every = [proc, *proc.children(recursive=True)]
    return {"server": round(proc.memory_info().rss / 2**20, 1), "with_children": round(sum(p.memory_info().rss for p in every) / 2**20, 1)}


def wait_training(client, timeout: float = 900) -> dict:
    deadline = time.time() + timeout
    status = client.train_status()
    while status["status"] not in ("DONE", "ERROR") and time.time() < deadline:
        time.sleep(1)
        status = client.train_status()
    return status


def load_phase(client_for, images: list[str], labels: dict[str, Path], seed: int) -> list[dict]:
    """THREADS x REQUESTS mixed requests; one row per request: kind, seconds, ok, error."""
    from monailabel.client.client import MONAILabelClientException

    rows: list[dict] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        rng = random.Random(seed + index)
        client = client_for()
        for _ in range(REQUESTS):
            kind = rng.choice(["vessa_student", "vessa_assistant", "vessa_interactive", "save_label", "next_sample"])
            image = rng.choice(images)
            start, error = time.time(), None
            try:
                if kind == "save_label":
                    case = rng.choice(sorted(labels))
                    client.save_label(case, str(labels[case]), tag="review")
                elif kind == "next_sample":
                    client.next_sample("random", {})
                elif kind == "vessa_interactive":
                    client.infer(kind, image, {"label": rng.choice(sorted(LABELS)), "foreground": [[rng.randrange(8, 56), rng.randrange(8, 56)]]})
                else:
                    client.infer(kind, image, {})
            except (MONAILabelClientException, OSError) as err:
                error = str(err)[:300]
            with lock:
                rows.append({"kind": kind, "seconds": round(time.time() - start, 3), "ok": error is None, "error": error})

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return rows


def latency_table(rows: list[dict]) -> dict:
    out = {}
    for kind in sorted({r["kind"] for r in rows}):
        seconds = sorted(r["seconds"] for r in rows if r["kind"] == kind)
        out[kind] = {
            "requests": len(seconds), "answered": sum(r["ok"] for r in rows if r["kind"] == kind),
            "p50_s": round(statistics.median(seconds), 3), "p95_s": round(seconds[min(len(seconds) - 1, int(0.95 * len(seconds)))], 3),
        }
    return out


def intact(studies: Path, ckpt: Path, approved: dict[str, bytes]) -> dict:
    """What a crash must not have damaged: the datastore record, the approved labels, the bank and every checkpoint."""
    import torch

    from vessa.data.template_bank import TemplateBank

    checks = {}
    try:
        record = json.loads((studies / "datastore_v2.json").read_text())
        checks["datastore readable"] = all(case in record["objects"] for case in approved)
    except (OSError, ValueError, KeyError):
        checks["datastore readable"] = False
    checks["approved labels unchanged"] = all((studies / "labels" / "final" / f"{case}.png").read_bytes() == data for case, data in approved.items())
    try:
        checks["template bank loads"] = len(TemplateBank.load(ckpt / "bank.pt")) > 0
    except Exception:  # noqa: BLE001 - any failure to read it is the finding
        checks["template bank loads"] = False
    broken = []
    for path in ckpt.rglob("*.pt"):
        try:
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001
            broken.append(path.name)
    checks["every checkpoint loads weights-only"] = not broken
    checks["no temporary file beside the served checkpoints"] = not [p.name for p in ckpt.iterdir() if p.is_file() and not p.name.endswith((".pt", ".json"))]
    return checks


def bench(tmp: Path, train_iterations: int) -> dict:
    from monailabel.client.client import MONAILabelClient
    from PIL import Image

    from label_server import LabelServer
    from vessa.data.sample_data import generate_sample_dataset
    from vessa_base import machine

    generate_sample_dataset(tmp / "png", num_train=10, num_val=0, num_test=0, size=64)
    studies, ckpt, work = tmp / "studies", tmp / "ckpt", tmp / "work"
    studies.mkdir()
    images = sorted((tmp / "png" / "imagesTr").glob("*.png"))
    for p in images:
        Image.open(p).save(studies / p.name)
    label_files = {p.stem: p for p in sorted((tmp / "png" / "labelsTr").glob("*.png"))}
    conf = {"ckpt_dir": ckpt, "work_dir": work, "device": "cpu", "labels": json.dumps(LABELS)}
    record: dict = {"machine": machine(), "threads": THREADS, "requests_per_thread": REQUESTS}

    server = LabelServer(str(studies), conf, tmp / "server1.log")
    client_for = lambda: MONAILabelClient(server.url, tmpdir=str(tmp / "client"))  # noqa: E731
    client = client_for()
    approved = sorted(label_files)[:5]
    for case in approved:
        client.save_label(case, str(label_files[case]), tag="final")
    client.train_start("vessa_stage2", {"iterations": 40, "method": "supervised", "assistant": "none", "device": "cpu"})
    record["first_training"] = wait_training(client)["status"]
    rss_before = rss_mb(server.process.pid)
    client.train_start("vessa_stage2", {"iterations": train_iterations, "method": "supervised", "assistant": "none", "device": "cpu"})
    start = time.time()
    rows = load_phase(client_for, [p.stem for p in images], {c: label_files[c] for c in approved}, seed=0)
    record["load"] = {
        "seconds": round(time.time() - start, 1), "training_running_at_end": client.train_status()["status"] == "RUNNING",
        "rss_before_mb": rss_before, "rss_after_mb": rss_mb(server.process.pid), "per_kind": latency_table(rows),
        "failed": [r for r in rows if not r["ok"]],
    }
    wait_training(client)

    # the crash: SIGKILL the server and its training while a training writes checkpoints
    approved_bytes = {case: (studies / "labels" / "final" / f"{case}.png").read_bytes() for case in approved}
    client.train_start("vessa_stage2", {"iterations": train_iterations, "method": "supervised", "assistant": "none", "device": "cpu"})
    time.sleep(20)
    victims = [psutil.Process(server.process.pid), *psutil.Process(server.process.pid).children(recursive=True)]
    record["crash"] = {"killed_processes": len(victims), "training_was_running": client.train_status()["status"] == "RUNNING"}
    for proc in victims:
        os.kill(proc.pid, signal.SIGKILL)
    server.process.wait(timeout=30)
    server.stop()
    record["crash"]["after_kill"] = intact(studies, ckpt, approved_bytes)

    restarted = LabelServer(str(studies), conf, tmp / "server2.log")
    again = MONAILabelClient(restarted.url, tmpdir=str(tmp / "client"))
    answers = {}
    for model in ("vessa_student", "vessa_assistant"):
        try:
            again.infer(model, images[-1].stem, {})
            answers[model] = True
        except Exception:  # noqa: BLE001
            answers[model] = False
    again.train_start("vessa_stage2", {"iterations": 20, "method": "supervised", "assistant": "none", "device": "cpu"})
    record["crash"]["restart"] = {"answers": answers, "training_again": wait_training(again)["status"]}
    record["crash"]["after_restart"] = intact(studies, ckpt, approved_bytes)
    restarted.stop()
    return record


def report(record: dict) -> str:
    load = record["load"]
    lines = [
        f"Load: {record['threads']} client threads x {record['requests_per_thread']} requests while a stage-2 training ran ({load['seconds']:.0f} s; "
        f"training still running at the end: {load['training_running_at_end']}); server resident memory "
        f"{load['rss_before_mb']['server'] / 1024:.2f} GB before, {load['rss_after_mb']['server'] / 1024:.2f} GB after "
        f"({load['rss_after_mb']['with_children'] / 1024:.2f} GB with the training process). Machine: {record['machine']}.",
        "",
        "| request | sent | answered | p50 | p95 |",
        "|---|---|---|---|---|",
    ]
    for kind, row in load["per_kind"].items():
        lines.append(f"| {kind} | {row['requests']} | {row['answered']} | {row['p50_s']:.2f} s | {row['p95_s']:.2f} s |")
    crash = record["crash"]
    lines += ["", f"Crash: {crash['killed_processes']} processes (server and training) killed with SIGKILL during a training (running: {crash['training_was_running']}).", ""]
    lines += ["| check | after the kill | after the restart |", "|---|---|---|"]
    for check, ok in crash["after_kill"].items():
        lines.append(f"| {check} | {'yes' if ok else '**no**'} | {'yes' if crash['after_restart'][check] else '**no**'} |")
    restart = crash["restart"]
    lines.append(f"| restarted server answers (student, assistant) | | {', '.join(f'{m}: {v}' for m, v in restart['answers'].items())} |")
    lines.append(f"| training started again | | {restart['training_again']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train_iterations", type=int, default=300)
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--write", action="store_true", help="with --report: write the section of docs/results.md")
    args = parser.parse_args()
    if not args.report:
        from vessa.training.checkpoints import atomic_write_json

        with tempfile.TemporaryDirectory() as tmp:
            atomic_write_json(bench(Path(tmp), args.train_iterations), OUT)
    record = json.loads(OUT.read_text())
    from results_md import show_section

    show_section("label_faults", report(record), args.write)


if __name__ == "__main__":
    main()
