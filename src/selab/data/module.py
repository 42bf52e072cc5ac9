"""``VisionDataModule``: CIFAR-10, STL10 or any folder of images in class sub-folders."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import lightning as L
import torch
from lightning.fabric.utilities.data import suggested_max_num_workers
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import Dataset

from . import cache
from .augment import AugmentSpec, AutoAugment, BatchMix, FlipMode, ImagePipeline, Normalize
from .augment import PaddingMode as PaddingMode
from .cache import Decoded
from .errors import DataError
from .loaders import (
    LOADERS,
    choose_loader,
    eval_loader,
    memory_splits,
    predict_loader,
    torchvision_splits,
    train_loader,
)
from .sampling import combine
from .sources import ImageFiles, get_source
from .splits import class_mixed_order, default_val_size, stratified_split
from .workers import Transformed

MAX_AUTO_WORKERS = 8
SPLITS = ("train", "val", "test")


class VisionDataModule(L.LightningDataModule):
    """Image-classification data for every selab experiment.

    Args:
        dataset: ``cifar10`` / ``stl10`` (torchvision, downloaded into ``root`` when allowed) or
            ``imagefolder`` (``root/train/<class>/*`` and ``root/test/<class>/*``).
        root: the folder holding the data (for cifar10: the one containing cifar-10-batches-py).
        download: fetch cifar10/stl10 when they are missing.
        batch_size: training images per step and process.
        num_workers: DataLoader worker processes (decoding; the torchvision loader); ``auto``: the
            cores available to this process per device, less one, at most 8.
        val_size: training images held out for validation, stratified by class and fixed by
            ``seed``. Default: 10% of the training images (5,000 for CIFAR-10, 500 for STL10).
            0 validates on the test split, as some original studies did; checkpoint selection
            then sees the test images, and a warning says so.
        image_size: resize images to this size first (e.g. 224 for MobileNet on STL10).
        augment: ``standard`` (random crop with 1/8 of the side as zero padding + random
            horizontal flip) or ``none``; ``translate`` and ``flip`` override its parts.
        translate: random crop from the image padded by this many pixels (a random shift of up to
            that many pixels); default 1/8 of the side under ``augment: standard``, else 0.
        padding_mode: ``zeros`` or ``reflect``, for ``translate``.
        flip: ``random``, ``alternating`` (every other epoch per image, from a random start) or
            ``none``; default ``random`` under ``augment: standard``, else ``none``.
        auto_augment: ``none``, ``randaugment`` or ``trivialaugment`` (torchvision's v2).
        cutout: side in pixels of a square zeroed at a random place in each training image after
            normalisation (DeVries & Taylor 2017; 16 for CIFAR-10); 0 turns it off.
        mixup_alpha, cutmix_alpha: MixUp / CutMix with Beta(α, α) weights (0 = off); training
            targets are then class probabilities (N, K).
        mean, std: normalisation; each dataset's own statistics by default.
        normalize: ``false`` feeds pixels scaled to [0, 1] with no mean/std normalisation.
        seed: fixes the validation split and the evaluation order; shuffling and augmentation are
            a function of this seed, ``seed_everything``'s, the epoch and the image index.
        predict_root: a folder of images (any layout, searched recursively) for ``lightning
            predict``, transformed like the test images; None predicts the test split.
        loader: ``memory`` holds each split as uint8 on the training device and builds each
            training epoch there in a few batched ops; ``torchvision`` decodes and augments image
            by image in ``num_workers`` processes; ``auto`` picks ``memory`` when the data fits
            (half a GPU's memory, a quarter of the RAM), ``torchvision`` otherwise, with a warning.
        cache: memory loader on imagefolder: keep the decoded tensors in ``root/.selab-cache/`` so
            the next run starts at once; rebuilt when any image file changes.
        drop_last: drop each epoch's last partial training batch (every step has the same shape).
        eval_batch_size: images per evaluation batch; default ``batch_size``.
        eval_padding: complete the last evaluation batch with zero images whose target is -100
            (the loss's ``ignore_index``), so every evaluation batch has the same shape; the
            model must leave such targets out of its metrics.
        skip_bad_files: leave out image files that cannot be decoded (counted in a warning)
            instead of stopping with an error that names the file.
    """

    def __init__(
        self,
        dataset: Literal["cifar10", "stl10", "imagefolder"] = "cifar10",
        root: str = "data/",
        download: bool = True,
        batch_size: int = 128,
        num_workers: int | Literal["auto"] = "auto",
        val_size: int | None = None,
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
        translate: int | None = None,
        padding_mode: PaddingMode = "zeros",
        flip: FlipMode | None = None,
        auto_augment: AutoAugment = "none",
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        drop_last: bool = True,
        eval_batch_size: int | None = None,
        eval_padding: bool = False,
        skip_bad_files: bool = False,
    ) -> None:
        super().__init__()
        self.source = get_source(dataset)
        choices = {"augment": ("standard", "none"), "loader": LOADERS}
        for name, allowed in choices.items():
            if locals()[name] not in allowed:
                raise ValueError(
                    f"unknown {name} {locals()[name]!r}; choose one of {', '.join(allowed)}"
                )
        for name in ("batch_size", "eval_batch_size", "image_size"):
            value = locals()[name]
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if val_size is not None and val_size < 0:
            raise ValueError(f"val_size must be >= 0, got {val_size}")
        if num_workers != "auto" and (not isinstance(num_workers, int) or num_workers < 0):
            raise ValueError(f"num_workers must be 'auto' or an int >= 0, got {num_workers!r}")
        self.save_hyperparameters()
        self.dataset = dataset
        self.root = Path(root).expanduser()
        self.download = download
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_size = val_size
        self.resize = image_size
        self.augment = augment
        self.seed = seed
        self.predict_root = predict_root
        self.loader = loader
        self.cache = cache
        self.drop_last = drop_last
        self.eval_batch_size = eval_batch_size or batch_size
        self.eval_padding = eval_padding
        self.skip_bad_files = skip_bad_files
        self.normalize = normalize
        if normalize:
            self.mean = tuple(mean) if mean is not None else self.source.mean
            self.std = tuple(std) if std is not None else self.source.std
        else:
            self.mean, self.std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        standard = augment == "standard"
        self._augment_options = {
            "translate": translate,  # None: 1/8 of the side, once the side is known
            "padding_mode": padding_mode,
            "flip": flip or ("random" if standard else "none"),
            "auto_augment": auto_augment,
            "cutout": cutout,
            "mixup_alpha": mixup_alpha,
            "cutmix_alpha": cutmix_alpha,
        }
        AugmentSpec(**{**self._augment_options, "translate": translate or 0})  # check the values
        self.active_loader: str | None = None  # decided once, by _loader_choice()
        self.train_set = self.val_set = self.test_set = None
        self.predict_set: Dataset | None = None
        self._classes: list[str] | None = None
        self._shape: tuple[int, int] | None = None
        self._warned_test_validation = False
        # prepare_data's work, kept for setup in the same process: decoded splits (memory
        # loader) and the files a scan left out (torchvision loader), by split.
        self._decoded: dict[str, Decoded] = {}
        self._scanned: dict[str, tuple[bool, list[str]]] = {}

    # -- what the model needs to know -------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        if self._classes is None:
            self._classes = self.source.class_names(self.root)
        return self._classes

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int]:
        """(H, W) of the images the model sees."""
        if self._shape is None:
            self._shape = (self.resize,) * 2 if self.resize else self.source.image_shape(self.root)
        return self._shape

    @property
    def image_size(self) -> int | tuple[int, int]:
        """The side of the images the model sees (after ``image_size`` resizing; for an image
        folder without it, the images' own size); (H, W) for images that are not square."""
        height, width = self.image_shape
        return height if height == width else (height, width)

    @property
    def augment_spec(self) -> AugmentSpec:
        translate = self._augment_options["translate"]
        if translate is None:
            translate = min(self.image_shape) // 8 if self.augment == "standard" else 0
        return AugmentSpec(**{**self._augment_options, "translate": translate})

    @property
    def stream_seed(self) -> int:
        """Seeds shuffling and augmentation: ``data.seed`` and ``seed_everything``'s seed."""
        return combine(self.seed, int(os.environ.get("PL_GLOBAL_SEED", 0)))

    def workers(self) -> int:
        """``num_workers``, with ``auto`` resolved for the devices of this node."""
        if self.num_workers != "auto":
            return self.num_workers
        devices = getattr(self.trainer, "num_devices", 1) if self.trainer is not None else 1
        return min(MAX_AUTO_WORKERS, suggested_max_num_workers(max(1, devices)))

    # -- checks and decoding, before anything is written ------------------------------------
    def prepare_data(self) -> None:
        """Download or check the files, check the options against the data, and decode image
        folders into the cache; once per node (Lightning: local rank 0), before any log."""
        if self._predicting_folder():
            ImageFiles(self.predict_root)  # its errors now
            return
        self.source.prepare(self.root, self.download)
        self.resolved_val_size(self.source.count(self.root, "train"))
        self.source.count(self.root, "test")  # readable
        if not self.source.image_files:
            return  # arrays of one size, checked by torchvision when read
        for split in ("train", "test"):
            if self._loader_choice() == "memory":
                self._decode(split)  # kept for setup; later runs and the other ranks read the cache
            else:
                self._bad_files(split, check_sizes=not self.resize)

    def resolved_val_size(self, train_images: int) -> int:
        """``val_size``, its default applied, checked against the number of training images."""
        if self.val_size is None:
            return default_val_size(train_images)
        if self.val_size >= train_images:
            raise DataError(
                f"val_size {self.val_size} is not smaller than the {train_images} training images "
                f"of {self.root}; set --data.val_size below {train_images} (0 validates on the "
                "test split)"
            )
        return self.val_size

    def _predicting_folder(self) -> bool:
        trainer = self.trainer
        return self.predict_root is not None and trainer is not None and trainer.predicting

    def _device(self) -> torch.device:
        """The training device: the Trainer's, else the CPU."""
        return (
            self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        )

    def _shard(self) -> tuple[int, int]:
        """(world size, rank) of the attached Trainer; (1, 0) without one."""
        if self.trainer is None:
            return 1, 0
        return self.trainer.world_size, self.trainer.global_rank

    def _loader_choice(self) -> str:
        """``memory`` or ``torchvision``, decided once from ``loader`` and the memory budget."""
        if self.active_loader is None:
            train = self.source.count(self.root, "train")
            total = train + self.source.count(self.root, "test")
            self.active_loader = choose_loader(
                self.loader, train, total, self.image_shape, self._shard()[0], self._device()
            )
        return self.active_loader

    def _decode(self, split: str) -> Decoded:
        """The split as tensors, decoded (or read from the cache) once per process."""
        if split not in self._decoded:
            self._decoded[split] = self.source.decode(
                self.root, split, self.resize, num_workers=self.workers(), cache=self.cache,
                skip_bad=self.skip_bad_files,
            )  # fmt: skip
            self._report_skipped(split, self._decoded[split].skipped)
        return self._decoded[split]

    def _bad_files(self, split: str, check_sizes: bool = False) -> list[str]:
        """Files of an image-folder split the per-image loader must leave out (with
        ``skip_bad_files``), after checking that its images share one size (``check_sizes``)."""
        if not self.source.image_files or not (self.skip_bad_files or check_sizes):
            return []
        checked, bad = self._scanned.get(split, (False, None))
        if bad is not None and (checked or not check_sizes):
            return bad  # scanned by prepare_data, at least as strictly
        dataset = self.source.folder(self.root, split)
        bad = cache.scan(
            dataset, self.workers(), decode=self.skip_bad_files, same_size=check_sizes,
            skip_bad=self.skip_bad_files, cache=self.cache,
        )  # fmt: skip
        self._report_skipped(split, bad)
        self._scanned[split] = (check_sizes, bad)
        return bad

    def _report_skipped(self, split: str, skipped: list[str]) -> None:
        if skipped:
            rank_zero_warn(
                f"skipped {len(skipped)} undecodable file(s) of {self.root / split} "
                f"(skip_bad_files is on), e.g. {skipped[0]}"
            )

    # -- splits -----------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if stage == "predict" and self.predict_root is not None:
            self.predict_set = self._predict_files()
            return
        if self.train_set is None:
            if self._loader_choice() == "memory":
                self._setup_memory()
            else:
                self._setup_torchvision()
        if self.active_loader == "memory":  # set up before a Trainer was attached
            for split in (self.train_set, self.val_set, self.test_set):
                split.to(self._device())
        if stage in (None, "fit", "validate") and self.validates_on_test:
            self._warn_test_validation()

    @property
    def validates_on_test(self) -> bool:
        return self.val_size == 0

    def _warn_test_validation(self) -> None:
        if not self._warned_test_validation:
            self._warned_test_validation = True
            rank_zero_warn(
                "val_size is 0: validation runs on the TEST split, so checkpoint selection "
                "(best val/acc_top1) sees the test images and the reported test accuracy is "
                "optimistic; set --data.val_size N to hold out N training images instead"
            )

    def _split_indices(self, targets: list[int]) -> tuple[list[int], list[int]]:
        """(train, val) indices into the training split; val in class-mixed order."""
        val_size = self.resolved_val_size(len(targets))
        if not val_size:
            return list(range(len(targets))), []
        train, val = stratified_split(targets, val_size, self.seed)
        mixed = class_mixed_order([targets[i] for i in val], self.seed)
        return train, [val[i] for i in mixed]

    def _setup_memory(self) -> None:
        train, test = self._decode("train"), self._decode("test")
        train_idx, val_idx = self._split_indices(train.targets.tolist())
        test_idx = class_mixed_order(test.targets.tolist(), self.seed)
        self.train_set, self.val_set, self.test_set = memory_splits(
            train, test, (train_idx, val_idx, test_idx), Normalize(self.mean, self.std),
            self._device(),
        )  # fmt: skip
        self._decoded.clear()  # the splits hold their own copies

    def _setup_torchvision(self) -> None:
        source, root = self.source, self.root
        train = source.load(root, "train", exclude=self._bad_files("train"))
        test = source.load(root, "test", exclude=self._bad_files("test"))
        train_idx, val_idx = self._split_indices(list(train.targets))
        test_idx = class_mixed_order(list(test.targets), self.seed)
        spec = self.augment_spec
        normalize = Normalize(self.mean, self.std)
        pipelines = (
            ImagePipeline(spec, normalize, self.image_shape, self.resize, self.stream_seed),
            ImagePipeline(None, normalize, self.image_shape, self.resize),
        )
        mix = BatchMix(spec, self.num_classes, self.stream_seed) if spec.mixes else None
        self.train_set, self.val_set, self.test_set, plain_train = torchvision_splits(
            source, train, test, (train_idx, val_idx, test_idx), pipelines, self.image_shape, mix
        )
        self._eval_view = {"train": plain_train}

    def _predict_files(self) -> Dataset:
        pipeline = ImagePipeline(None, Normalize(self.mean, self.std), None, self.image_shape)
        return Transformed(ImageFiles(self.predict_root), pipeline)

    # -- loaders ----------------------------------------------------------------------------
    def train_dataloader(self):
        world, rank = self._shard()
        return train_loader(
            self.train_set, self.batch_size, self.augment_spec, self.stream_seed, self.num_classes,
            world, rank, self.drop_last, self.workers(),
        )  # fmt: skip

    def val_dataloader(self):
        return self._eval_loader(self.val_set)

    def test_dataloader(self):
        return self._eval_loader(self.test_set)

    def predict_dataloader(self):
        world, rank = self._shard()
        folder = self.predict_set is not None  # a folder of images: (images, paths)
        split = self.predict_set if folder else self.test_set
        return predict_loader(split, self.eval_batch_size, world, rank, self.workers(), folder)

    def _eval_loader(self, split):
        world, rank = self._shard()
        size = self.eval_batch_size
        return eval_loader(split, size, world, rank, self.eval_padding, self.workers())

    # -- images for initialisation ----------------------------------------------------------
    def sample_images(self, count: int, split: str = "train") -> torch.Tensor:
        """Up to ``count`` images of ``split`` (``train``, ``val`` or ``test``), normalised float32
        (count, C, H, W), without augmentation, on the training device: a fixed, seeded choice
        (e.g. for a data-dependent initialisation such as patch whitening)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        if self.train_set is None:
            self.setup("fit")
        dataset = {"train": self.train_set, "val": self.val_set, "test": self.test_set}[split]
        generator = torch.Generator().manual_seed(combine(self.seed, 0x5A4D))
        chosen = torch.randperm(len(dataset), generator=generator)[:count]
        device = self._device()
        if self.active_loader == "memory":
            index = chosen.to(dataset.device)
            return dataset.normalize(dataset.images.index_select(0, index)).to(device)
        if split == "train":
            dataset = self._eval_view["train"]
        return torch.stack([dataset[i][0] for i in chosen.tolist()]).to(device)
