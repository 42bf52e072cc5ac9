"""``VisionDataModule``: CIFAR-10, STL10 or any folder of images in class sub-folders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import datasets
from torchvision.datasets.folder import find_classes
from torchvision.transforms import v2


@dataclass(frozen=True)
class DatasetInfo:
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    classes: tuple[str, ...] = ()
    folder: str = ""
    files: tuple[str, ...] = ()
    url: str = ""


DATASETS = {
    "cifar10": DatasetInfo(
        image_size=32,
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        classes=(
            "airplane",
            "automobile",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck",
        ),
        folder=datasets.CIFAR10.base_folder,
        files=tuple(name for name, _ in datasets.CIFAR10.train_list + datasets.CIFAR10.test_list)
        + (datasets.CIFAR10.meta["filename"],),
        url=datasets.CIFAR10.url,
    ),
    "stl10": DatasetInfo(
        image_size=96,
        mean=(0.4467, 0.4398, 0.4066),
        std=(0.2603, 0.2566, 0.2713),
        classes=(
            "airplane",
            "bird",
            "car",
            "cat",
            "deer",
            "dog",
            "horse",
            "monkey",
            "ship",
            "truck",
        ),
        folder=datasets.STL10.base_folder,
        files=tuple(name for name, _ in datasets.STL10.train_list + datasets.STL10.test_list),
        url=datasets.STL10.url,
    ),
    # Any size; ImageNet statistics unless mean/std are given.
    "imagefolder": DatasetInfo(image_size=0, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
}


class DatasetNotFoundError(FileNotFoundError):
    """The dataset is neither on disk nor downloadable; the message says what to do."""


def stratified_split(targets, val_size: int, seed: int) -> tuple[list[int], list[int]]:
    """Split indices into (train, val) with ``val_size`` images spread over classes in proportion.

    Deterministic for a given seed; class quotas use largest remainders so they sum to val_size.
    """
    targets = torch.as_tensor(list(targets))
    if not 0 < val_size < len(targets):
        raise ValueError(f"val_size must be in (0, {len(targets)}), got {val_size}")
    generator = torch.Generator().manual_seed(seed)
    classes, counts = targets.unique(return_counts=True)
    exact = counts.double() * val_size / len(targets)
    quota = exact.floor().long()
    remainder = val_size - int(quota.sum())
    quota[torch.argsort(exact - quota, descending=True, stable=True)[:remainder]] += 1
    val = []
    for label, take in zip(classes.tolist(), quota.tolist(), strict=True):
        members = (targets == label).nonzero().flatten()
        val += members[torch.randperm(len(members), generator=generator)[:take]].tolist()
    held_out = set(val)
    train = [i for i in range(len(targets)) if i not in held_out]
    return train, sorted(val)


class Transformed(Dataset):
    """Applies an image transform on access, so one decoded split serves train and val views."""

    def __init__(self, dataset: Dataset, transform) -> None:
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, target = self.dataset[index]
        return self.transform(image), target


class VisionDataModule(L.LightningDataModule):
    """Image-classification data for every selab experiment.

    Args:
        dataset: ``cifar10`` / ``stl10`` (torchvision, downloaded into ``root`` when allowed) or
            ``imagefolder`` (``root/train/<class>/*`` and ``root/test/<class>/*``).
        root: the folder holding the data (for cifar10: the one containing cifar-10-batches-py).
        download: fetch cifar10/stl10 when they are missing.
        val_size: images held out of the training split for validation, stratified by class and
            fixed by ``seed``; 0 validates on the test split, as the original studies did.
        image_size: resize images to this size first (e.g. 224 for MobileNet on STL10).
        augment: ``standard`` (random crop with 1/8 padding + horizontal flip) or ``none``.
        mean, std: normalisation; each dataset's own statistics by default.
        predict_root: a folder of images (any layout, searched recursively) for ``lightning
            predict``, transformed like the test images; None predicts the test split.
    """

    def __init__(
        self,
        dataset: Literal["cifar10", "stl10", "imagefolder"] = "cifar10",
        root: str = "data/",
        download: bool = True,
        batch_size: int = 128,
        num_workers: int = 4,
        val_size: int = 0,
        image_size: int | None = None,
        augment: Literal["standard", "none"] = "standard",
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
        seed: int = 0,
        predict_root: str | None = None,
    ) -> None:
        super().__init__()
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
        if augment not in ("standard", "none"):
            raise ValueError(f"unknown augment {augment!r}; choose 'standard' or 'none'")
        if val_size < 0:
            raise ValueError(f"val_size must be >= 0, got {val_size}")
        self.save_hyperparameters()
        self.dataset = dataset
        self.root = Path(root).expanduser()
        self.download = download
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_size = val_size
        self.augment = augment
        self.seed = seed
        self.predict_root = predict_root
        self.info = DATASETS[dataset]
        self.image_size = image_size or self.info.image_size or None
        self.mean = tuple(mean) if mean is not None else self.info.mean
        self.std = tuple(std) if std is not None else self.info.std
        self._classes: list[str] | None = None

    # -- what the model needs to know -------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        if self._classes is None:
            if self.dataset == "imagefolder":
                self._classes = find_classes(self._folder_split("train"))[0]
            else:
                self._classes = list(self.info.classes)
        return self._classes

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    # -- transforms -------------------------------------------------------------------------
    def transform(self, train: bool, native_size: tuple[int, int] | None = None) -> v2.Compose:
        """``native_size`` (H, W) is the images' own size, used when ``image_size`` is unset."""
        steps: list = [v2.ToImage()]
        if self.image_size:
            steps.append(v2.Resize((self.image_size, self.image_size), antialias=True))
        if train and self.augment == "standard":
            size = (self.image_size,) * 2 if self.image_size else native_size
            size = size or (self.info.image_size,) * 2
            steps += [v2.RandomCrop(size, padding=min(size) // 8), v2.RandomHorizontalFlip()]
        steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(self.mean, self.std)]
        return v2.Compose(steps)

    # -- loading ----------------------------------------------------------------------------
    def _folder_split(self, split: str) -> Path:
        path = self.root / split
        if not path.is_dir():
            raise DatasetNotFoundError(
                f"imagefolder expects {path}/<class>/<image> for split {split!r}, but {path} is not "
                f"a folder. Pass --data.root DIR where DIR has train/ and test/ sub-folders."
            )
        return path

    def _load(self, split: str) -> Dataset:
        """The raw split (PIL images, int labels); transforms are applied by ``Transformed``."""
        if self.dataset == "imagefolder":
            return datasets.ImageFolder(self._folder_split(split))
        try:
            if self.dataset == "cifar10":
                return datasets.CIFAR10(self.root, train=split == "train")
            return datasets.STL10(self.root, split=split)
        except RuntimeError as error:  # torchvision's "Dataset not found or corrupted"
            raise self._not_found(str(error)) from error

    def _not_found(self, reason: str) -> DatasetNotFoundError:
        folder = self.root / self.info.folder
        return DatasetNotFoundError(
            f"{self.dataset} was not found in {folder} (expected {', '.join(self.info.files)}, "
            f"extracted from {self.info.url}): {reason}. Download and extract the archive into "
            f"{self.root}, pass --data.root DIR for the folder that contains {self.info.folder}, "
            f"or use --data.dataset imagefolder --data.root DIR with DIR/train/<class>/* and "
            f"DIR/test/<class>/* images."
        )

    def prepare_data(self) -> None:
        """Download once per node (Lightning calls this on local rank 0 only)."""
        if self.predict_root is not None and self.trainer is not None and self.trainer.predicting:
            return  # predicting a folder of images needs no dataset
        if self.dataset == "imagefolder":
            self._folder_split("train"), self._folder_split("test")
            return
        dataset_cls = datasets.CIFAR10 if self.dataset == "cifar10" else datasets.STL10
        if self.download:
            try:
                dataset_cls(self.root, download=True)
            except Exception as error:  # urllib/socket/HTTP errors when offline
                raise self._not_found(
                    f"download failed ({type(error).__name__}: {error})"
                ) from error
        # Fail here, before the Trainer writes logs, not later in setup (checksums are checked there).
        folder = self.root / self.info.folder
        missing = [name for name in self.info.files if not (folder / name).is_file()]
        if missing:
            raise self._not_found(f"missing {', '.join(missing)}")

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict" and self.predict_root is not None:
            self.predict_set = self._predict_files()
            return
        if getattr(self, "train_set", None) is not None:
            return
        train, test = self._load("train"), self._load("test")
        native_size = None
        if self.dataset == "imagefolder" and not self.image_size:
            width, height = train[0][0].size  # crop at the images' own size (PIL: W, H)
            native_size = (height, width)
        train_tf = self.transform(train=True, native_size=native_size)
        eval_tf = self.transform(train=False)
        if self.val_size:
            targets = train.labels if self.dataset == "stl10" else train.targets
            train_idx, val_idx = stratified_split(targets, self.val_size, self.seed)
            self.train_set = Transformed(Subset(train, train_idx), train_tf)
            self.val_set = Transformed(Subset(train, val_idx), eval_tf)
        else:
            self.train_set = Transformed(train, train_tf)
            self.val_set = Transformed(test, eval_tf)
        self.test_set = Transformed(test, eval_tf)

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)

    def _predict_files(self) -> Dataset:
        from .predict import ImageFiles

        transform = self.transform(train=False)
        if not self.image_size and self.dataset == "imagefolder":  # the training images' size
            width, height = self._load("train")[0][0].size
            transform = v2.Compose([v2.Resize((height, width), antialias=True), transform])
        return ImageFiles(self.predict_root, transform)

    def predict_dataloader(self) -> DataLoader:
        predict_set = getattr(self, "predict_set", None)
        return self._loader(self.test_set if predict_set is None else predict_set, shuffle=False)
