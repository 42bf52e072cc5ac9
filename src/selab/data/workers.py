"""The torchvision loader: images decoded and augmented one by one in DataLoader workers.

For data that does not fit in memory. The order comes from :class:`~selab.data.sampling.
EpochSampler` keys ``(epoch, index)``, so augmentation is seeded per image as in the memory
loader; MixUp/CutMix run on the collated batch (:class:`~selab.data.augment.BatchMix`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset, default_collate

from .augment import BatchMix, ImagePipeline
from .errors import DataError
from .memory import IGNORE_INDEX
from .sampling import split_key

DECODE_ERRORS = (OSError, ValueError, SyntaxError)  # how PIL reports a corrupt file


class Transformed(Dataset):
    """A dataset of ``(PIL image, label)`` seen through an :class:`ImagePipeline`.

    Keys are ints (plain indexing, fresh random draws) or ``(epoch, index)`` pairs from the
    sampler (draws seeded by ``(seed, epoch, index)``); ``None`` (from a padded :class:`~selab.data.sampling.EvalSampler`)
    is a zero image with target :data:`IGNORE_INDEX`. A batch is built by ``__getitems__``
    (collated, then mixed with ``mix``), so the DataLoader's ``collate_fn`` must keep it as is.
    """

    def __init__(
        self,
        dataset: Dataset,
        pipeline: ImagePipeline,
        shape: tuple[int, int, int] | None = None,
        mix: BatchMix | None = None,
        names: Sequence[str] | None = None,
    ) -> None:
        self.dataset = dataset
        self.pipeline = pipeline
        self.shape = shape
        self.mix = mix
        self.names = names

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key) -> tuple[torch.Tensor, int]:
        if key is None:
            return torch.zeros(self.shape), IGNORE_INDEX
        epoch, index = split_key(key)
        try:
            image, target = self.dataset[index]
        except DataError:  # already names its file and what to do
            raise
        except DECODE_ERRORS as error:
            raise DataError(
                f"could not decode image {self.name(index)} ({type(error).__name__}: {error}); "
                "delete or replace the file, or set --data.skip_bad_files true"
            ) from error
        return self.pipeline(image, epoch, index), target

    def __getitems__(self, keys: list):
        images, targets = default_collate([self[key] for key in keys])
        if self.mix is not None:
            epoch, index = split_key(keys[0])
            images, targets = self.mix(images, targets, epoch, index)
        return images, targets

    def name(self, index: int) -> str:
        return self.names[index] if self.names is not None else str(index)


class Named(Dataset):
    """``(image, target, name)`` items of a :class:`Transformed` split, for prediction CSVs."""

    def __init__(self, split: Transformed) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int):
        image, target = self.split[index]
        return image, target, self.split.name(index)


def keep(batch):
    """Collate for datasets whose ``__getitems__`` already returns the batch."""
    return batch
