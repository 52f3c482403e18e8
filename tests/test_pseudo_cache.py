"""Cached pseudo-labels: refined once per image until stale, warped into each augmented view."""

import torch

from vessa.data.episodes import augment_pair
from vessa.training.pseudo_cache import PseudoLabelCache, warp


def _batch(indices, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    plain = torch.rand(len(indices), 1, size, size, generator=g)
    views = [augment_pair(p, torch.zeros(size, size, dtype=torch.long), g, return_theta=True) for p in plain]
    return {"u_index": torch.tensor(indices), "u_plain": plain, "u_image": torch.stack([v[0] for v in views]), "u_theta": torch.stack([v[2] for v in views])}


def test_warping_with_the_identity_keeps_the_map():
    labels = torch.randint(0, 3, (2, 16, 16))
    identity = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).repeat(2, 1, 1)
    assert torch.equal(warp(labels, identity, "nearest").long(), labels)


def test_the_cached_label_follows_the_augmentation_like_the_image_does():
    g = torch.Generator().manual_seed(1)
    label = torch.zeros(32, 32, dtype=torch.long)
    label[8:20, 10:24] = 2
    image = label[None].float() / 2
    _, aug_label, theta = augment_pair(image, label, g, return_theta=True)
    assert torch.equal(warp(label[None], theta[None], "nearest").long()[0], aug_label)


def test_each_image_is_refined_once_until_it_is_stale():
    calls = []

    def refine_plain(images, rows):
        calls.append(len(rows))
        return torch.ones(len(rows), 16, 16, dtype=torch.long), torch.full((len(rows), 16, 16), 0.5)

    cache = PseudoLabelCache(refresh_every=10)
    labels, weights = cache.lookup(_batch([0, 1, 2]), 1, refine_plain)
    assert labels.shape == (3, 16, 16) and torch.all(labels == 1) and torch.allclose(weights, torch.tensor(0.5))
    cache.lookup(_batch([1, 2, 3], seed=1), 5, refine_plain)  # only image 3 is new
    cache.lookup(_batch([0, 3], seed=2), 11, refine_plain)  # image 0 (from iteration 1) is stale now
    cache.lookup(_batch([4, 4], seed=3), 12, refine_plain)  # twice in one batch: refined once
    assert calls == [3, 1, 1, 1] and cache.refinements == 6
