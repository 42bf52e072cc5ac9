"""Seeded, epoch-aware, rank-sharded sampling shared by both data loaders.

Every random choice the data pipeline makes is a pure function of ``(seed, epoch, index)``:

- the order of an epoch is ``torch.randperm`` seeded with ``seed + epoch``, exactly as
  :class:`~torch.utils.data.DistributedSampler` does, and each of the ``world_size`` ranks takes its
  own stride of it;
- the sampler yields ``(epoch, index)`` keys instead of bare indices, so the dataset can derive
  each image's augmentation from ``(seed, epoch, index)`` without any RNG state to carry — even in
  persistent DataLoader workers, which never see the main process's objects again.

Consequences: a run resumed at an epoch boundary sees exactly the data the uninterrupted run would
have seen; the augmentation of an image does not depend on the batch size, the number of workers
or the number of ranks; and two runs with the same seed see the same data.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import DistributedSampler

MASK32 = 0xFFFFFFFF
GOLDEN32 = 0x9E3779B9


def mix32(x):
    """A 32-bit integer hash (Chris Wellons' lowbias32, ``0x21f0aaad/0x735a2d97`` variant).

    Works alike on Python ints and on int64 tensors (element-wise, any device): both multipliers are
    below 2**31 and values stay below 2**32, so no int64 product overflows.
    """
    x = x & MASK32
    x = x ^ (x >> 16)
    x = (x * 0x21F0AAAD) & MASK32
    x = x ^ (x >> 15)
    x = (x * 0x735A2D97) & MASK32
    return x ^ (x >> 15)


def combine(*values: int) -> int:
    """Hash several integers (seeds, epochs) into one 32-bit value."""
    h = 0x6A09E667
    for value in values:
        h = mix32(h ^ mix32((value & MASK32) + GOLDEN32) ^ mix32((value >> 32) & MASK32))
    return h


def sample_keys(seed: int, epochs: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """One 32-bit random key per (epoch, index), as int64 on the indices' device."""
    keys = mix32(mix32(epochs) ^ combine(seed))
    return mix32(keys ^ mix32(indices + 0x85EBCA6B))


def key_field(keys: torch.Tensor, field: int) -> torch.Tensor:
    """Independent 32-bit draws from the same keys: field 0 for the crop row, 1 the column..."""
    return mix32(keys + (field + 1) * GOLDEN32)


def split_key(key) -> tuple[int, int]:
    """A dataset key is an ``int`` (plain indexing) or an ``(epoch, index)`` pair from the sampler."""
    if isinstance(key, tuple):
        return int(key[0]), int(key[1])
    return -1, int(key)


class EpochSampler(DistributedSampler):
    """``DistributedSampler`` that yields ``(epoch, index)`` and can shard without repeats.

    With ``even=True`` (training) it is ``DistributedSampler`` exactly: every rank gets the same
    number of samples, padding with repeats when the dataset does not divide. With ``even=False``
    (validation, test) rank ``r`` gets indices ``r, r + world, ...`` and nothing is repeated, so
    metrics synced over ranks count every image once, like a single process does.

    Lightning sees a ``DistributedSampler`` and leaves it in place (no sampler injection), and calls
    ``set_epoch`` at every epoch start, resumed runs included.
    """

    def __init__(
        self,
        dataset,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        even: bool = True,
    ) -> None:
        super().__init__(
            dataset,
            num_replicas=num_replicas,
            rank=rank,
            shuffle=shuffle,
            seed=seed,
            drop_last=False,
        )
        self.even = even
        if not even:
            self.num_samples = len(range(rank, len(dataset), num_replicas))
            self.total_size = len(dataset)

    def indices(self) -> list[int]:
        n = len(self.dataset)
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(n, generator=generator).tolist()
        else:
            order = list(range(n))
        if self.even and len(order) < self.total_size:
            repeats = math.ceil((self.total_size - len(order)) / len(order))
            order += (order * repeats)[: self.total_size - len(order)]
        return order[self.rank : self.total_size : self.num_replicas]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return iter([(epoch, index) for index in self.indices()])
