"""Built-in synthetic sample data (deterministic, nothing downloaded).

Cardiac-like anatomy: an elliptical bright cavity (1) inside a darker ring-shaped wall (2) of variable
thickness, with a crescent (3) attached on one side. Random position, scale, rotation and ellipticity per
case, unlabelled distractor blobs of similar intensity, class intensities that overlap (neighbouring means
differ by less than 1.5 noise standard deviations), Gaussian noise, a smooth multiplicative bias field and a
slight blur. Not separable by intensity thresholds: shape and context are needed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import numpy as np

from vessa.errors import DataError

KINDS = ("2d", "2d_rgb", "3d")
SAMPLE_LABELS = {0: "background", 1: "cavity", 2: "wall", 3: "crescent"}
_MEANS = {0: 0.38, 2: 0.52, 3: 0.62, 1: 0.70}
_NOISE = 0.10


def _case_params(rng: np.random.Generator, size: int) -> dict:
    return {
        "cx": size / 2 + rng.uniform(-0.15, 0.15) * size,
        "cy": size / 2 + rng.uniform(-0.15, 0.15) * size,
        "theta": rng.uniform(0, np.pi),
        "a": rng.uniform(0.11, 0.17) * size,
        "ell": rng.uniform(0.65, 1.0),
        "t0": rng.uniform(0.22, 0.45),
        "tvar": rng.uniform(0.1, 0.4),
        "k": int(rng.integers(1, 4)),
        "phase": rng.uniform(0, 2 * np.pi),
        "psi": rng.uniform(0, 2 * np.pi),
        "cr": rng.uniform(0.75, 1.1),
        "drift": rng.uniform(-0.04, 0.04, size=2) * size,
        "jitter": rng.normal(0, 0.02, size=4),
        "bias": rng.normal(0, 0.12, size=5),
        "distractors": [
            {
                "x": rng.uniform(0.1, 0.9) * size,
                "y": rng.uniform(0.1, 0.9) * size,
                "rx": rng.uniform(0.03, 0.08) * size,
                "ry": rng.uniform(0.03, 0.08) * size,
                "rot": rng.uniform(0, np.pi),
                "val": rng.uniform(0.56, 0.74),
                "z0": rng.uniform(0.2, 0.8),
                "rz": rng.uniform(0.2, 0.5),
            }
            for _ in range(int(rng.integers(2, 5)))
        ],
    }


def _anatomy(p: dict, xx: np.ndarray, yy: np.ndarray, s: float, zn: float) -> np.ndarray:
    """Label map of one slice; ``s`` scales the structures, ``zn`` in [0,1] is the slice position."""
    label = np.zeros(xx.shape, np.uint8)
    if s <= 0.08:
        return label
    cx = p["cx"] + p["drift"][0] * (zn - 0.5)
    cy = p["cy"] + p["drift"][1] * (zn - 0.5)
    dx, dy = xx - cx, yy - cy
    c, si = np.cos(p["theta"]), np.sin(p["theta"])
    u, v = dx * c + dy * si, -dx * si + dy * c
    a, b = p["a"] * s, p["a"] * p["ell"] * s
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    phi = np.arctan2(v / b, u / a)
    t = p["t0"] * (1 + p["tvar"] * np.sin(p["k"] * phi + p["phase"]))
    outer = rho < 1 + t
    d = a * (1 + p["t0"]) * 0.9
    ccx, ccy = cx + d * np.cos(p["psi"]), cy + d * np.sin(p["psi"])
    disk = (xx - ccx) ** 2 + (yy - ccy) ** 2 < (p["cr"] * a) ** 2
    label[disk & ~outer] = 3
    label[outer] = 2
    label[rho < 1] = 1
    return label


def _distractors(p: dict, xx, yy, label, zn: float | None) -> np.ndarray:
    """Intensity image of unlabelled blobs, only where the label is background (0 elsewhere)."""
    out = np.zeros(xx.shape, np.float32)
    for q in p["distractors"]:
        f = 1.0
        if zn is not None:
            r = 1 - ((zn - q["z0"]) / q["rz"]) ** 2
            if r <= 0.05:
                continue
            f = float(np.sqrt(r))
        c, s = np.cos(q["rot"]), np.sin(q["rot"])
        dx, dy = xx - q["x"], yy - q["y"]
        u, v = dx * c + dy * s, -dx * s + dy * c
        blob = (u / (q["rx"] * f)) ** 2 + (v / (q["ry"] * f)) ** 2 < 1
        out[blob & (label == 0)] = q["val"]
    return out


def _render(p: dict, rng: np.random.Generator, label: np.ndarray, xx, yy, size: int, zn: float | None) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    means = np.array([_MEANS[k] for k in range(4)], np.float32)
    means = means + np.array([0.0, p["jitter"][0], p["jitter"][1], p["jitter"][2]], np.float32)
    clean = means[np.minimum(label, 3)]
    texture = gaussian_filter(rng.normal(size=xx.shape).astype(np.float32), sigma=size / 16)
    texture *= 0.04 / (texture.std() + 1e-6)
    clean = clean + np.where(label == 0, texture, 0)
    blobs = _distractors(p, xx, yy, label, zn)
    clean = np.where(blobs > 0, blobs, clean)
    clean = gaussian_filter(clean, sigma=0.7)
    X, Y = (xx / size - 0.5) * 2, (yy / size - 0.5) * 2
    c = p["bias"]
    bias = np.exp(c[0] * X + c[1] * Y + c[2] * X * Y + c[3] * (X**2 - 0.33) + c[4] * (Y**2 - 0.33))
    if zn is not None:
        bias = bias * (1 + 0.1 * (zn - 0.5))
    return (clean * bias + rng.normal(0, _NOISE, size=xx.shape)).astype(np.float32)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 200 + 20), 0, 255).astype(np.uint8)


def _make_case(kind: str, rng: np.random.Generator, size: int, depth: int):
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    p = _case_params(rng, size)
    if kind == "3d":
        imgs, labs = [], []
        for z in range(depth):
            zn = z / (depth - 1) if depth > 1 else 0.5
            s = float(np.sin(np.pi * zn) ** 0.6) if depth > 1 else 1.0
            lab = _anatomy(p, xx, yy, s, zn)
            imgs.append(_render(p, rng, lab, xx, yy, size, zn))
            labs.append(lab)
        return np.stack(imgs, -1).astype(np.float32), np.stack(labs, -1).astype(np.uint8)
    lab = _anatomy(p, xx, yy, 1.0, 0.5)
    img = _render(p, rng, lab, xx, yy, size, None)
    if kind == "2d_rgb":
        tint = rng.uniform(0.8, 1.0, size=3)
        rgb = np.stack(
            [
                img * tint[0],
                img * 0.85 * tint[1] + 0.05,
                img * 0.7 * tint[2] + 0.15 + rng.normal(0, 0.03, size=img.shape),
            ],
            -1,
        )
        mask = np.where(lab == 1, 255, 0).astype(np.uint8)
        return _to_uint8(rgb), mask
    return _to_uint8(img), lab.astype(np.uint8)


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write`` on a temporary file beside ``path`` (same suffixes) and rename it into place, so that a
    process reading the data set while another one writes it (two DDP ranks, say) never sees a half-written file."""
    tmp = path.with_name(f".{os.getpid()}.{path.name}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def generate_sample_dataset(
    out_dir: str | Path,
    kind: str = "2d",
    num_train: int = 24,
    num_val: int = 6,
    num_test: int = 8,
    size: int = 96,
    depth: int = 12,
    seed: int = 0,
) -> Path:
    """Write a synthetic data set (images, labels, ``dataset.json``) to ``out_dir``; return the dataset.json path.

    ``kind``: "2d" (grayscale PNG, masks with class indices 0..3), "2d_rgb" (RGB PNG, 0/255 masks of one class
    "cavity") or "3d" (NIfTI volumes size x size x depth). Same arguments give byte-identical files.
    """
    if kind not in KINDS:
        raise DataError(f"Unknown sample data kind {kind!r}; use one of {list(KINDS)}.")
    if num_train < 1 or size < 16 or depth < 3:
        raise DataError(
            f"Sample data needs num_train >= 1, size >= 16 and depth >= 3 (got {num_train}, {size}, {depth})."
        )
    out = Path(out_dir).expanduser().resolve()
    ext = ".nii.gz" if kind == "3d" else ".png"
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    labels = dict(SAMPLE_LABELS) if kind != "2d_rgb" else {0: "background", 1: "cavity"}

    def write(name: str, img_dir: str, lab_dir: str, rng: np.random.Generator) -> dict:
        img, lab = _make_case(kind, rng, size, depth)
        img_rel, lab_rel = f"{img_dir}/{name}{ext}", f"{lab_dir}/{name}{ext}"
        if kind == "3d":
            import nibabel as nib

            affine = np.eye(4)
            _write_atomically(out / img_rel, lambda p: nib.save(nib.Nifti1Image(img, affine), str(p)))
            _write_atomically(out / lab_rel, lambda p: nib.save(nib.Nifti1Image(lab, affine), str(p)))
        else:
            from PIL import Image

            _write_atomically(out / img_rel, lambda p: Image.fromarray(img).save(p))
            _write_atomically(out / lab_rel, lambda p: Image.fromarray(lab, mode="L").save(p))
        return {"image": img_rel, "label": lab_rel}

    sections = {"training": [], "validation": [], "test": []}
    plan = [("training", num_train, "case", "imagesTr", "labelsTr"),
            ("validation", num_val, "case", "imagesTr", "labelsTr"),
            ("test", num_test, "test", "imagesTs", "labelsTs")]
    index = {"case": 0, "test": 0}
    for s_i, (section, n, prefix, idir, ldir) in enumerate(plan):
        for _ in range(n):
            i = index[prefix]
            index[prefix] += 1
            rng = np.random.default_rng([seed, KINDS.index(kind), s_i, i])
            sections[section].append(write(f"{prefix}_{i:03d}", idir, ldir, rng))

    meta = {
        "name": f"VESSA sample ({kind})",
        "description": "Synthetic cardiac-like images: cavity, wall and crescent, with unlabelled distractors, "
        "overlapping intensities, noise, bias field and blur. Generated by vessa.data.generate_sample_dataset.",
        "tensorImageSize": "3D" if kind == "3d" else "2D",
        "modality": {"0": "synthetic RGB"} if kind == "2d_rgb" else {"0": "synthetic MR"},
        "labels": {str(k): v for k, v in labels.items()},
        "numTraining": num_train,
        "numTest": num_test,
        "generator": {"kind": kind, "size": size, "depth": depth if kind == "3d" else 1, "seed": seed},
        **sections,
    }
    path = out / "dataset.json"  # written last: once it exists, every file it lists is complete
    _write_atomically(path, lambda p: p.write_text(json.dumps(meta, indent=2) + "\n"))
    return path
