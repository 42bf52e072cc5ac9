"""Which images train, which validate, and in which order evaluation sees them."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .errors import DataError


def default_val_size(train_images: int) -> int:
    """10% of the training images: 5,000 of CIFAR-10's 50,000, 500 of STL10's 5,000."""
    return max(1, round(train_images / 10)) if train_images > 1 else 0


def stratified_split(
    targets: Sequence[int], val_size: int, seed: int
) -> tuple[list[int], list[int]]:
    """Split indices into (train, val) with ``val_size`` images spread over classes in proportion.

    Deterministic for a given seed; class quotas use largest remainders so they sum to val_size.
    """
    targets = torch.as_tensor(list(targets))
    if not 0 < val_size < len(targets):
        raise DataError(
            f"val_size {val_size} does not fit the {len(targets)} training images: set "
            f"--data.val_size between 1 and {len(targets) - 1} (0 validates on the test split)"
        )
    generator = torch.Generator().manual_seed(seed)
    classes, counts = targets.unique(return_counts=True)
    exact = counts.double() * val_size / len(targets)
    quota = exact.floor().long()
    remainder = val_size - int(quota.sum())
    quota[torch.argsort(exact - quota, descending=True, stable=True)[:remainder]] += 1
    held_out = torch.zeros(len(targets), dtype=torch.bool)
    for label, take in zip(classes.tolist(), quota.tolist(), strict=True):
        members = (targets == label).nonzero().flatten()
        held_out[members[torch.randperm(len(members), generator=generator)[:take]]] = True
    return (~held_out).nonzero().flatten().tolist(), held_out.nonzero().flatten().tolist()


def class_mixed_order(targets: Sequence[int], seed: int) -> list[int]:
    """A fixed order of an evaluation split in which every prefix is class-balanced.

    Class ``c`` with ``n_c`` images puts its k-th image (in a seeded random order) at the
    fractional position ``(k + u_c) / n_c``, ``u_c`` a seeded offset in [0, 1); sorting by
    position interleaves the classes so that the first ``m`` images hold within one image of
    ``m * n_c / n`` of each class. ``--trainer.limit_val_batches`` and ``limit_test_batches`` then
    measure every class in proportion, not the first few class folders.
    """
    targets = torch.as_tensor(list(targets), dtype=torch.int64)
    if len(targets) == 0:
        return []
    generator = torch.Generator().manual_seed(seed)
    position = torch.empty(len(targets), dtype=torch.float64)
    for label in targets.unique().tolist():
        members = (targets == label).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        offset = torch.rand((), generator=generator, dtype=torch.float64)
        position[members] = (torch.arange(len(members), dtype=torch.float64) + offset) / len(
            members
        )
    order = torch.randperm(len(targets), generator=generator)  # ties in a random class order
    return order[torch.argsort(position[order], stable=True)].tolist()
