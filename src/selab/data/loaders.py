"""Which loader serves a run, and what each one builds: the splits and their DataLoaders.

``memory`` holds each split as uint8 on the training device and builds whole epochs there
(:mod:`.memory`); ``torchvision`` decodes and augments image by image in worker processes
(:mod:`.workers`). :class:`~selab.data.VisionDataModule` decides once which one and asks these
functions for its splits and loaders.
"""

from __future__ import annotations

import warnings

import torch
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.warnings import PossibleUserWarning
from torch.utils.data import DataLoader, Dataset, Subset

from .augment import AugmentSpec, BatchMix, ImagePipeline, Normalize
from .cache import Decoded
from .errors import DataError
from .memory import DeviceSplit, EvalBatches, PredictView, TrainEpochs, memory_budget
from .sampling import EpochSampler, EvalSampler, shard_size
from .workers import Named, Transformed, keep

MEMORY, TORCHVISION = "memory", "torchvision"
LOADERS = ("auto", MEMORY, TORCHVISION)


def choose_loader(
    requested: str,
    train_images: int,
    total_images: int,
    image_shape: tuple[int, int],
    world_size: int,
    device: torch.device,
) -> str:
    """``memory`` or ``torchvision`` for ``requested`` (``auto``, ``memory``, ``torchvision``):
    ``auto`` takes the memory loader when the data fits its budget, else warns and falls back."""
    if requested == TORCHVISION:
        return TORCHVISION
    height, width = image_shape
    image = 3 * height * width
    # uint8 splits, their evaluation shards, and one float32 training epoch per rank
    needed = 2 * total_images * image + 4 * image * shard_size(train_images, world_size)
    budget = memory_budget(device)
    if needed <= budget:
        return MEMORY
    reason = (
        f"the memory loader needs about {needed / 2**30:.1f} GiB on {device} for "
        f"{total_images} images of {height}x{width}, more than its budget of "
        f"{budget / 2**30:.1f} GiB"
    )
    if requested == MEMORY:
        raise DataError(f"{reason}; use --data.loader torchvision or a smaller --data.image_size")
    rank_zero_warn(f"using the torchvision loader: {reason}")
    return TORCHVISION


# -- splits ------------------------------------------------------------------------------------
def memory_splits(
    train: Decoded,
    test: Decoded,
    indices: tuple[list[int], list[int], list[int]],
    normalize: Normalize,
    device: torch.device,
) -> tuple[DeviceSplit, DeviceSplit, DeviceSplit]:
    """(train, val, test) on ``device`` from the decoded splits and the (train, val, test)
    ``indices``; no validation indices validate on the test split."""

    def split(decoded: Decoded, chosen: list[int]) -> DeviceSplit:
        index = torch.as_tensor(chosen, dtype=torch.int64)
        names = [decoded.names[i] for i in chosen]
        images, targets = decoded.images[index], decoded.targets[index]
        return DeviceSplit(images.to(device), targets, normalize, names)

    train_idx, val_idx, test_idx = indices
    train_set, test_set = split(train, train_idx), split(test, test_idx)
    return train_set, (split(train, val_idx) if val_idx else test_set), test_set


def torchvision_splits(
    source,
    train: Dataset,
    test: Dataset,
    indices: tuple[list[int], list[int], list[int]],
    pipelines: tuple[ImagePipeline, ImagePipeline],
    image_shape: tuple[int, int],
    mixing: BatchMix | None = None,
) -> tuple[Transformed, Transformed, Transformed, Transformed]:
    """(train, val, test, train without augmentation) for the per-image loader, each image
    transformed by the (training, evaluation) ``pipelines``."""
    shape = (3, *image_shape)
    train_pipeline, eval_pipeline = pipelines

    def split(dataset, chosen, pipeline, mix=None):
        names = [source.sample_name(dataset, i) for i in chosen]
        return Transformed(Subset(dataset, chosen), pipeline, shape, mix, names)

    train_idx, val_idx, test_idx = indices
    test_set = split(test, test_idx, eval_pipeline)
    val_set = split(train, val_idx, eval_pipeline) if val_idx else test_set
    plain_train = split(train, train_idx, eval_pipeline)
    return split(train, train_idx, train_pipeline, mixing), val_set, test_set, plain_train


# -- loaders -----------------------------------------------------------------------------------
def train_loader(
    train_set,
    batch_size: int,
    spec: AugmentSpec,
    seed: int,
    num_classes: int,
    world_size: int,
    rank: int,
    drop_last: bool,
    workers: int,
):
    """This rank's training batches: whole epochs built on the device for a
    :class:`DeviceSplit`, worker processes for a per-image split."""
    per_rank = shard_size(len(train_set), world_size)
    if drop_last and per_rank < batch_size:
        raise DataError(
            f"{per_rank} training images per process is fewer than batch_size {batch_size}, so "
            "drop_last would drop them all; lower --data.batch_size or set --data.drop_last false"
        )
    if isinstance(train_set, DeviceSplit):
        return TrainEpochs(
            train_set, batch_size, spec, seed, num_classes, world_size, rank, drop_last
        )
    sampler = EpochSampler(train_set, world_size, rank, seed)
    return worker_loader(train_set, sampler, batch_size, workers, drop_last=drop_last)


def eval_loader(split, batch_size: int, world_size: int, rank: int, pad: bool, workers: int):
    """This rank's evaluation batches of ``split``; ``pad`` completes the last one."""
    if isinstance(split, DeviceSplit):
        return EvalBatches(split, batch_size, world_size, rank, pad=pad)
    padded = -(-shard_size(len(split), world_size) // batch_size) * batch_size if pad else None
    return worker_loader(split, EvalSampler(split, world_size, rank, padded), batch_size, workers)


def predict_loader(
    split, batch_size: int, world_size: int, rank: int, workers: int, folder: bool = False
):
    """Prediction batches: ``(images, targets, names)`` of an evaluation split, or
    ``(images, paths)`` of a ``folder`` of images."""
    sampler = EvalSampler(split, world_size, rank)
    if folder:
        return worker_loader(split, sampler, batch_size, workers)
    if isinstance(split, DeviceSplit):  # gathered on the device, in this process
        # Batches are made on the data's device: workers would only copy.
        warnings.filterwarnings(
            "ignore", ".*predict_dataloader' does not have many workers", PossibleUserWarning
        )
        return DataLoader(
            PredictView(split), batch_size=batch_size, sampler=sampler, collate_fn=keep
        )
    return worker_loader(Named(split), sampler, batch_size, workers, None)


def worker_loader(dataset, sampler, batch_size: int, workers: int, collate=keep, drop_last=False):
    """A DataLoader over ``workers`` processes that stay alive between epochs."""
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
        collate_fn=collate, pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0, drop_last=drop_last,
    )  # fmt: skip
