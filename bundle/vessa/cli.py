"""The ``vessa`` command line (python-fire): what a user does by hand."""

from __future__ import annotations

import json
import time
from pathlib import Path

import fire

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIGS = REPO_ROOT / "configs"


def _bundle(run_id: str, config_files: list[str], bundle_root: str | Path, **overrides) -> None:
    """``python -m monai.bundle run <run_id>`` on our configs with ``--key value`` overrides, in this process
    (MONAI's own ``monai.bundle.run``; one import of MONAI for every step of the demo). An error in it ends the
    command with its message as the last line (:func:`vessa.errors.install_excepthook`)."""
    import monai.bundle

    files = [str(CONFIGS / f) for f in config_files]
    settings = {k: v for k, v in overrides.items() if v is not None}
    monai.bundle.run(run_id, config_file=files if len(files) > 1 else files[0], logging_file=str(CONFIGS / "logging.conf"), bundle_root=str(bundle_root), **settings)


def _stage2_configs(volumes: bool) -> list[str]:
    return ["stage2.json", "stage2_3d.json"] if volumes else ["stage2.json"]


class VessaCLI:
    """VESSA: reference-guided segmentation assistant and semi-supervised training (MONAI bundle)."""

    def sample_data(self, out_dir: str = "sample_data/2d", kind: str = "2d", seed: int = 0) -> str:
        """Write the built-in synthetic data set (kind: 2d, 2d_rgb or 3d) as a Decathlon-style folder."""
        from vessa.data import generate_sample_dataset

        path = generate_sample_dataset(out_dir, kind=kind, seed=seed)
        print(f"Sample data set written: {path}")
        return str(path)

    def stage1(self, dataset_dir: str | None = None, labeled=None, iterations: int | None = None, bundle_root: str = ".") -> None:
        """Train the assistant (stage 1); every other setting: python -m monai.bundle run training --config_file configs/stage1.json --id value."""
        _bundle("training", ["stage1.json"], bundle_root, dataset_dir=dataset_dir, labeled=labeled, iterations=iterations)

    def pretrain(self, exclude: str | list[str] | None = None, name: str | None = None, iterations: int | None = None, bundle_root: str = ".") -> None:
        """Pre-train VESSA-base across data sets (configs/pretrain.json; ``--exclude acdc`` leaves one out, ``--name``
        names the checkpoint in models/); stopped and started again, it resumes."""
        excluded = [exclude] if isinstance(exclude, str) else list(exclude) if exclude is not None else None
        _bundle("training", ["pretrain.json"], bundle_root, exclude=excluded, name=name, iterations=iterations)

    def evaluate_assistant(self, dataset_dir: str | None = None, split: str = "test", labeled=None, assistant_path: str | None = None, bundle_root: str = ".") -> None:
        """Dice of the assistant per class on a split, against copying the retrieved template's mask. With
        ``--assistant_path models/vessa_base.pt`` the untrained base segments from templates of ``--labeled`` cases."""
        _bundle("evaluating", ["stage1.json", "evaluate_assistant.json"], bundle_root, dataset_dir=dataset_dir, eval_split=split, labeled=labeled, assistant_path=assistant_path)

    def stage2(self, dataset_dir: str | None = None, labeled=None, method: str | None = None, assistant: str | None = None, iterations: int | None = None, volumes: bool = False, bundle_root: str = ".") -> None:
        """Semi-supervised student training (stage 2); ``--volumes`` trains a 3D student (configs/stage2_3d.json)."""
        _bundle("training", _stage2_configs(volumes), bundle_root, dataset_dir=dataset_dir, labeled=labeled, method=method, assistant=assistant, iterations=iterations)

    def evaluate(self, dataset_dir: str | None = None, split: str = "test", volumes: bool = False, bundle_root: str = ".") -> None:
        """Dice, Jaccard, HD95 and ASD of the trained student per class on a split (ACDC: slice by slice; ``--volumes``: 3D sliding window)."""
        _bundle("evaluating", _stage2_configs(volumes) + ["evaluate.json"], bundle_root, dataset_dir=dataset_dir, eval_split=split)

    def segment(self, input_dir: str, output_dir: str | None = None, bundle_root: str = ".") -> None:
        """Segment every PNG / NIfTI file of a folder with the trained assistant and its template bank."""
        _bundle("run", ["inference.json"], bundle_root, input_dir=input_dir, output_dir=output_dir)

    def demo(self, bundle_root: str = ".", iterations: int = 300, image_size: int = 64, stage2_iterations: int = 200) -> None:
        """The whole job on the built-in sample data in a few minutes on a CPU: the assistant (stage 1, at the
        sample images' scale), then the student with the assistant in the loop (stage 2, UniMatch + vessa) beside
        a supervised-only student on the same split and budget, both evaluated on the held-out test split."""
        start = time.time()
        root = Path(bundle_root)
        models, runs, reports = root / "models" / "sample_2d", root / "runs" / "sample_2d", root / "eval" / "sample_2d"
        print(f"VESSA demo: training the assistant for {iterations} iterations on the built-in sample data (CPU is fine)...")
        _bundle("training", ["stage1.json"], bundle_root, iterations=iterations, image_size=image_size)
        split = json.loads((runs / "stage1" / "split.json").read_text())
        print(
            f"\nTrained the VESSA assistant on {len(split['labeled'])} labelled cases ({', '.join(split['labeled'])}); "
            f"{len(split['unlabeled'])} training cases stay unlabelled for stage 2. Held-out evaluation on the test split:"
        )
        self.evaluate_assistant(bundle_root=bundle_root, split="test")
        budget = {"iterations": stage2_iterations, "batch_size": 4, "patch_size": 96, "epoch_length": 50, "val_interval": 1}
        runs_by_name = {
            "supervised only": ("supervised", "none", models / "supervised", runs / "stage2_supervised"),
            "UniMatch + VESSA assistant": ("unimatch", "vessa", models, runs / "stage2"),
        }
        dice = {}
        for name, (method, assistant, ckpt_dir, run_dir) in runs_by_name.items():
            print(f"\nStage 2, {name}: {stage2_iterations} iterations on the same split...")
            _bundle("training", ["stage2.json"], bundle_root, method=method, assistant=assistant, ckpt_dir=str(ckpt_dir), assistant_dir=str(models), run_dir=str(run_dir), **budget)
            eval_dir = reports / method
            _bundle("evaluating", ["stage2.json", "evaluate.json"], bundle_root, ckpt_dir=str(ckpt_dir), eval_dir=str(eval_dir), patch_size=budget["patch_size"])
            dice[name] = json.loads((eval_dir / "student_test.json").read_text())["summary"]["mean"]["dice"]
        print("\nStudent mean Dice on the held-out test split: " + ", ".join(f"{n} {100 * d:.1f}" for n, d in dice.items()))
        print("(one seed at a demo budget: single sample-data runs spread by a few Dice points; docs/results.md has the measured comparisons)")
        print(f"Demo finished in {time.time() - start:.0f} s. Checkpoints in {models}, logs in {runs}, reports in {reports}.")


def main() -> None:
    fire.Fire(VessaCLI, name="vessa")
