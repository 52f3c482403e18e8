"""Random streams of the training data: the same batches for the same seed whatever the DataLoader workers,
a stream of its own per rank, and a resumed run that goes on with its stream."""

import pytest
import torch
from torch.utils.data import DataLoader

from vessa.data.semi import SemiSupervisedDataset


def _slices(n: int, with_labels: bool) -> list[dict]:
    g = torch.Generator().manual_seed(n)
    out = []
    for i in range(n):
        s = {"id": f"case_{i}", "image": torch.rand(1, 40, 40, generator=g).numpy(), "slice_pos": 0.5}
        if with_labels:
            s["label"] = (torch.rand(40, 40, generator=g) > 0.5).long().numpy()
        out.append(s)
    return out


def _dataset(seed: int = 0, rank: int = 0) -> SemiSupervisedDataset:
    return SemiSupervisedDataset(_slices(4, True), _slices(6, False), patch_size=32, length=12, seed=seed, rank=rank)


def _batches(dataset, workers: int) -> list[dict]:
    return list(DataLoader(dataset, batch_size=3, num_workers=workers))


def _same(a: list[dict], b: list[dict]) -> bool:
    return all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in x)


@pytest.mark.parametrize("workers", [1, 2])
def test_dataloader_workers_give_the_batches_of_the_main_process(workers):
    assert _same(_batches(_dataset(), 0), _batches(_dataset(), workers))


def test_seeds_and_ranks_draw_streams_of_their_own():
    base = _batches(_dataset(), 0)
    assert not _same(base, _batches(_dataset(seed=1), 0))
    assert not _same(base, _batches(_dataset(rank=1), 0))


def test_a_resumed_stream_goes_on_where_it_stopped():
    whole = _batches(_dataset(), 0)
    resumed = _dataset()
    resumed.start = 6  # two batches of three already drawn
    assert _same(whole[2:], _batches(resumed, 0)[:2])
