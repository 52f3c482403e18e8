"""Benchmark-only diagnostic (not a test): does a trained student over- or under-segment its unlabelled images?

For each MoNuSeg run folder (``runs/bench/monuseg/<setting>/<run>``, as ``benchmarks/monuseg.py`` leaves them) it
predicts the unlabelled training images of the run's ``split.json`` with the selected checkpoint
(``models/model.pt``), at the 224 x 224 of the protocol, and prints the share of pixels marked foreground beside the
share that is, and the mean Dice, from their hidden labels. The test split is never read.

    python benchmarks/foreground_fraction.py --data /data/monuseg runs/bench/monuseg/monuseg0.25_s1/unimatch+none
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from stage2 import resized

from vessa.data import load_datalist
from vessa.evaluation.student import load_eval_volumes, predict_volume_slicewise
from vessa.metrics import case_metrics
from vessa.networks.students import StudentUNet

STUDENT_FEATURES = json.loads((Path(__file__).resolve().parents[1] / "configs" / "stage2.json").read_text())["student_features"]


def foreground_shares(run_dir: Path, data: str, size: int = 224) -> dict:
    """Predicted and true foreground share (%) and mean Dice (%) of the run's student on its unlabelled cases."""
    unlabeled = set(json.loads((run_dir / "split.json").read_text())["unlabeled"])
    datalist = load_datalist(data)
    volumes = [resized(v, size) for v in load_eval_volumes(datalist, "training", "slice") if v["id"] in unlabeled]
    network = StudentUNet(spatial_dims=2, features=STUDENT_FEATURES, in_channels=volumes[0]["image"].shape[0], out_channels=len(datalist.label_values))
    network.load_state_dict(torch.load(run_dir / "models" / "model.pt", map_location="cpu", weights_only=True))
    network.eval()
    values = np.asarray(sorted(datalist.label_values))  # output channel k is label value values[k]
    predicted, true, dice = [], [], []
    for v in volumes:
        pred, label = values[predict_volume_slicewise(network, v["image"], size, "cpu")], np.asarray(v["label"])
        predicted.append((pred > 0).mean())
        true.append((label > 0).mean())
        dice.append(np.mean([m["dice"] for m in case_metrics(pred, label, values).values()]))
    return {"cases": len(volumes), "predicted": 100 * np.mean(predicted), "true": 100 * np.mean(true), "dice": 100 * np.mean(dice)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="the MoNuSeg folder built by ../shared/tools/prepare_data.py monuseg")
    parser.add_argument("runs", nargs="+", type=Path, help="run folders holding split.json and models/model.pt")
    args = parser.parse_args()
    for run in args.runs:
        if not (run / "split.json").is_file() or not (run / "models" / "model.pt").is_file():
            raise SystemExit(f"{run} has no split.json or models/model.pt: give the folder of a finished MoNuSeg run")
        r = foreground_shares(run, args.data)
        print(f"{run}: {r['cases']} unlabelled images, foreground marked {r['predicted']:.1f} % (true {r['true']:.1f} %), Dice {r['dice']:.1f}")


if __name__ == "__main__":
    main()
