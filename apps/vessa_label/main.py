"""VESSA for MONAI Label: the student, the reference-guided assistant and its interactive mode served to
3D Slicer and OHIF, with stage-1 / stage-2 training on the datastore and disagreement-driven active learning.

    monailabel start_server --app apps/vessa_label --studies <images folder or DICOMweb URL> [--conf key value ...]

Conf keys (all optional): ``bundle_root`` (the VESSA bundle, default: this repository), ``ckpt_dir`` (the
checkpoints served and written by training: model.pt, assistant.pt, bank.pt; default
<bundle_root>/models/label_<studies name>, one folder per datastore), ``work_dir`` (training data lists and logs;
default <bundle_root>/runs/label_<studies name>), ``device`` (cpu / cuda), ``models`` (``all`` or a comma list of
vessa_student, vessa_assistant, vessa_interactive, sam_2d), ``student_configs`` (comma list; a 3D student:
``stage2.json,stage2_3d.json``), ``student_overrides`` (JSON of config ids the student was trained with,
e.g. ``{"student_features": [8, 16, 32, 64, 128]}``), ``propagate`` (slices each way an interactive mask is propagated), ``click_mode`` (``paint``, the default:
a disk per click edits the mask the assistant refines; ``learnt``: the assistant's own response to clicks),
``num_templates``, ``base_assistant`` (VESSA-base, default <bundle_root>/models/vessa_base.pt: served as the
assistant until stage 1 has been trained in ckpt_dir, with a template bank of the approved labels), ``sam2_checkpoint`` and ``sam2_config`` (local SAM2 files: adds MONAI Label's own SAM2
task), ``text_model`` (local text-model folder for the class texts: stage 1, text_vlm), ``labels`` (JSON {name: value} before a bank exists),
``background_nice`` (CPU priority, a Unix nice value, of the trainings, scorings and batch inferences the server runs
in processes of their own; default 10, so that the annotators' requests come first; 0: the server's own).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from fastapi import HTTPException
from fastapi.responses import JSONResponse
from monailabel.config import settings
from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore, DefaultLabelTag
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.tasks.activelearning.first import First

from lib.activelearning.disagreement import Disagreement
from lib.activelearning.random import LeastRecentRandom
from lib.datastore import CheckedDatastore
from lib.infers.assistant import AssistantSegmentation
from lib.infers.interactive import InteractiveSegmentation
from lib.infers.student import StudentSegmentation
from lib.priority import BACKGROUND_NICE, background_job, lower_cpu_priority
from lib.scoring.disagreement import DisagreementScoring
from lib.served import ServedModels, datastore_name
from lib.template_bank_sync import add_approved_label
from lib.trainers.vessa_train import VessaTrainTask
from vessa.errors import VessaError

logger = logging.getLogger(__name__)

APP_DIR = Path(__file__).resolve().parent
INFERS = ("vessa_student", "vessa_assistant", "vessa_interactive", "sam_2d")
OUTPUT_TAG = "vessa"  # model outputs saved in the datastore go under this tag, never "final"


def answer_invalid_json() -> None:
    """Answer a request whose ``params`` form field is not JSON with 400 and the parser's message.

    MONAI Label's endpoints ``json.loads`` that field themselves, so without this it is a 500 with no message.
    Starlette copies the exception handlers when it builds its middleware stack, hence the rebuild on the next request.
    """
    from monailabel.app import app as server

    async def invalid_json(request, err: json.JSONDecodeError) -> JSONResponse:
        return JSONResponse(status_code=400, content={"detail": f"The 'params' field is not valid JSON ({err.msg}, position {err.pos}): send a JSON object, e.g. {{\"label\": \"lv\"}}."})

    if json.JSONDecodeError not in server.exception_handlers:
        server.add_exception_handler(json.JSONDecodeError, invalid_json)
        server.middleware_stack = None


class VessaLabelApp(MONAILabelApp):
    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        nice, job = int(conf.get("background_nice", BACKGROUND_NICE)), background_job()
        if job and nice > 0:
            lower_cpu_priority(nice)
            logger.info(f"MONAI Label {job} process: CPU priority lowered to nice {nice}, the annotators' requests come first")
        bundle_root = Path(conf.get("bundle_root", APP_DIR.parents[1])).resolve()
        if not (bundle_root / "configs" / "stage2.json").is_file():
            raise ValueError(f"--conf bundle_root {bundle_root} is not a VESSA bundle (no configs/stage2.json): point it at the repository root.")
        device = conf.get("device", "cuda" if torch.cuda.is_available() else "cpu")
        labels = {int(v): k for k, v in json.loads(conf["labels"]).items()} if conf.get("labels") else None
        if labels is not None:
            labels[0] = "background"
        name = f"label_{datastore_name(studies)}"
        self.served = ServedModels(
            bundle_root,
            conf.get("ckpt_dir", bundle_root / "models" / name),
            [c.strip() for c in conf.get("student_configs", "stage2.json").split(",")],
            device,
            labels,
            int(conf.get("num_templates", 5)),
            json.loads(conf.get("student_overrides", "{}")),
            conf.get("base_assistant"),
        )
        self.work_dir = Path(conf.get("work_dir", bundle_root / "runs" / name))
        wanted = conf.get("models", "all")
        self.wanted = list(INFERS) if wanted == "all" else [m.strip() for m in wanted.split(",") if m.strip()]
        unknown = [m for m in self.wanted if m not in INFERS]
        if unknown:
            raise ValueError(f"--conf models: unknown {unknown}; available: {', '.join(INFERS)} (or all)")
        super().__init__(app_dir=app_dir, studies=studies, conf=conf, name="VESSA", description="Semi-supervised segmentation with a reference-guided assistant", version="0.2.0")
        if "monailabel.app" in sys.modules:  # served by `monailabel start_server`, not run by main() below
            answer_invalid_json()

    def init_datastore(self) -> Datastore:
        """A local studies folder through :class:`CheckedDatastore` (ids, empty files and label shapes checked
        before anything is written); DICOMweb and other remote datastores as MONAI Label serves them."""
        if self.studies.startswith(("http://", "https://")):
            return super().init_datastore()
        return CheckedDatastore(
            self.studies,
            extensions=settings.MONAI_LABEL_DATASTORE_FILE_EXT,
            auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
            read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY,
        )

    def init_infers(self) -> dict[str, InferTask]:
        tasks = {
            "vessa_student": lambda: StudentSegmentation(self.served),
            "vessa_assistant": lambda: AssistantSegmentation(self.served),
            "vessa_interactive": lambda: InteractiveSegmentation(self.served, int(self.conf.get("propagate", 5)), self.conf.get("click_mode", "paint")),
        }
        infers = {name: build() for name, build in tasks.items() if name in self.wanted}
        if "sam_2d" in self.wanted and self.conf.get("sam2_checkpoint"):
            infers["sam_2d"] = self._sam2_task()
        return infers

    def _sam2_task(self) -> InferTask:
        """MONAI Label's own SAM2 task on local files: they are linked into a folder under the names it expects,
        so its download step finds them and fetches nothing."""
        checkpoint, config = Path(self.conf["sam2_checkpoint"]), Path(self.conf.get("sam2_config", ""))
        for path, what in ((checkpoint, "sam2_checkpoint"), (config, "sam2_config")):
            if not path.is_file():
                raise ValueError(f"--conf {what} {path} does not exist: give the local SAM2 checkpoint (.pt) and its model config (.yaml).")
        model_dir = self.work_dir / "sam2"
        model_dir.mkdir(parents=True, exist_ok=True)
        for path in (checkpoint, config):
            target = model_dir / path.name
            if not target.exists():
                os.symlink(path.resolve(), target)
        settings.MONAI_SAM_MODEL_PT, settings.MONAI_SAM_MODEL_CFG = str(checkpoint), str(config)
        from monailabel.sam2.infer import Sam2InferTask

        labels = {name: value for value, name in self.served.labels().items() if value != 0}
        return Sam2InferTask(str(model_dir), dimension=2, labels=labels, additional_info={"nnodes": 1})

    def init_trainers(self) -> dict:
        student_configs = [c.strip() for c in self.conf.get("student_configs", "stage2.json").split(",")]
        return {
            "vessa_stage1": VessaTrainTask(self.served, "stage1", ["stage1.json"], self.work_dir, self.conf.get("text_model")),
            "vessa_stage2": VessaTrainTask(self.served, "stage2", student_configs, self.work_dir, self.conf.get("text_model")),
        }

    def init_strategies(self) -> dict:
        return {"vessa_disagreement": Disagreement(self.served), "random": LeastRecentRandom(), "first": First()}

    def init_scoring_methods(self) -> dict:
        return {"vessa_disagreement": DisagreementScoring(self.served)}

    def infer(self, request: dict, datastore=None) -> dict:
        """MONAI Label's infer, with model outputs kept off the ``final`` tag and bad input answered clearly."""
        if request.get("label_tag", OUTPUT_TAG) == DefaultLabelTag.FINAL.value:
            logger.warning(f"Model output of {request.get('model')} is saved under '{OUTPUT_TAG}', not 'final': only an annotator approves labels.")
        request = {**request, "label_tag": OUTPUT_TAG if request.get("label_tag") in (None, DefaultLabelTag.FINAL.value) else request["label_tag"]}
        if isinstance(request.get("image"), str) and not self._servable(request["image"]):
            raise HTTPException(status_code=404, detail=f"Image {request['image']!r} is not in the datastore: use an image id from /datastore/, or upload the file with the request.")
        try:
            return super().infer(request, datastore)
        except VessaError as err:
            raise HTTPException(status_code=422, detail=f"{request.get('model')}: {err}") from err

    def _servable(self, image: str) -> bool:
        """An image id, or a file MONAI Label itself put there (an upload, a session); not any path on this machine.

        MONAI Label reads ``image`` as a file whenever that path exists, which would let a request read any image on
        the server (``?image=/path/of/anything``)."""
        if ".." in Path(image).parts:
            return False
        if os.sep not in image and (os.altsep or os.sep) not in image:
            return True  # an id: the datastore looks it up
        where = [tempfile.gettempdir(), self.sessions().store_path if self.sessions() else None]
        resolved = os.path.realpath(image)
        return any(root and os.path.commonpath([resolved, os.path.realpath(root)]) == os.path.realpath(root) for root in where)

    def on_save_label(self, image_id: str, label_id: str) -> dict:
        """An approved label joins the assistant's template bank at once."""
        datastore = self.datastore()
        tags = datastore.get_labels_by_image_id(image_id)
        if tags and DefaultLabelTag.FINAL.value not in tags:  # saved under another tag: not an approval
            return {}
        try:
            # the label as saved on the image's grid (a DICOMweb datastore keeps it in its local cache beside the SEG it sent)
            label_path = LocalDatastore.get_label_uri(datastore, label_id, DefaultLabelTag.FINAL.value)
            added = add_approved_label(self.served, image_id, datastore.get_image_uri(image_id), label_path)
        except (VessaError, ValueError) as err:
            logger.warning(f"Approved label of {image_id} not added to the template bank: {err}")
            return {"bank_error": str(err)}
        return {"bank_exemplars_added": added}


def main() -> None:
    """Run an infer or a train task of the app locally, without the server (as MONAI Label's radiology app does)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-s", "--studies", required=True, help="folder of images (the datastore)")
    parser.add_argument("-m", "--model", default="vessa_student", help=f"an infer task ({', '.join(INFERS)}) or a trainer (vessa_stage1, vessa_stage2)")
    parser.add_argument("-i", "--image", help="image id to segment (default: the first image)")
    parser.add_argument("-p", "--params", default="{}", help="JSON request parameters (clicks, label, iterations ...)")
    parser.add_argument("-c", "--conf", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"))
    parser.add_argument("-o", "--output", help="copy the label file here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] [%(levelname)s] (%(name)s) - %(message)s")
    settings.MONAI_LABEL_AUTO_UPDATE_SCORING = False  # no server to post the background scoring to
    app = VessaLabelApp(str(APP_DIR), os.path.realpath(args.studies), dict(args.conf))
    params = json.loads(args.params)
    if args.model.startswith("vessa_stage"):
        print(json.dumps(app.train({"model": args.model, **params}), indent=2, default=str))
        return
    image = args.image or sorted(app.datastore().list_images())[0]
    try:
        result = app.infer({"model": args.model, "image": image, **params})
    except HTTPException as err:
        raise SystemExit(f"vessa_label: {err.detail}")
    if args.output:
        shutil.copy(result["file"], args.output)
    print(json.dumps({k: v for k, v in result.items() if k != "file"}, indent=2, default=str))


if __name__ == "__main__":
    main()
