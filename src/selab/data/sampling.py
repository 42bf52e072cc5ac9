"""Seeded, epoch-aware, rank-sharded order, and the per-image random keys of augmentation.

Every random choice of the data pipeline is a pure function of ``(seed, epoch, index)``:

- the order of an epoch is ``torch.randperm`` seeded with ``seed + epoch``, padded and strided
  over ranks exactly as :class:`~torch.utils.data.DistributedSampler` does
  (:func:`shard_indices`), for both loaders;
- an image's crop, flip, cutout... come from a 32-bit key hashed from ``(seed, epoch, index)``
  (:func:`sample_keys`), computed on whatever device holds the indices, with no RNG state.

So a run resumed at an epoch boundary sees exactly what the uninterrupted run would have seen,
an image is augmented the same way whatever the batch size, the workers or the ranks, and two
runs with the same seed see the same data.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DistributedSampler

MASK32 = 0xFFFFFFFF
GOLDEN32 = 0x9E3779B9


def mix32(x):
    """A 32-bit integer hash (Chris Wellons' lowbias32, ``0x21f0aaad/0x735a2d97`` variant).

    Works alike on Python ints and on int64 tensors (element-wise, any device): both multipliers
    are below 2**31 and values stay below 2**32, so no int64 product overflows.
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


def sample_keys(seed: int, epoch, indices: torch.Tensor) -> torch.Tensor:
    """One 32-bit random key per (epoch, index), as int64 on the indices' device.

    ``epoch`` is an int or a tensor broadcastable to ``indices``."""
    keys = mix32(mix32(torch.as_tensor(epoch, device=indices.device)) ^ combine(seed))
    return mix32(keys ^ mix32(indices + 0x85EBCA6B))


def key_field(keys: torch.Tensor, field: int) -> torch.Tensor:
    """Independent 32-bit draws from the same keys: one field per random choice."""
    return mix32(keys + (field + 1) * GOLDEN32)


def split_key(key) -> tuple[int, int]:
    """A dataset key is an ``int`` (plain indexing) or an ``(epoch, index)`` pair from the sampler."""
    if isinstance(key, tuple):
        return int(key[0]), int(key[1])
    return -1, int(key)


def shard_size(n: int, world_size: int) -> int:
    """Images per rank and epoch in training: ``ceil(n / world)``, as DistributedSampler pads."""
    return -(-n // world_size)


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The epoch's order of ``n`` images, on the CPU: DistributedSampler's ``randperm``."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))


def shard_positions(n: int, world_size: int = 1, rank: int = 0) -> torch.Tensor:
    """Positions in the padded epoch order that ``rank`` reads: ``rank, rank + world, ...``."""
    return torch.arange(rank, shard_size(n, world_size) * world_size, world_size)


def shard_indices(
    n: int, seed: int, epoch: int, world_size: int = 1, rank: int = 0
) -> torch.Tensor:
    """The image indices ``rank`` trains on in ``epoch``, in order, on the CPU.

    Identical to ``DistributedSampler(shuffle=True, drop_last=False)``: the permutation is padded
    with its own beginning to a multiple of the world size, then strided over ranks."""
    return epoch_permutation(n, seed, epoch)[shard_positions(n, world_size, rank) % n]


class EpochSampler(DistributedSampler):
    """Training order for the per-image loader: ``DistributedSampler`` yielding ``(epoch, index)``.

    The dataset derives each image's augmentation from the key, so it needs no RNG state (even in
    persistent workers, which never see the main process's objects again). Lightning sees a
    ``DistributedSampler``, leaves it in place and calls ``set_epoch`` at every epoch start,
    resumed runs included.
    """

    def __init__(self, dataset, num_replicas: int = 1, rank: int = 0, seed: int = 0) -> None:
        super().__init__(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False
        )

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        indices = shard_indices(len(self.dataset), self.seed, epoch, self.num_replicas, self.rank)
        return iter([(epoch, index) for index in indices.tolist()])


class EvalSampler(DistributedSampler):
    """Evaluation shard without repeats: rank ``r`` reads positions ``r, r + world, ...``.

    Metrics synced over ranks then count every image exactly once, as one process would. With
    ``padded_length`` it then yields ``None`` up to that length (a multiple of the batch size,
    equal on every rank): the dataset turns those into padding. The class-mixed order lives in
    the evaluation split itself (:mod:`selab.data.splits`). A ``DistributedSampler``, so that
    Lightning leaves it in place under DDP.
    """

    def __init__(
        self, dataset, num_replicas: int = 1, rank: int = 0, padded_length: int | None = None
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.positions = range(rank, len(dataset), num_replicas)
        self.num_samples = padded_length or len(self.positions)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int | None]:
        yield from self.positions
        yield from [None] * (self.num_samples - len(self.positions))


class EpochCounter:
    """What Lightning calls ``set_epoch`` on for loaders that are not DataLoaders."""

    def __init__(self) -> None:
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
