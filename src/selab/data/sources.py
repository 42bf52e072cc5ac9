"""Where images come from: one small source object per dataset, read with torchvision.

- ``cifar10``: the pickled batches of ``cifar-10-batches-py`` (:class:`torchvision.datasets.CIFAR10`)
- ``stl10``: the binary files of ``stl10_binary`` (:class:`torchvision.datasets.STL10`)
- ``imagefolder``: ``root/train/<class>/*`` and ``root/test/<class>/*``
  (:class:`torchvision.datasets.ImageFolder`, decoded once into :mod:`selab.data.cache`)
- :class:`ImageFiles`: any folder of images, for ``lightning predict``.

Each source knows its classes, statistics, files and native size, checks that its files exist
(or downloads them), and reads a split either as a torchvision dataset of PIL images (the
per-image loader) or as one uint8 tensor (the memory loader).
"""

from __future__ import annotations

import contextlib
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import datasets
from torchvision.datasets.folder import IMG_EXTENSIONS, default_loader, has_file_allowed_extension

from .batched import resize_uint8
from .cache import Decoded, load_folder
from .errors import DataError, DatasetNotFoundError, image_folder_hint

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Source:
    """A dataset on disk. Subclasses fill in the class attributes and the reading methods."""

    name: str = ""
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    native_size: int | None = None  # side of every image, when the format fixes it
    image_files: bool = False  # one file per image: decodable or not, of any size

    def class_names(self, root: Path) -> list[str]:
        raise NotImplementedError

    def prepare(self, root: Path, download: bool) -> None:
        """Download when allowed, then check the files exist; :class:`DatasetNotFoundError` if not."""
        raise NotImplementedError

    def count(self, root: Path, split: str) -> int:
        """Number of images in a split, read cheaply (to check options before decoding)."""
        raise NotImplementedError

    def load(self, root: Path, split: str, exclude=()) -> Dataset:
        """The split as a dataset of ``(PIL image, label)``, with ``targets`` (a list of labels)."""
        raise NotImplementedError

    def decode(self, root: Path, split: str, image_size: int | None, **options) -> Decoded:
        """The split as one uint8 (N, C, H, W) tensor (resized to ``image_size``), on the CPU."""
        raise NotImplementedError

    def image_shape(self, root: Path) -> tuple[int, int]:
        """(H, W) of the images as stored (the first training image for folders)."""
        return (self.native_size, self.native_size)

    def sample_name(self, dataset: Dataset, index: int) -> str:
        """What identifies an image of ``dataset`` in a CSV of predictions."""
        return str(index)


class TorchvisionSource(Source):
    """A dataset torchvision reads and downloads: CIFAR-10 or STL10."""

    dataset_class: type
    classes: tuple[str, ...] = ()
    splits: dict[str, dict[str, Any]] = {}

    @property
    def folder(self) -> str:
        return self.dataset_class.base_folder

    @property
    def files(self) -> list[str]:
        return [name for name, _ in self.dataset_class.train_list + self.dataset_class.test_list]

    def class_names(self, root: Path) -> list[str]:
        return list(self.classes)

    def not_found(self, root: Path, reason: str) -> DatasetNotFoundError:
        return DatasetNotFoundError(
            f"{self.name} was not found in {root / self.folder} (expected {', '.join(self.files)}, "
            f"extracted from {self.dataset_class.url}): {reason}. Download and extract the archive "
            f"into {root}, pass --data.root DIR for the folder that contains {self.folder}, or use "
            f"{image_folder_hint()} with DIR/train/<class>/* and DIR/test/<class>/* images."
        )

    def prepare(self, root: Path, download: bool) -> None:
        if download:
            created = [p for p in (root, *root.parents) if not p.exists()]
            try:
                self.dataset_class(root, download=True, **self.splits["train"])
            except Exception as error:  # urllib/socket/HTTP errors when offline
                for folder in created:  # the folders the failed attempt made, if left empty
                    with contextlib.suppress(OSError):
                        folder.rmdir()
                raise self.not_found(
                    root, f"download failed ({type(error).__name__}: {error})"
                ) from error
        missing = [name for name in self.files if not (root / self.folder / name).is_file()]
        if missing:
            raise self.not_found(root, f"missing {', '.join(missing)}")

    def load(self, root: Path, split: str, exclude=()) -> Dataset:
        try:
            dataset = self.dataset_class(root, **self.splits[split])
        except RuntimeError as error:  # torchvision's "Dataset not found or corrupted"
            raise self.not_found(root, str(error)) from error
        dataset.targets = list(self.labels(dataset))
        return dataset

    def labels(self, dataset) -> list[int]:
        raise NotImplementedError

    def pixels(self, dataset) -> torch.Tensor:
        """The dataset's decoded array as uint8 (N, C, H, W)."""
        raise NotImplementedError

    def decode(self, root: Path, split: str, image_size: int | None, **options) -> Decoded:
        dataset = self.load(root, split)
        targets = torch.as_tensor(dataset.targets, dtype=torch.int64)
        return Decoded(resize_uint8(self.pixels(dataset), image_size), targets)


class Cifar10(TorchvisionSource):
    name = "cifar10"
    dataset_class = datasets.CIFAR10
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)
    native_size = 32
    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")  # fmt: skip
    splits = {"train": {"train": True}, "test": {"train": False}}

    @property
    def files(self) -> list[str]:
        return super().files + [self.dataset_class.meta["filename"]]

    def count(self, root: Path, split: str) -> int:
        files = self.dataset_class.train_list if split == "train" else self.dataset_class.test_list
        count = 0
        for name, _ in files:
            try:
                with open(root / self.folder / name, "rb") as f:
                    count += len(pickle.load(f, encoding="latin1")["labels"])
            except (OSError, pickle.UnpicklingError, EOFError, KeyError, TypeError) as error:
                raise self.not_found(root, f"{name} is unreadable ({error})") from error
        return count

    def labels(self, dataset) -> list[int]:
        return dataset.targets

    def pixels(self, dataset) -> torch.Tensor:
        return torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()  # from N, H, W, C


class Stl10(TorchvisionSource):
    name = "stl10"
    dataset_class = datasets.STL10
    mean = (0.4467, 0.4398, 0.4066)
    std = (0.2603, 0.2566, 0.2713)
    native_size = 96
    classes = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")  # fmt: skip
    splits = {"train": {"split": "train"}, "test": {"split": "test"}}

    def count(self, root: Path, split: str) -> int:
        try:
            return (root / self.folder / f"{split}_y.bin").stat().st_size  # one byte per label
        except OSError as error:
            raise self.not_found(root, f"{split}_y.bin is unreadable ({error})") from error

    def labels(self, dataset) -> list[int]:
        return dataset.labels.tolist()

    def pixels(self, dataset) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(dataset.data))  # already N, C, H, W


def folder_classes(directory) -> list[str]:
    """The class sub-folders of ``directory``, sorted (torchvision's rule)."""
    try:
        return datasets.folder.find_classes(str(directory))[0]
    except FileNotFoundError as error:
        raise DatasetNotFoundError(
            f"no class folders in {directory}: imagefolder expects {directory}/<class>/<image>"
        ) from error


class ClassFolder(datasets.ImageFolder):
    """``ImageFolder`` with the training split's classes imposed on other splits (a test folder
    missing a class must not shift the labels of the others), files to leave out, and one-line
    errors for folders without classes or images."""

    def __init__(self, root: Path, classes: list[str] | None = None, exclude=()) -> None:
        self.given_classes = classes
        excluded = {str(p) for p in exclude}

        def valid(path: str) -> bool:
            return has_file_allowed_extension(path, IMG_EXTENSIONS) and path not in excluded

        super().__init__(str(root), is_valid_file=valid, allow_empty=True)
        counts = np.bincount(np.asarray(self.targets, dtype=np.int64), minlength=len(self.classes))
        if classes is None and (counts == 0).any():
            empty = [
                str(Path(root) / c) for c, n in zip(self.classes, counts, strict=True) if not n
            ]
            raise DataError(
                f"class folder {', '.join(empty)} has no images ({', '.join(IMG_EXTENSIONS)}); "
                "add images or remove the folder"
            )

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        found = folder_classes(directory)
        classes = self.given_classes if self.given_classes is not None else found
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise DataError(
                f"{directory} has class folders the training split lacks ({', '.join(unknown)}); "
                "every split must use the training split's classes"
            )
        return list(classes), {name: i for i, name in enumerate(classes)}


class ImageFolderSource(Source):
    """``root/train/<class>/*`` and ``root/test/<class>/*``, any format PIL reads; ImageNet
    statistics unless ``mean``/``std`` are given."""

    name = "imagefolder"
    image_files = True

    def split_folder(self, root: Path, split: str) -> Path:
        path = root / split
        if not path.is_dir():
            raise DatasetNotFoundError(
                f"imagefolder expects {path}/<class>/<image> for split {split!r}, but {path} is "
                "not a folder. Pass --data.root DIR where DIR has train/ and test/ sub-folders."
            )
        return path

    def class_names(self, root: Path) -> list[str]:
        return folder_classes(self.split_folder(root, "train"))

    def prepare(self, root: Path, download: bool) -> None:
        self.folder(root, "train"), self.folder(root, "test")  # their errors, before any log

    def __init__(self) -> None:
        self._listings: dict[tuple, ClassFolder] = {}

    def folder(self, root: Path, split: str, exclude=()) -> ClassFolder:
        """The split's files (listing a folder of 50,000 images takes a while: the last listings
        are kept, keyed by the folders' modification times, which change when files are added,
        removed or renamed)."""
        path = self.split_folder(root, split)
        classes = None if split == "train" else self.class_names(root)
        key = (str(path), tuple(sorted(map(str, exclude))), tuple(classes or ()), _mtimes(path))
        if key not in self._listings:
            if len(self._listings) >= 8:
                self._listings.pop(next(iter(self._listings)))
            self._listings[key] = ClassFolder(path, classes, exclude)
        return self._listings[key]

    def count(self, root: Path, split: str) -> int:
        return len(self.folder(root, split))

    def load(self, root: Path, split: str, exclude=()) -> Dataset:
        return self.folder(root, split, exclude)

    def decode(
        self,
        root: Path,
        split: str,
        image_size: int | None,
        num_workers: int = 0,
        cache: bool = True,
        skip_bad: bool = False,
    ) -> Decoded:
        dataset = self.folder(root, split)
        return load_folder(dataset, split, image_size, num_workers, cache, skip_bad)

    def image_shape(self, root: Path) -> tuple[int, int]:
        dataset = self.folder(root, "train")
        for path, _ in dataset.samples:
            try:
                with Image.open(path) as image:
                    return image.height, image.width
            except (OSError, ValueError, SyntaxError):
                continue  # reported, or skipped, when the split is decoded
        raise DataError(f"no readable images in {dataset.root}; check the files")

    def sample_name(self, dataset: Dataset, index: int) -> str:
        return dataset.samples[index][0]


def _mtimes(folder: Path) -> tuple:
    """Modification times of a folder and of its sub-folders."""
    with os.scandir(folder) as entries:
        subfolders = sorted((e.name, e.stat().st_mtime_ns) for e in entries if e.is_dir())
    return (folder.stat().st_mtime_ns, *subfolders)


SOURCES: dict[str, Source] = {source.name: source for source in (Cifar10(), Stl10(), ImageFolderSource())}  # fmt: skip


def get_source(name: str) -> Source:
    try:
        return SOURCES[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(SOURCES)}") from None


class ImageFiles(Dataset):
    """Every image under ``root`` (recursively, sorted by path) as ``(image, path)`` pairs."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DataError(f"predict_root {self.root} is not a folder of images")
        self.files = sorted(
            p for p in self.root.rglob("*") if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS
        )
        if not self.files:
            raise DataError(
                f"no images ({', '.join(IMG_EXTENSIONS)}) under predict_root {self.root}"
            )

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Any, str]:
        path = str(self.files[index])
        try:
            image = default_loader(path)
        except (OSError, ValueError, SyntaxError) as error:
            raise DataError(
                f"could not decode {path} ({type(error).__name__}: {error}); delete or replace it"
            ) from error
        return image, path
