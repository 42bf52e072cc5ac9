"""The memory loader: each split held once as uint8 on the training device; epochs built there.

At the start of every training epoch, :class:`TrainEpochs` draws the epoch's order (the same
permutation as ``DistributedSampler``; each rank takes its stride), gathers this rank's images
and applies the whole epoch's augmentation in a few batched ops (translate, flip, RandAugment or
TrivialAugment, normalise, cutout, MixUp/CutMix). A training step then only slices the finished
float32 tensor: no index tensors built from Python lists, no per-image work, no device-to-host
read. CIFAR-10 is 150 MB as uint8 (and its float epoch 600 MB), so it fits any GPU.

Evaluation (:class:`EvalBatches`) slices this rank's shard of the split (stored in a class-mixed
order) and normalises each batch. With ``pad`` every batch has the full size: the last one is
completed with zero images whose target is :data:`IGNORE_INDEX` (``-100``, the ``ignore_index``
of ``torch.nn.functional.cross_entropy``), and every rank gets the same number of batches, so a
compiled model never sees a new shape.
"""

from __future__ import annotations

import contextlib
import os

import torch
from torch.utils.data import Dataset

from .augment import AugmentSpec, Normalize
from .batched import auto_augment, auto_augment_keys, beta_draws, cutout_mask, geometry, mix
from .sampling import (
    EpochCounter,
    combine,
    epoch_permutation,
    sample_keys,
    shard_positions,
    shard_size,
)

IGNORE_INDEX = -100
# uint8 per augmentation chunk: few large ops on a GPU; on a CPU, chunks that stay in cache.
CHUNK_BYTES = {"cuda": 64 << 20, "cpu": 2 << 20}


class DeviceSplit(Dataset):
    """A split as uint8 images (N, C, H, W) and int64 labels on one device.

    ``split[i]`` is ``(normalised float32 image, label)`` like the per-image loader's datasets
    (for notebooks and checks); loaders slice :attr:`images` directly. ``names`` identify the
    images in prediction CSVs (file paths, or indices in the source split)."""

    def __init__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        normalize: Normalize,
        names: list[str] | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(
                f"expected uint8 (N, C, H, W) images, got {images.dtype} {images.shape}"
            )
        if len(images) != len(targets):
            raise ValueError(f"{len(images)} images but {len(targets)} labels")
        self.images = images
        self.targets = targets.to(device=images.device, dtype=torch.int64)
        self.normalize = normalize.to(images.device)
        self.names = names if names is not None else [str(i) for i in range(len(images))]

    def __len__(self) -> int:
        return len(self.images)

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device) -> DeviceSplit:
        self.images = self.images.to(device)
        self.targets = self.targets.to(device)
        self.normalize = self.normalize.to(device)
        return self

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.normalize(self.images[index]), int(self.targets[index])

    def batch(self, indices: list[int]):
        """Normalised images, labels and names of ``indices`` (prediction batches)."""
        index = torch.as_tensor(indices, dtype=torch.int64, device=self.device)
        images = self.normalize(self.images.index_select(0, index))
        return images, self.targets[index], [self.names[i] for i in indices]


class PredictView(Dataset):
    """A :class:`DeviceSplit` for ``DataLoader(..., collate_fn=keep)``: one gather per batch,
    returning ``(images, targets, names)``."""

    def __init__(self, split: DeviceSplit) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitems__(self, indices: list[int]):
        return self.split.batch(indices)


class TrainEpochs:
    """Training batches ``(images float32, targets)`` from a :class:`DeviceSplit`.

    Lightning calls ``sampler.set_epoch(epoch)`` at every epoch start (resumed runs included);
    iterating then builds that epoch. Image ``i`` in epoch ``e`` gets the augmentation drawn from
    ``(seed, e, i)``, whatever the batch size or the number of ranks. Its MixUp/CutMix partner is
    the image before it in this rank's epoch (on one rank, the previous image of the epoch's
    permutation), taken already augmented, as torchvision pairs an image with the previous one of
    its batch.
    """

    def __init__(
        self,
        split: DeviceSplit,
        batch_size: int,
        spec: AugmentSpec,
        seed: int,
        num_classes: int,
        world_size: int = 1,
        rank: int = 0,
        drop_last: bool = True,
    ) -> None:
        self.split = split
        self.batch_size = batch_size
        self.spec = spec
        self.seed = seed
        self.num_classes = num_classes
        self.world_size = world_size
        self.rank = rank
        self.drop_last = drop_last
        self.sampler = EpochCounter()
        self._auto = spec.auto_augment_transform()

    def __len__(self) -> int:
        images = shard_size(len(self.split), self.world_size)
        return images // self.batch_size if self.drop_last else -(-images // self.batch_size)

    def __iter__(self):
        with one_cpu_thread(self.split.device):
            images, targets = self.build(self.sampler.epoch)
        size = self.batch_size
        for start in range(0, len(images), size):
            yield images[start : start + size], targets[start : start + size]

    def build(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's epoch, augmented and normalised: float32 (M, C, H, W) and targets (M,) or
        class probabilities (M, K), M = the images of its full batches."""
        n = len(self.split)
        device = self.split.device
        permutation = epoch_permutation(n, self.seed, epoch)
        positions = shard_positions(n, self.world_size, self.rank)
        if self.drop_last:
            positions = positions[: len(self) * self.batch_size]
        indices_cpu = permutation[positions % n]
        indices = indices_cpu.to(device, non_blocking=True)
        count = len(indices)
        out = torch.empty((count, *self.split.images.shape[1:]), device=device)
        targets = self.split.targets[indices]
        if self.spec.mixes:
            # The first image's partner is the one before this rank's first position.
            first_cpu = permutation[(positions[:1] - self.world_size) % n]
            previous, _ = self.augment(first_cpu.to(device), first_cpu, epoch)
            partners_cpu = torch.cat([first_cpu, indices_cpu[:-1]])
            partners = partners_cpu.to(device, non_blocking=True)
            soft = torch.empty((count, self.num_classes), device=device)
            lam_mixup = beta_draws(self.spec.mixup_alpha, n, combine(self.seed, epoch, 1))
            lam_cutmix = beta_draws(self.spec.cutmix_alpha, n, combine(self.seed, epoch, 2))
        chunk_bytes = CHUNK_BYTES.get(device.type, CHUNK_BYTES["cuda"])
        step = max(1, chunk_bytes // self.split.images[0].numel())
        for start in range(0, count, step):
            chunk = slice(start, start + step)
            images, keys = self.augment(indices[chunk], indices_cpu[chunk], epoch)
            if not self.spec.mixes:
                out[chunk] = images
                continue
            partner_images = torch.cat([previous, images[:-1]])  # each image's predecessor
            previous = images[-1:]
            out[chunk], soft[chunk] = mix(
                images, partner_images, targets[chunk], self.split.targets[partners[chunk]],
                keys, self.spec, self.num_classes,
                lam_mixup[indices_cpu[chunk]], lam_cutmix[indices_cpu[chunk]],
            )  # fmt: skip
        return out, (soft if self.spec.mixes else targets)

    def augment(
        self, indices: torch.Tensor, indices_cpu: torch.Tensor, epoch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``indices`` as augmented in ``epoch`` (before MixUp/CutMix), and their keys."""
        keys = sample_keys(self.seed, epoch, indices)
        images = self.split.images.index_select(0, indices)
        images = geometry(images, keys, self.spec, self.seed, epoch, indices)
        if self._auto is not None:
            seeds = auto_augment_keys(sample_keys(self.seed, epoch, indices_cpu))
            images = auto_augment(images, seeds, self._auto)
        images = self.split.normalize(images)
        if self.spec.cutout:
            images.masked_fill_(cutout_mask(keys, self.spec.cutout, *images.shape[-2:]), 0.0)
        return images, keys


class EvalBatches:
    """Evaluation batches ``(images float32, targets)`` of this rank's shard of a split.

    Rank ``r`` reads positions ``r, r + world, ...`` (no image twice, so synced metrics count each
    once). With ``pad``, see the module docstring."""

    def __init__(
        self,
        split: DeviceSplit,
        batch_size: int,
        world_size: int = 1,
        rank: int = 0,
        pad: bool = False,
    ) -> None:
        self.split = split
        self.batch_size = batch_size
        images, targets = split.images[rank::world_size], split.targets[rank::world_size]
        if pad:
            batches = -(-shard_size(len(split), world_size) // batch_size)
            missing = batches * batch_size - len(images)
            images = torch.cat([images, images.new_zeros((missing, *images.shape[1:]))])
            targets = torch.cat([targets, targets.new_full((missing,), IGNORE_INDEX)])
        self.images, self.targets = images, targets

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch_size)

    def __iter__(self):
        size = self.batch_size
        for start in range(0, len(self.images), size):
            images = self.images[start : start + size]
            yield self.split.normalize(images), self.targets[start : start + size]


@contextlib.contextmanager
def one_cpu_thread(device: torch.device):
    """On a CPU, build the epoch on one thread: memory-bound work that intra-op threads barely
    speed up, but which stalls at OpenMP barriers when the cores are busy (measured: 2.0 s for a
    CIFAR-10 epoch on one thread, 7.8 s on two, on a loaded 2-core machine). GPUs: no change."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def total_memory() -> int:
    """Bytes of RAM on this machine (8 GiB when it cannot be read)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def memory_budget(device: torch.device) -> int:
    """What the memory loader may use: half of a GPU's memory, a quarter of the RAM on a CPU
    (the rest is the model's, the optimizer's and the other processes')."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory // 2
    return total_memory() // 4
