"""The DeepEdit-style baseline of ``benchmarks/clicks.py`` (not a test): a 2D UNet trained as MONAI Label's
DeepEdit app trains, with MONAI's own ``monai.apps.deepedit`` transforms and ``Interaction``.

Input: the slice and one Gaussian guidance channel per label (background included); output: a softmax over the
labels. Training on the labelled cases' slices (at ``SIZE``): an initial seed click per connected region of each
label (``AddInitialSeedPointMissingLabelsd``), then, with ``deepgrow_probability`` 0.4 (MONAI Label's DeepEdit
default), ``MAX_INTERACTIONS`` rounds of the model's own prediction, each adding clicks in its discrepancy with a
probability falling from 1 (``FindDiscrepancyRegionsDeepEditd``, ``AddRandomGuidanceDeepEditd``), before the
update; otherwise the guidance zeroed (DeepEdit's automatic mode). MONAI Label's 3D app runs 20 rounds; 10 here,
so that the same wall time buys twice the updates. Batch 1, as DeepEdit trains (MONAI's ``Interaction`` zeroes the guidance of the
first item of a batch only). Trained for a wall-time budget, the fine-tuning time of the assistant it is compared
with. At a click session the foreground clicks go to the structure's channel and the background clicks to the
background's; the answer is where the argmax is the structure.

    python benchmarks/deepedit_baseline.py --dataset_dir ../shared/data/acdc --labeled 3 --minutes 12
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
RUNS = REPO / "runs" / "bench" / "clicks"
SIZE = 256
MAX_INTERACTIONS = 10


def network(num_labels: int) -> torch.nn.Module:
    from monai.networks.nets import UNet

    return UNet(spatial_dims=2, in_channels=1 + num_labels, out_channels=num_labels, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2)


def label_names(labels: dict[int, str]) -> dict[str, int]:
    """DeepEdit's ``label_names``: name -> value, background 0 first."""
    return {("background" if value == 0 else name): int(value) for value, name in sorted(labels.items())}


def _per_sample_guidance():
    """MONAI's AddRandomGuidanceDeepEditd keeps the guidance on the transform: a sample that draws no click gets
    the previous sample's, and samples share one dict. This keeps each sample's own, as a JSON string per label."""
    from monai.apps.deepedit.transforms import AddRandomGuidanceDeepEditd

    class PerSampleRandomGuidance(AddRandomGuidanceDeepEditd):
        def __call__(self, data):
            self.guidance = {}
            out = super().__call__(data)
            guidance = out[self.guidance_key] if self._will_interact else data[self.guidance_key]
            out[self.guidance_key] = {k: v if isinstance(v, str) else json.dumps(v, default=int) for k, v in guidance.items()}
            return out

    return PerSampleRandomGuidance(keys="NA", guidance="guidance", discrepancy="discrepancy", probability="probability")


def training_items(dataset_dir: Path, labeled) -> tuple[list[dict], dict[str, int]]:
    """The labelled cases' slices as DeepEdit items: image (1, SIZE, SIZE) volume-normalised (as the click benchmark
    reads its test slices), label (1, SIZE, SIZE)."""
    from monai.transforms import Resize

    from vessa.data.prepare import prepare_data

    data = prepare_data(dataset_dir, labeled, train_normalize="volume")
    names = label_names(data["labels"])
    image_resize, label_resize = Resize((SIZE, SIZE), mode="bilinear"), Resize((SIZE, SIZE), mode="nearest")
    items = []
    for s in data["labeled_slices"]:
        image = torch.as_tensor(s["image"][:1], dtype=torch.float32)
        label = torch.as_tensor(s["label"][None], dtype=torch.float32)
        items.append({"image": np.asarray(image_resize(image)), "label": np.asarray(label_resize(label)), "label_names": names, "sids": {n: [] for n in names}})
    return items, names


def train(dataset_dir: Path, labeled, minutes: float, out: Path, seed: int = 0) -> Path:
    """Train the baseline for ``minutes`` of wall time; ``out`` gets its weights (kept: a second call reuses them)."""
    from monai.apps.deepedit.interaction import Interaction
    from monai.apps.deepedit.transforms import AddGuidanceSignalDeepEditd, AddInitialSeedPointMissingLabelsd, FindDiscrepancyRegionsDeepEditd
    from monai.data import DataLoader, Dataset
    from monai.engines import SupervisedTrainer
    from monai.inferers import SimpleInferer
    from monai.losses import DiceCELoss
    from monai.transforms import Activationsd, AsDiscreted, RandFlipd, RandRotated, RandShiftIntensityd, SelectItemsd, ToNumpyd, ToTensord
    from monai.utils import set_determinism
    from ignite.engine import Events

    from vessa.torch_files import atomic_torch_save

    if out.is_file():
        return out
    logging.getLogger("monai.apps.deepedit.transforms").setLevel(logging.WARNING)
    set_determinism(seed)
    items, names = training_items(dataset_dir, labeled)
    pre = [
        RandFlipd(keys=("image", "label"), prob=0.5, spatial_axis=1),
        RandRotated(keys=("image", "label"), range_x=0.26, prob=0.5, mode=("bilinear", "nearest")),
        RandShiftIntensityd(keys="image", offsets=0.1, prob=0.5),
        ToNumpyd(keys=("image", "label")),
        AddInitialSeedPointMissingLabelsd(keys="label", guidance="guidance", sids="sids"),
        AddGuidanceSignalDeepEditd(keys="image", guidance="guidance", number_intensity_ch=1),
        ToTensord(keys=("image", "label")),
        SelectItemsd(keys=("image", "label", "label_names", "guidance")),
    ]
    clicks = [
        Activationsd(keys="pred", softmax=True),
        AsDiscreted(keys="pred", argmax=True),
        ToNumpyd(keys=("image", "label", "pred")),
        FindDiscrepancyRegionsDeepEditd(keys="label", pred="pred", discrepancy="discrepancy"),
        _per_sample_guidance(),
        AddGuidanceSignalDeepEditd(keys="image", guidance="guidance", number_intensity_ch=1),
        ToTensord(keys=("image", "label")),
    ]
    from monai.transforms import Compose

    net = network(len(names))
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=10_000,
        train_data_loader=DataLoader(Dataset(items, Compose(pre)), batch_size=1, shuffle=True),
        network=net,
        optimizer=torch.optim.Adam(net.parameters(), 1e-3),
        loss_function=DiceCELoss(to_onehot_y=True, softmax=True),
        inferer=SimpleInferer(),
        iteration_update=Interaction(deepgrow_probability=0.4, transforms=clicks, train=True, label_names=names, max_interactions=MAX_INTERACTIONS),
    )
    start, losses = time.time(), []

    @trainer.on(Events.ITERATION_COMPLETED)
    def _budget(engine) -> None:
        losses.append(float(engine.state.output[0]["loss"]) if isinstance(engine.state.output, list) else float(engine.state.output["loss"]))
        if engine.state.iteration % 200 == 0:
            print(f"DeepEdit-style: iteration {engine.state.iteration}, {(time.time() - start) / 60:.1f} min, loss (last 200) {np.mean(losses[-200:]):.3f}", flush=True)
        if time.time() - start > 60 * minutes:
            engine.terminate()

    trainer.run()
    atomic_torch_save({"state_dict": net.state_dict(), "label_names": names, "iterations": trainer.state.iteration, "train_seconds": round(time.time() - start, 1)}, out)
    print(f"DeepEdit-style: {trainer.state.iteration} iterations in {(time.time() - start) / 60:.1f} min -> {out}")
    return out


class DeepEditClicker:
    """The trained baseline answering a click session on one slice."""

    def __init__(self, path: Path) -> None:
        from vessa.torch_files import load_plain

        state = load_plain(path, "DeepEdit-style baseline")
        self.names: dict[str, int] = state["label_names"]
        self.net = network(len(self.names))
        self.net.load_state_dict(state["state_dict"])
        self.net.eval()
        self.iterations, self.train_seconds = state["iterations"], state["train_seconds"]

    def answer(self, image: np.ndarray, value: int, clicks: list) -> np.ndarray:
        """The (H, W) mask of label ``value`` after ``clicks`` (((x, y) pixel, 1 | 0)) on the (C, H, W) slice."""
        from monai.apps.deepedit.transforms import AddGuidanceSignalDeepEditd
        from monai.transforms import Resize

        h, w = image.shape[-2:]
        small = np.asarray(Resize((SIZE, SIZE), mode="bilinear")(torch.as_tensor(image[:1], dtype=torch.float32)))
        name = next(n for n, v in self.names.items() if v == value)
        guidance = {n: [] for n in self.names}
        for (x, y), flag in clicks:
            guidance[name if flag == 1 else "background"].append([0, y * SIZE / h, x * SIZE / w])
        signal = AddGuidanceSignalDeepEditd(keys="image", guidance="guidance", number_intensity_ch=1)({"image": small, "guidance": guidance})["image"]
        with torch.inference_mode():
            labels = self.net(torch.as_tensor(signal)[None]).argmax(1, keepdim=True).float()
        label = Resize((h, w), mode="nearest")(labels[0])[0]
        return np.asarray(label) == value  # the label values are the softmax channels (to_onehot_y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_dir", type=Path, required=True)
    parser.add_argument("--labeled", default="3")
    parser.add_argument("--minutes", type=float, required=True, help="wall-time budget (the assistant's fine-tuning time)")
    args = parser.parse_args()
    from vessa_base import split_key

    dataset_dir = args.dataset_dir.resolve()
    train(dataset_dir, split_key(dataset_dir, args.labeled), args.minutes, RUNS / f"{dataset_dir.name}{args.labeled}_deepedit" / "deepedit.pt")


if __name__ == "__main__":
    main()
