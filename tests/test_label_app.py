"""The MONAI Label app apps/vessa_label, served by a real `monailabel` server and driven by MONAI Label's own
Python client (the REST calls the 3D Slicer module makes)."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import requests
import torch
from monailabel.client.client import MONAILabelClient, MONAILabelClientException
from PIL import Image

from conftest import REPO
from label_server import APP, LabelServer

sys.path.insert(0, str(APP))
from lib.infers.interactive import InteractiveSegmentation  # noqa: E402
from lib.served import ServedModels  # noqa: E402
from vessa.data.template_bank import TemplateBank  # noqa: E402
from vessa.prompts import corrective_clicks  # noqa: E402
from vessa.errors import CheckpointError, DataError  # noqa: E402

LABELS = {"cavity": 1, "wall": 2, "crescent": 3}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum())


@pytest.fixture(scope="module")
def app_data(trained_stage1, served_checkpoints, tmp_path_factory):
    """A datastore of sample images (the stage-1 labelled cases approved as ``final``, six more unlabelled) and
    a copy of the served checkpoints."""
    root = trained_stage1["root"]
    tmp = tmp_path_factory.mktemp("label_app")
    dataset = root / "sample_data" / "2d"
    entries = {Path(e["image"]).name.split(".")[0]: e for e in json.loads((dataset / "dataset.json").read_text())["training"]}
    split = json.loads((root / "runs" / "sample_2d" / "stage1" / "split.json").read_text())
    studies = tmp / "studies"
    (studies / "labels" / "final").mkdir(parents=True)
    unlabeled = split["unlabeled"][:6]
    for case in split["labeled"] + unlabeled:
        shutil.copy(dataset / entries[case]["image"], studies / f"{case}.png")
    for case in split["labeled"]:
        shutil.copy(dataset / entries[case]["label"], studies / "labels" / "final" / f"{case}.png")
    ckpt = shutil.copytree(served_checkpoints, tmp / "models")
    hidden = {case: np.asarray(Image.open(dataset / entries[case]["label"])) for case in unlabeled}
    return {"studies": studies, "ckpt": Path(ckpt), "work": tmp / "work", "unlabeled": unlabeled, "labeled": split["labeled"], "hidden": hidden, "dataset": dataset, "entries": entries}


@pytest.fixture(scope="module")
def server(app_data, tmp_path_factory):
    log = tmp_path_factory.mktemp("server_log") / "monailabel.log"
    srv = LabelServer(str(app_data["studies"]), {"ckpt_dir": app_data["ckpt"], "work_dir": app_data["work"], "device": "cpu"}, log)
    yield srv
    srv.stop()


@pytest.fixture()
def client(server, tmp_path):
    return MONAILabelClient(server.url, tmpdir=str(tmp_path))


def read_label(path: str) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_info_lists_models_labels_trainers_and_strategies(client):
    info = client.info()
    assert {"vessa_student", "vessa_assistant", "vessa_interactive"} <= set(info["models"])
    assert info["models"]["vessa_interactive"]["type"] == "deepgrow"
    assert info["models"]["vessa_student"]["type"] == "segmentation"
    for model in ("vessa_student", "vessa_assistant", "vessa_interactive"):
        assert info["models"][model]["labels"] == LABELS
    assert {"vessa_stage1", "vessa_stage2"} <= set(info["trainers"])
    assert "vessa_disagreement" in info["strategies"] and "vessa_disagreement" in info["scoring"]


@pytest.mark.parametrize("model, min_dice", [("vessa_assistant", 0.5), ("vessa_student", 0.3)])
def test_automatic_segmentation_has_the_image_shape_and_finds_the_classes(client, app_data, model, min_dice):
    case = app_data["unlabeled"][0]
    path, result = client.infer(model, case, {})
    label, truth = read_label(path), app_data["hidden"][case]
    assert label.shape == truth.shape
    assert set(np.unique(label)) <= {0, 1, 2, 3}
    assert set(result["label_names"]) <= set(LABELS) and result["label_names"]
    mean = np.mean([dice(label == v, truth == v) for v in LABELS.values() if (truth == v).any()])
    assert mean > min_dice, f"{model} mean Dice {mean:.2f} on an unlabelled sample image"


def test_painted_clicks_change_the_result_where_they_are(client, app_data):
    def click_on(case: str, name: str) -> tuple[list, np.ndarray, np.ndarray, dict]:
        truth = app_data["hidden"][case] == LABELS[name]
        rows, cols = np.nonzero(truth)
        centre = [int(np.median(cols)), int(np.median(rows))]  # PNG clicks are [column, row]
        path, result = client.infer("vessa_interactive", case, {"label": name, "foreground": [centre], "click_mode": "paint"})
        return centre, truth, read_label(path), result

    tries = [(case, name) for case in app_data["unlabeled"] for name in LABELS if (app_data["hidden"][case] == LABELS[name]).any()]
    clicked = {t: click_on(*t) for t in tries}
    for (case, name), (centre, truth, label, _) in clicked.items():
        assert label[centre[1], centre[0]] == LABELS[name]
        assert set(np.unique(label)) <= {0, LABELS[name]}
    with pytest.raises(MONAILabelClientException, match="at least one click"):
        client.infer("vessa_interactive", tries[0][0], {"label": tries[0][1]})

    # where the first mask is worst, an annotator's correction: one click inside the largest error,
    # foreground where the mask missed the structure, background where it spilled over
    (case, name), (centre, truth, first, result) = min(clicked.items(), key=lambda kv: dice(kv[1][2] > 0, kv[1][1]))
    coords, flag = corrective_clicks(torch.from_numpy(first > 0)[None], torch.from_numpy(truth)[None])
    click = [int(coords[0, 0, 0]), int(coords[0, 0, 1])]
    params = {"label": name, "foreground": [centre], "background": [], "click_mode": "paint"}
    params["foreground" if flag[0, 0] == 1 else "background"].append(click)
    path, second = client.infer("vessa_interactive", case, params)
    corrected = read_label(path)
    assert (corrected[click[1], click[0]] > 0) == bool(flag[0, 0] == 1)
    changed = np.argwhere(corrected != first)
    assert len(changed) and np.median(np.hypot(changed[:, 0] - click[1], changed[:, 1] - click[0])) < 0.15 * truth.shape[0]
    assert dice(corrected > 0, truth) > dice(first > 0, truth)
    assert second["latency"] <= result["latency"] + 0.5


def _png(shape: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros(shape, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_malformed_requests_are_refused_and_nothing_is_written(server, app_data):
    """Every bad input is answered 4xx with a message that names it, the datastore is unchanged, the server serves on."""
    url, case, root = server.url, app_data["unlabeled"][1], app_data["studies"].parent
    good = {"label": "cavity", "foreground": [[30, 30]]}
    bad = {  # kind: (request, expected status, part of the message)
        "params not JSON (infer)": (lambda: requests.post(f"{url}/infer/vessa_interactive?image={case}", data={"params": "{label: cavity"}), 400, "not valid JSON"),
        "params not JSON (label)": (lambda: requests.put(f"{url}/datastore/label?image={case}&tag=final", data={"params": "{x"}, files={"label": ("l.png", _png((64, 64)))}), 400, "not valid JSON"),
        "empty image upload": (lambda: requests.put(f"{url}/datastore/?image=newcase", files={"file": ("new.png", b"")}), 422, "was not added"),
        "image id with ..": (lambda: requests.put(f"{url}/datastore/?image=../evil", files={"file": ("evil.png", _png((64, 64)))}), 422, "is not allowed"),
        "image id with /": (lambda: requests.put(f"{url}/datastore/?image=a/evil", files={"file": ("evil.png", _png((64, 64)))}), 422, "is not allowed"),
        "label tag with ..": (lambda: requests.put(f"{url}/datastore/label?image={case}&tag=../evil", files={"label": ("l.png", _png((64, 64)))}), 422, "is not allowed"),
        "label of another shape": (lambda: requests.put(f"{url}/datastore/label?image={case}&tag=final", files={"label": ("l.png", _png((32, 48)))}), 422, "is not its image's"),
        "empty label upload": (lambda: requests.put(f"{url}/datastore/label?image={case}&tag=final", files={"label": ("l.png", b"")}), 422, "upload is empty"),
        "label of an unknown image": (lambda: requests.put(f"{url}/datastore/label?image=nosuchcase&tag=final", files={"label": ("l.png", _png((64, 64)))}), 404, "not in the datastore"),
        "image path outside the datastore": (lambda: requests.post(f"{url}/infer/vessa_student?image=..%2F..%2Fetc%2Fpasswd"), 404, "not in the datastore"),
        "propagate not a number": (lambda: requests.post(f"{url}/infer/vessa_interactive?image={case}", data={"params": json.dumps({**good, "propagate": "x"})}), 422, "'propagate'"),
        "unknown click mode": (lambda: requests.post(f"{url}/infer/vessa_interactive?image={case}", data={"params": json.dumps({**good, "click_mode": "magic"})}), 422, "Unknown click_mode"),
    }
    files_before = {p: p.stat().st_mtime_ns for p in app_data["studies"].rglob("*") if p.is_file()}
    answers = {kind: send() for kind, (send, _, _) in bad.items()}
    handled = [kind for kind, r in answers.items() if r.status_code == bad[kind][1] and bad[kind][2] in r.json()["detail"]]
    assert handled == list(bad), {k: (r.status_code, r.text[:200]) for k, r in answers.items() if k not in handled}
    assert {p: p.stat().st_mtime_ns for p in app_data["studies"].rglob("*") if p.is_file()} == files_before
    assert not list(root.rglob("*evil*")) and not list(root.rglob("newcase*"))
    assert requests.post(f"{url}/infer/vessa_interactive?image={case}", data={"params": json.dumps(good)}).status_code == 200


def test_errors_are_clear_and_the_server_keeps_serving(client, app_data):
    case = app_data["unlabeled"][0]
    with pytest.raises(MONAILabelClientException) as err:
        client.infer("vessa_interactive", case, {"label": "aorta", "foreground": [[10, 10]]})
    assert "Unknown label 'aorta'" in str(err.value.msg)
    malformed = {
        "outside": ({"label": "cavity", "foreground": [[10, 10_000]]}, "outside the image"),
        "negative": ({"label": "cavity", "foreground": [[-3, 10]]}, "outside the image"),
        "nan": ({"label": "cavity", "foreground": [[float("nan"), 10]]}, "finite voxel indices"),
        "text": ({"label": "cavity", "background": [["left", 10]]}, "must hold numbers"),
        "not a list": ({"label": "cavity", "foreground": [7]}, "voxel indices"),
        "roi": ({"label": "cavity", "roi": [1, 2, "x", 4]}, "must hold numbers"),
    }
    for kind, (params, message) in malformed.items():
        with pytest.raises(MONAILabelClientException) as err:
            client.infer("vessa_interactive", case, params)
        assert "Status: 422" in str(err.value.msg) and message in str(err.value.msg), (kind, err.value.msg)
    assert "vessa_student" in client.info()["models"]


def test_missing_checkpoint_and_unreadable_image_name_the_fix(tmp_path):
    served = ServedModels(REPO, tmp_path / "empty", device="cpu")
    with pytest.raises(CheckpointError, match="train it from the app"):
        served.student()
    from lib.image_io import read_image

    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"not a nifti")
    with pytest.raises(DataError, match="Cannot read"):
        read_image(bad)


def test_served_checkpoints_made_for_other_classes_are_refused_with_a_message(served_checkpoints, tmp_path):
    from fastapi import HTTPException

    from main import VessaLabelApp

    other = {0: "background", 1: "rv", 2: "myo", 3: "lv"}  # as many classes as the sample data, other names
    student_only = tmp_path / "student_only"
    student_only.mkdir()
    shutil.copy(served_checkpoints / "model.pt", student_only / "model.pt")
    with pytest.raises(CheckpointError, match="labels cavity, wall, crescent there, rv, myo, lv here"):
        ServedModels(REPO, student_only, device="cpu", labels=other).student()

    relabelled = Path(shutil.copytree(served_checkpoints, tmp_path / "relabelled"))
    bank = TemplateBank.load(relabelled / "bank.pt")
    bank.labels = other
    bank.save(relabelled / "bank.pt")
    studies = tmp_path / "studies"
    studies.mkdir()
    shutil.copy(_sample_png(tmp_path), studies / "case.png")
    app = VessaLabelApp(str(APP), str(studies), {"ckpt_dir": str(relabelled), "work_dir": str(tmp_path / "work"), "device": "cpu", "models": "vessa_assistant"})
    with pytest.raises(HTTPException) as err:
        app.infer({"model": "vessa_assistant", "image": "case"})
    assert err.value.status_code == 422
    assert "assistant.pt was made for something else (labels cavity, wall, crescent there, rv, myo, lv here)" in err.value.detail


def _sample_png(tmp_path: Path) -> Path:
    from vessa.data.sample_data import generate_sample_dataset

    generate_sample_dataset(tmp_path / "png", num_train=1, num_val=0, num_test=1, size=64)
    return next((tmp_path / "png" / "imagesTs").glob("*.png"))


def test_model_outputs_are_never_saved_as_final(client, app_data):
    case = app_data["unlabeled"][2]
    client.infer("vessa_assistant", case, {"save_label": True, "label_tag": "final"})
    labels = client.datastore()["objects"][case]["labels"]
    assert "vessa" in labels and "final" not in labels


def test_active_learning_proposes_an_unlabelled_image(client, app_data):
    sample = client.next_sample("vessa_disagreement", {})
    assert sample["id"] in app_data["unlabeled"]
    assert 0.0 <= sample["disagreement"] <= 1.0


def test_approved_label_joins_the_template_bank(client, app_data):
    case = app_data["unlabeled"][3]
    before = TemplateBank.load(app_data["ckpt"] / "bank.pt")
    label_file = app_data["dataset"] / app_data["entries"][case]["label"]
    client.save_label(case, str(label_file), tag="final")
    assert "final" in client.datastore()["objects"][case]["labels"]
    after = TemplateBank.load(app_data["ckpt"] / "bank.pt")
    assert len(after) == len(before) + 1 and case in after.ids


def test_interactive_on_a_volume_propagates_from_the_clicked_slice(app_data, tmp_path):
    """Clicks on one slice of a 3D volume: that slice and its neighbours get the label, far slices do not."""
    import nibabel as nib
    import SimpleITK as sitk

    from vessa.data.sample_data import generate_sample_dataset

    generate_sample_dataset(tmp_path / "3d", kind="3d", num_train=1, num_val=0, num_test=0, size=96, depth=12)
    image_path = next((tmp_path / "3d" / "imagesTr").glob("*.nii.gz"))
    truth = np.asanyarray(nib.load(str(next((tmp_path / "3d" / "labelsTr").glob("*.nii.gz")))).dataobj)
    z = 6
    rows, cols = np.nonzero(truth[..., z] == LABELS["cavity"])
    click = [int(np.median(rows)), int(np.median(cols)), z]  # NIfTI clicks are [i, j, k] voxel indices
    task = InteractiveSegmentation(ServedModels(REPO, app_data["ckpt"], device="cpu"), propagate=2)
    path, result = task({"image": str(image_path), "foreground": [click], "result_extension": ".nrrd"})  # as OHIF asks: no label, NRRD
    assert result["label"] == "cavity"  # the clicked structure decides when no label is given
    label = sitk.GetArrayFromImage(sitk.ReadImage(path)).transpose(2, 1, 0)
    assert label.shape == truth.shape
    assert label[click[0], click[1], z] == LABELS["cavity"]
    assert set(result["slices"]) <= {4, 5, 6, 7, 8} and z in result["slices"]
    assert not label[..., :3].any() and not label[..., 10:].any()


def test_short_training_bumps_the_served_model(client, app_data):
    before = client.infer("vessa_student", app_data["unlabeled"][0], {})[1]["model_versions"]["student"]
    client.train_start("vessa_stage2", {"iterations": 4, "method": "supervised", "assistant": "none", "device": "cpu"})
    deadline = time.time() + 600
    status = client.train_status()
    while status["status"] not in ("DONE", "ERROR") and time.time() < deadline:
        time.sleep(2)
        status = client.train_status()
    assert status["status"] == "DONE", status
    after = client.infer("vessa_student", app_data["unlabeled"][0], {})[1]["model_versions"]["student"]
    assert after > before


def test_stage2_training_on_several_gpus_runs_torchrun_with_the_multi_gpu_overlay(app_data, tmp_path, monkeypatch):
    from monailabel.datastore.local import LocalDatastore

    from lib.trainers.vessa_train import VessaTrainTask

    ckpt = Path(shutil.copytree(app_data["ckpt"], tmp_path / "models"))
    studies = Path(shutil.copytree(app_data["studies"], tmp_path / "studies"))
    task = VessaTrainTask(ServedModels(REPO, ckpt, device="cpu"), "stage2", ["stage2.json"], tmp_path / "work")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    commands = []
    monkeypatch.setattr(task, "_run_command", lambda cmd, env: commands.append((cmd, env)))
    task({"multi_gpu": True, "iterations": 8, "method": "unimatch", "assistant": "vessa"}, LocalDatastore(str(studies), extensions=["*.png"]))
    ((cmd, env),) = commands
    assert cmd[:4] == ["torchrun", "--standalone", "--nnodes=1", "--nproc_per_node=2"] and cmd[4:8] == ["-m", "monai.bundle", "run", "training"]
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1"
    args = json.loads(Path(cmd[cmd.index("--args_file") + 1]).read_text())
    assert [Path(c).name for c in args["config_file"]] == ["stage2.json", "multi_gpu_train.json"]
    assert args["iterations"] == 8 and args["method"] == "unimatch" and args["ckpt_dir"] == str(ckpt.resolve())
    assert (tmp_path / "work" / "stage2" / "data" / "dataset.json").is_file()  # the datastore, written as a data set


def test_random_next_sample_answers_when_every_image_was_just_served():
    """MONAI Label's own random strategy raises when each unlabelled image was served within the current second."""
    from lib.activelearning.random import LeastRecentRandom

    class Served:  # the two datastore calls a strategy makes
        info = {i: {"strategy": {"random": {"ts": int(time.time())}}} for i in ("a", "b")}

        def get_unlabeled_images(self, label_tag=None, labels=None):
            return ["a", "b"]

        def get_image_info(self, image_id):
            return self.info[image_id]

    assert LeastRecentRandom()({"strategy": "random"}, Served())["id"] in ("a", "b")
    Served.info["b"]["strategy"]["random"]["ts"] -= 10**6  # served long ago: all but certainly chosen
    assert [LeastRecentRandom()({"strategy": "random"}, Served())["id"] for _ in range(20)].count("b") >= 19


def test_only_monai_labels_background_jobs_are_recognised():
    from lib.priority import background_job

    app = "/opt/venv/lib/python3.11/site-packages/monailabel/interfaces/utils/app.py"  # as `python -m` sets argv[0]
    assert background_job([app, "-m", "train", "-r", "{}"]) == "train"
    assert background_job([app, "--method", "scoring", "-r", "{}"]) == "scoring"
    assert background_job([app, "-m", "infer", "-r", "{}"]) is None  # a one-off inference asked for at the command line
    assert background_job(["/opt/venv/bin/monailabel", "start_server", "--app", "apps/vessa_label"]) is None  # the server


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="per-thread nice values as Linux keeps them")
def test_a_background_process_yields_the_cpu_on_every_thread():
    """The nice value reaches each thread of the process, the ones already running too."""
    from lib.priority import lower_cpu_priority

    code = "import threading, time; threading.Thread(target=time.sleep, args=(60,), daemon=True).start(); print(flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        proc.stdout.readline()  # its second thread is running
        tasks = [int(t.name) for t in Path(f"/proc/{proc.pid}/task").iterdir()]
        assert len(tasks) == 2
        start = os.getpriority(os.PRIO_PROCESS, proc.pid)  # the test run's own nice value, inherited
        wanted = min(start + 5, 19)
        lower_cpu_priority(wanted, pid=proc.pid)
        assert [os.getpriority(os.PRIO_PROCESS, t) for t in tasks] == [wanted, wanted]
        lower_cpu_priority(start, pid=proc.pid)  # never raises a priority back
        assert [os.getpriority(os.PRIO_PROCESS, t) for t in tasks] == [wanted, wanted]
    finally:
        proc.kill()
        proc.wait()


def test_ohif_viewer_answers(server):
    with urllib.request.urlopen(server.url + "/ohif/", timeout=30) as response:
        assert response.status == 200 and b"<html" in response.read().lower()


def test_sam2_from_local_files_is_served_by_monai_labels_own_task(tmp_path):
    """--conf sam2_checkpoint / sam2_config: MONAI Label's SAM2 task runs on the local files (no download)."""
    import nibabel as nib
    import sam2
    from sam2.build_sam import build_sam2

    from main import VessaLabelApp
    from vessa.data.sample_data import generate_sample_dataset

    config = Path(sam2.__file__).parent / "configs" / "sam2.1" / "sam2.1_hiera_t.yaml"
    checkpoint = tmp_path / "sam2.1_hiera_tiny_random.pt"
    torch.save({"model": build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", ckpt_path=None, device="cpu").state_dict()}, checkpoint)
    generate_sample_dataset(tmp_path / "3d", kind="3d", num_train=1, num_val=0, num_test=0)
    studies = tmp_path / "studies"
    studies.mkdir()
    shutil.copy(tmp_path / "3d" / "imagesTr" / "case_000.nii.gz", studies / "case_000.nii.gz")
    conf = {"ckpt_dir": str(tmp_path / "models"), "work_dir": str(tmp_path / "work"), "device": "cpu", "models": "sam_2d", "sam2_checkpoint": str(checkpoint), "sam2_config": str(config)}
    app = VessaLabelApp(str(APP), str(studies), conf)
    assert set(app.info()["models"]) == {"sam_2d"}
    result = app.infer({"model": "sam_2d", "image": "case_000", "foreground": [[48, 48, 6]]})
    assert np.asanyarray(nib.load(result["file"]).dataobj).shape == (96, 96, 12)
