"""``VisionDataModule``: CIFAR-10, STL10 or any folder of images in class sub-folders.

Two loaders feed the same model: ``memory`` (each split decoded once into a uint8 tensor on the
training device, augmented per batch; :mod:`selab.memory`) and ``torchvision`` (per-image
transforms in DataLoader workers, for data that does not fit or whose images differ in size).
Both draw their order and augmentation from ``(seed, epoch, index)`` (:mod:`selab.sampling`).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import datasets
from torchvision.datasets.folder import find_classes
from torchvision.transforms import v2

from . import memory
from .augment import BatchAugment, Cutout
from .sampling import EpochSampler, combine, split_key


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
    """Applies an image transform on access, so one decoded split serves train and val views.

    With a ``seed``, an ``(epoch, index)`` key (from :class:`~selab.sampling.EpochSampler`) runs the
    transform under torch's RNG seeded from ``(seed, epoch, index)``: the random crop of an image
    in an epoch is then the same whatever the workers, ranks or resumptions. Plain int indices use
    the global RNG as usual.
    """

    def __init__(self, dataset: Dataset, transform, seed: int | None = None) -> None:
        self.dataset = dataset
        self.transform = transform
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = split_key(key)
        image, target = self.dataset[index]
        if self.seed is None or epoch < 0:
            return self.transform(image), target
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(combine(self.seed, epoch, index))
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
        cutout: side in pixels of a square blanked at a random place in each training image after
            normalisation (DeVries & Taylor 2017; 16 for CIFAR-10); 0 turns it off.
        mean, std: normalisation; each dataset's own statistics by default.
        normalize: ``false`` feeds pixels scaled to [0, 1] with no mean/std normalisation.
        predict_root: a folder of images (any layout, searched recursively) for ``lightning
            predict``, transformed like the test images; None predicts the test split.
        seed: fixes the validation split; shuffling and augmentation are a function of this seed,
            ``seed_everything``'s, the epoch and the image index (so resumed runs see the same data).
        loader: ``memory`` decodes each split once into a uint8 tensor on the training device (GPU
            when there is one) and augments whole batches there; ``torchvision`` decodes and
            augments image by image in ``num_workers`` worker processes; ``auto`` picks ``memory``
            for cifar10/stl10, and for imagefolder when the images share one size (or
            ``image_size`` is set) and fit in a quarter of the RAM, ``torchvision`` otherwise.
        cache: memory loader on imagefolder: keep the decoded tensors in ``root/.selab-cache/`` so
            the next run starts at once; rebuilt when any image file changes.
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
        cutout: int = 0,
        loader: Literal["auto", "memory", "torchvision"] = "auto",
        cache: bool = True,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
        if augment not in ("standard", "none"):
            raise ValueError(f"unknown augment {augment!r}; choose 'standard' or 'none'")
        if loader not in ("auto", "memory", "torchvision"):
            raise ValueError(f"unknown loader {loader!r}; choose 'auto', 'memory' or 'torchvision'")
        if cutout < 0:
            raise ValueError(f"cutout must be >= 0, got {cutout}")
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
        self.cutout = cutout
        self.loader = loader
        self.cache = cache
        self.active_loader: str | None = None  # what setup() chose
        self._decoded: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.info = DATASETS[dataset]
        self.image_size = image_size or self.info.image_size or None
        self.normalize = normalize
        if not normalize:
            self.mean, self.std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        else:
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
        if train and self.cutout:
            steps.append(Cutout(self.cutout))
        return v2.Compose(steps)

    def batch_augment(self, height: int, width: int) -> BatchAugment | None:
        """The memory loader's equivalent of ``transform(train=True)``."""
        padding = min(height, width) // 8 if self.augment == "standard" else 0
        if not padding and not self.cutout:
            return None
        return BatchAugment(padding=padding, flip=self.augment == "standard", cutout=self.cutout)

    @property
    def stream_seed(self) -> int:
        """Seeds shuffling and augmentation: ``data.seed`` and ``seed_everything``'s seed."""
        return combine(self.seed, int(os.environ.get("PL_GLOBAL_SEED", 0)))

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
        """Download, or decode into the cache, once per node (Lightning: local rank 0 only)."""
        if self.predict_root is not None and self.trainer is not None and self.trainer.predicting:
            return  # predicting a folder of images needs no dataset
        if self.dataset == "imagefolder":
            self._folder_split("train"), self._folder_split("test")
            if self.cache and self._choose_loader() == "memory":
                try:  # the other ranks then read the cache instead of decoding too
                    for split in ("train", "test"):
                        self._decoded[split] = self._decode(split)
                except memory.MemoryLoaderUnsupported:
                    if self.loader == "memory":
                        raise
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

    # -- which loader -----------------------------------------------------------------------
    def _choose_loader(self) -> str:
        if self.loader != "auto":
            return self.loader
        if self.dataset != "imagefolder":
            return "memory"
        size = sum(
            memory.decoded_bytes(self._folder_split(split), self.image_size)
            for split in ("train", "test")
        )
        return "memory" if size <= memory.total_memory() // 4 else "torchvision"

    def _device(self) -> torch.device:
        """Where the memory loader keeps its tensors: the Trainer's device, else the CPU."""
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict" and self.predict_root is not None:
            self.predict_set = self._predict_files()
            return
        if getattr(self, "train_set", None) is not None:
            if self.active_loader == "memory":  # set up before a Trainer was attached
                for dataset in (self.train_set, self.val_set, self.test_set):
                    dataset.to(self._device())
            return
        loader = self._choose_loader()
        if loader == "memory":
            try:
                self._setup_memory()
                self.active_loader = "memory"
                return
            except memory.MemoryLoaderUnsupported as error:
                if self.loader == "memory":
                    raise
                warnings.warn(f"using the torchvision loader: {error}", stacklevel=2)
        self._setup_torchvision()
        self.active_loader = "torchvision"

    def _decode(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """A split as (uint8 images N, C, H, W; int64 labels) on the CPU."""
        if split in self._decoded:
            return self._decoded.pop(split)
        if self.dataset == "imagefolder":
            folder = self._folder_split(split)
            return memory.load_folder(folder, split, self.image_size, self.num_workers, self.cache)
        return memory.from_torchvision(self._load(split), self.image_size)

    def _setup_memory(self) -> None:
        (train_x, train_y), (test_x, test_y) = self._decode("train"), self._decode("test")
        device = self._device()
        spec = self.batch_augment(*train_x.shape[-2:])

        def tensors(images, targets, augment=None):
            return memory.TensorImageDataset(
                images.to(device), targets, self.mean, self.std, augment, self.stream_seed
            )

        if self.val_size:
            train_idx, val_idx = stratified_split(train_y.tolist(), self.val_size, self.seed)
            train_idx, val_idx = torch.tensor(train_idx), torch.tensor(val_idx)
            self.train_set = tensors(train_x[train_idx], train_y[train_idx], spec)
            self.val_set = tensors(train_x[val_idx], train_y[val_idx])
        else:
            self.train_set = tensors(train_x, train_y, spec)
            self.val_set = tensors(test_x, test_y)
        self.test_set = self.val_set if not self.val_size else tensors(test_x, test_y)

    def _setup_torchvision(self) -> None:
        train, test = self._load("train"), self._load("test")
        native_size = None
        if self.dataset == "imagefolder" and not self.image_size:
            width, height = train[0][0].size  # crop at the images' own size (PIL: W, H)
            native_size = (height, width)
        train_tf = self.transform(train=True, native_size=native_size)
        eval_tf = self.transform(train=False)
        seed = self.stream_seed
        if self.val_size:
            targets = train.labels if self.dataset == "stl10" else train.targets
            train_idx, val_idx = stratified_split(targets, self.val_size, self.seed)
            self.train_set = Transformed(Subset(train, train_idx), train_tf, seed)
            self.val_set = Transformed(Subset(train, val_idx), eval_tf)
        else:
            self.train_set = Transformed(train, train_tf, seed)
            self.val_set = Transformed(test, eval_tf)
        self.test_set = Transformed(test, eval_tf)

    # -- loaders ----------------------------------------------------------------------------
    def _shard(self) -> tuple[int, int]:
        """(world size, rank) of the attached Trainer; (1, 0) without one."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 1, 0
        return trainer.world_size, trainer.global_rank

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        """Each rank reads its own shard: training as ``DistributedSampler`` does (shuffled by
        seed + epoch, padded to equal lengths), evaluation split without repeats so that synced
        metrics count every image exactly once."""
        world, rank = self._shard()
        sampler = EpochSampler(
            dataset, world, rank, shuffle=shuffle, seed=self.stream_seed, even=shuffle
        )
        if isinstance(dataset, memory.TensorImageDataset):
            # Batches are made in the main process, on the data's device: workers would only copy.
            warnings.filterwarnings("ignore", ".*does not have many workers.*")
            return DataLoader(
                dataset,
                batch_size=self.batch_size,
                sampler=sampler,
                collate_fn=memory.collate_batch,
            )
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
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
        # Transformed reads the sampler's (epoch, index) keys; no seed: evaluation is deterministic.
        return Transformed(ImageFiles(self.predict_root), transform)

    def predict_dataloader(self) -> DataLoader:
        predict_set = getattr(self, "predict_set", None)
        return self._loader(self.test_set if predict_set is None else predict_set, shuffle=False)
