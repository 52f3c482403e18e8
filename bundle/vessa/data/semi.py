"""Stage-2 batches: each item pairs a labelled slice with an unlabelled one (weak and strong views)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from vessa.data.episodes import augment_pair
from vessa.data.streams import RandomStreamDataset
from vessa.data.template_bank import resize_image, resize_label


def strong_view(image: torch.Tensor, generator: torch.Generator, clamp: bool = True) -> torch.Tensor:
    """Intensity perturbation of a (C, ...spatial) 2D or 3D image: contrast, brightness, blur and noise
    (UniMatch's strong stream, grayscale); ``clamp`` keeps a [0, 1] image in [0, 1] (off for z-scored volumes)."""
    r = lambda lo, hi: float(lo + (hi - lo) * torch.rand(1, generator=generator))  # noqa: E731
    spread = float(image.std()) if not clamp else 1.0
    x = (image - image.mean()) * r(0.6, 1.4) + image.mean() + r(-0.15, 0.15) * spread
    if torch.rand(1, generator=generator) < 0.5:
        pool = F.avg_pool2d if image.dim() == 3 else F.avg_pool3d
        x = pool(x[None], 3, 1, 1, count_include_pad=False)[0]
    x = x + torch.randn(x.shape, generator=generator) * r(0.0, 0.08) * spread
    return x.clamp(0, 1) if clamp else x


def cutmix_box(size: int | tuple[int, ...], generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """A 0/1 box of shape ``size`` (an int: square 2D) covering 2-40 % of it with probability ``p`` (else empty),
    as UniMatch samples it; in 3D the box spans a random 40-100 % of the last (depth) axis."""
    shape = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
    box = torch.zeros(shape)
    if torch.rand(1, generator=generator) > p:
        return box
    h_img, w_img = shape[:2]
    area = float(0.02 + 0.38 * torch.rand(1, generator=generator)) * h_img * w_img
    ratio = float(torch.empty(1).uniform_(0.3, 1 / 0.3, generator=generator))
    h, w = min(h_img, int((area * ratio) ** 0.5)), min(w_img, int((area / ratio) ** 0.5))
    y = int(torch.randint(0, h_img - h + 1, (1,), generator=generator))
    x = int(torch.randint(0, w_img - w + 1, (1,), generator=generator))
    if len(shape) == 2:
        box[y : y + h, x : x + w] = 1
    else:
        d = max(1, int(shape[2] * float(0.4 + 0.6 * torch.rand(1, generator=generator))))
        z = int(torch.randint(0, shape[2] - d + 1, (1,), generator=generator))
        box[y : y + h, x : x + w, z : z + d] = 1
    return box


class SemiSupervisedDataset(RandomStreamDataset):
    """Random pairs of a labelled slice (with its label) and an unlabelled slice (never with a label).

    Items: ``image``/``label`` (labelled, augmented), and when there are unlabelled slices,
    ``u_image`` (weak view), ``u_strong1``/``u_strong2`` (strong views of the same weak view),
    ``u_box1``/``u_box2`` (CutMix boxes), ``u_pos`` (relative slice position, for template retrieval),
    ``u_index`` (position in ``unlabeled_slices``), and ``u_plain`` / ``u_theta`` (the un-augmented
    image and the affine that made the weak view from it, for cached pseudo-labels). When any slice carries a
    ``text`` (the case's own sentence), items also hold ``text`` and ``u_text`` ("" for a case without one).
    ``length`` items in the
    whole run, drawn from the random stream of ``seed`` and ``rank`` (:class:`RandomStreamDataset`).
    """

    def __init__(self, labeled_slices: list[dict], unlabeled_slices: list[dict], patch_size: int = 256, length: int = 100, seed: int = 0, rank: int = 0) -> None:
        if any("label" in s for s in unlabeled_slices):
            raise ValueError("unlabelled slices must not carry labels: load them with load_slices(..., with_labels=False)")
        super().__init__(length, seed, rank)
        self.labeled = labeled_slices
        self.unlabeled = unlabeled_slices
        self.patch_size = patch_size
        self.has_text = any(s.get("text") for s in [*labeled_slices, *unlabeled_slices])

    def __getitem__(self, index: int) -> dict:
        g, size = self.generator(index), self.patch_size
        s = self.labeled[int(torch.randint(0, len(self.labeled), (1,), generator=g))]
        image, label = augment_pair(resize_image(s["image"], size), resize_label(s["label"], size), g)
        item = {"image": image, "label": label}
        if self.has_text:
            item["text"] = s.get("text", "")
        if self.unlabeled:
            u_index = int(torch.randint(0, len(self.unlabeled), (1,), generator=g))
            u_img = resize_image(self.unlabeled[u_index]["image"], size)
            weak, _, theta = augment_pair(u_img, torch.zeros(size, size, dtype=torch.long), g, return_theta=True)
            item.update(
                u_image=weak,
                u_plain=u_img,
                u_theta=theta,
                u_strong1=strong_view(weak, g),
                u_strong2=strong_view(weak, g),
                u_box1=cutmix_box(size, g),
                u_box2=cutmix_box(size, g),
                u_index=u_index,
                u_pos=float(self.unlabeled[u_index].get("slice_pos", 0.5)),
            )
            if self.has_text:
                item["u_text"] = self.unlabeled[u_index].get("text", "")
        return item
