"""The data path: one ``VisionDataModule`` over CIFAR-10, STL10 and image folders.

Modules, one job each: :mod:`~selab.data.sources` (what is on disk and how to read it),
:mod:`~selab.data.cache` (image folders decoded once), :mod:`~selab.data.splits` (train/val split,
evaluation order), :mod:`~selab.data.sampling` (seeded, sharded order and per-image keys),
:mod:`~selab.data.augment` (the augmentation spec; the per-image pipeline),
:mod:`~selab.data.batched` (the same augmentations on device tensors), :mod:`~selab.data.memory`
(the device-resident loader), :mod:`~selab.data.workers` (the per-image loader),
:mod:`~selab.data.loaders` (choosing a loader; the splits and DataLoaders each builds) and
:mod:`~selab.data.module` (the DataModule: options, checks, decoding once, setup).
"""

from .augment import AugmentSpec
from .errors import DataError, DatasetNotFoundError
from .memory import IGNORE_INDEX
from .module import VisionDataModule
from .sources import SOURCES, ImageFiles
from .splits import class_mixed_order, stratified_split

__all__ = [
    "IGNORE_INDEX",
    "SOURCES",
    "AugmentSpec",
    "DataError",
    "DatasetNotFoundError",
    "ImageFiles",
    "VisionDataModule",
    "class_mixed_order",
    "stratified_split",
]
