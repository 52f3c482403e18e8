"""Random streams of the training data sets: item i of a run is drawn from a generator of its own, seeded by
(seed, rank, i), so batches do not depend on how many DataLoader workers make them."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset


def item_generator(seed: int, rank: int, index: int) -> torch.Generator:
    """The generator of item ``index`` of rank ``rank``'s stream (NumPy's SeedSequence mixes the three)."""
    high, low = np.random.SeedSequence([int(seed), int(rank), int(index)]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed((int(high) << 32) | int(low))


class RandomStreamDataset(Dataset):
    """Base of the random training data sets: ``length`` items, item i drawn from ``item_generator(seed, rank, start + i)``.

    The same seed gives the same batches with any number of DataLoader workers; each rank of a multi-GPU run
    (``rank``) draws a stream of its own; a resumed run sets ``start`` to the items already drawn and goes on
    with the stream instead of repeating its beginning (:class:`vessa.training.checkpoints.ResumableCheckpoint`).
    Make ``length`` the items of the whole run (iterations x batch size): ignite keeps one iterator over it.
    """

    def __init__(self, length: int, seed: int = 0, rank: int = 0) -> None:
        self.length = int(length)
        self.seed = int(seed)
        self.rank = int(rank)
        self.start = 0

    def __len__(self) -> int:
        return self.length

    def generator(self, index: int) -> torch.Generator:
        return item_generator(self.seed, self.rank, self.start + index)
