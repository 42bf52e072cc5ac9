"""The memory loader: each split decoded once into a uint8 (N, C, H, W) tensor on the training
device, augmented a whole batch at a time with tensor ops.

CIFAR-10 is 150 MB as uint8 and STL10's labelled splits 360 MB: they fit on any GPU many times
over, so nothing is decoded, copied or augmented per image during training (airbench-style). The
DataLoader around a :class:`TensorImageDataset` runs in the main process (no workers) and fetches
each batch with one ``__getitems__`` call: gather, crop, flip, normalise, cutout, all on the device
that holds the tensor.

Folders of images (``imagefolder``) are decoded with the DataLoader workers once and cached next to
the data (``<root>/.selab-cache/<split>-<size>-<fingerprint>.npz``); the fingerprint covers every
file's path, size and modification time, so an edited, added or removed image means a new cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import datasets
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from .augment import BatchAugment, augment_batch
from .sampling import sample_keys, split_key

CACHE_DIR = ".selab-cache"
CACHE_VERSION = 1


class MemoryLoaderUnsupported(ValueError):
    """The data cannot be held as one uint8 tensor (e.g. images of different sizes)."""


class TensorImageDataset(Dataset):
    """Images as a uint8 (N, C, H, W) tensor and labels as int64, on one device.

    Keys are ``(epoch, index)`` pairs from :class:`selab.sampling.EpochSampler` (the augmentation of
    an image is then a function of ``seed``, epoch and index) or plain ints (a fresh random
    augmentation from torch's global RNG, like the per-image path). ``__getitems__`` returns the
    finished batch ``(images float32, labels)``; use :func:`collate_batch` as the collate_fn.
    """

    def __init__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        mean,
        std,
        augment: BatchAugment | None = None,
        seed: int = 0,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(
                f"expected uint8 (N, C, H, W) images, got {images.dtype} {images.shape}"
            )
        if len(images) != len(targets):
            raise ValueError(f"{len(images)} images but {len(targets)} labels")
        self.images = images
        self.targets = targets.to(device=images.device, dtype=torch.int64)
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.augment = augment
        self.seed = seed

    def __len__(self) -> int:
        return len(self.images)

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device) -> TensorImageDataset:
        self.images = self.images.to(device)
        self.targets = self.targets.to(device)
        return self

    def __getitems__(self, keys) -> tuple[torch.Tensor, torch.Tensor]:
        epochs, indices = zip(*(split_key(key) for key in keys), strict=True)
        epochs = torch.tensor(epochs, dtype=torch.int64)
        unseeded = epochs < 0
        if unseeded.any():  # plain indexing: a fresh draw each time
            epochs[unseeded] = torch.randint(2**31, (int(unseeded.sum()),))
        index = torch.tensor(indices, dtype=torch.int64, device=self.device)
        keys = sample_keys(self.seed, epochs.to(self.device), index)
        with one_cpu_thread(self.device):
            images = augment_batch(self.images[index], keys, self.augment, self.mean, self.std)
        return images, self.targets[index]

    def __getitem__(self, key) -> tuple[torch.Tensor, int]:
        images, targets = self.__getitems__([key])
        return images[0], int(targets[0])


@contextlib.contextmanager
def one_cpu_thread(device: torch.device):
    """On the CPU, augment a batch on one thread: a few ms of memory-bound work, which intra-op
    threads barely speed up but which stalls for tens of ms at OpenMP barriers when the cores are
    busy (training in another thread, other processes). GPUs are unaffected."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def collate_batch(batch):
    """``TensorImageDataset.__getitems__`` already returns the batch."""
    return batch


# -- decoding -------------------------------------------------------------------------------------
def resize_uint8(images: torch.Tensor, size: int | None, chunk: int = 256) -> torch.Tensor:
    """Resize like the per-image path's ``v2.Resize((size, size), antialias=True)``, image by image
    (the batched kernel can round differently), so both loaders see the same pixels."""
    if not size or images.shape[-2:] == (size, size):
        return images
    return torch.stack([TF.resize(image, [size, size], antialias=True) for image in images])


def from_torchvision(dataset, image_size: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 (``data``: N, H, W, C) or STL10 (``data``: N, C, H, W) arrays, without PIL."""
    if isinstance(dataset, datasets.CIFAR10):
        images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
        targets = torch.as_tensor(dataset.targets, dtype=torch.int64)
    elif isinstance(dataset, datasets.STL10):
        images = torch.from_numpy(np.ascontiguousarray(dataset.data))
        targets = torch.as_tensor(dataset.labels, dtype=torch.int64)
    else:
        raise TypeError(f"no array decoder for {type(dataset).__name__}")
    return resize_uint8(images, image_size), targets


def _keep(batch):
    return batch


def decode_folder(
    dataset: datasets.ImageFolder, image_size: int | None, num_workers: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode every image of an ImageFolder (its own PIL loader, RGB) into one uint8 tensor."""
    steps = [v2.ToImage()]
    if image_size:
        steps.append(v2.Resize((image_size, image_size), antialias=True))
    dataset.transform = v2.Compose(steps)
    loader = DataLoader(dataset, batch_size=256, num_workers=num_workers, collate_fn=_keep)
    images = None
    targets = torch.as_tensor(dataset.targets, dtype=torch.int64)
    position = 0
    try:
        for batch in loader:
            for image, _ in batch:
                if images is None:
                    images = torch.empty((len(dataset), *image.shape), dtype=torch.uint8)
                if image.shape != images.shape[1:]:
                    raise MemoryLoaderUnsupported(
                        f"images in {dataset.root} differ in size: {dataset.samples[0][0]} is "
                        f"{tuple(images.shape[1:])}, {dataset.samples[position][0]} is "
                        f"{tuple(image.shape)} (C, H, W); set --data.image_size N to resize them, "
                        "or use --data.loader torchvision"
                    )
                images[position] = image
                position += 1
    finally:
        dataset.transform = None
    if images is None:
        raise MemoryLoaderUnsupported(f"no images in {dataset.root}")
    return images, targets


def fingerprint(dataset: datasets.ImageFolder, image_size: int | None) -> str:
    """Changes when any file is added, removed, renamed, rewritten or touched, or the size does."""
    digest = hashlib.sha1(f"v{CACHE_VERSION} size={image_size}\n".encode())
    root = Path(dataset.root)
    for path, label in dataset.samples:
        stat = os.stat(path)
        relative = Path(path).relative_to(root)
        digest.update(f"{relative}\0{label}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def cache_file(dataset: datasets.ImageFolder, split: str, image_size: int | None) -> Path:
    size = f"{image_size}px" if image_size else "native"
    return (
        Path(dataset.root).parent
        / CACHE_DIR
        / f"{split}-{size}-{fingerprint(dataset, image_size)}.npz"
    )


def load_folder(
    folder: Path,
    split: str,
    image_size: int | None,
    num_workers: int = 0,
    cache: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """An imagefolder split as tensors, from the cache when it is current, else decoded (and
    cached, when ``cache`` and the folder is writable)."""
    dataset = datasets.ImageFolder(folder)
    path = cache_file(dataset, split, image_size) if cache else None
    if path is not None and path.is_file():
        try:
            with np.load(path) as stored:
                return torch.from_numpy(stored["images"]), torch.from_numpy(stored["targets"])
        except (OSError, ValueError, KeyError) as error:  # unreadable: decode again
            warnings.warn(f"ignoring unreadable cache {path}: {error}", stacklevel=2)
    images, targets = decode_folder(dataset, image_size, num_workers)
    if path is not None:
        write_cache(path, images, targets)
    return images, targets


def write_cache(path: Path, images: torch.Tensor, targets: torch.Tensor) -> None:
    """Write atomically (other ranks or runs may read concurrently) and drop stale versions."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            np.savez(f, images=images.numpy(), targets=targets.numpy())
        os.replace(tmp, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            tmp.unlink()
        warnings.warn(f"could not cache decoded images in {path.parent}: {error}", stacklevel=2)
        return
    split_and_size = path.name.rsplit("-", 1)[0]
    for stale in path.parent.glob(f"{split_and_size}-*.npz"):
        if stale != path:
            stale.unlink(missing_ok=True)


def decoded_bytes(folder: Path, image_size: int | None) -> int:
    """Estimated uint8 size of a decoded imagefolder split, from its first image's header."""
    from PIL import Image

    dataset = datasets.ImageFolder(folder)
    if image_size:
        height = width = image_size
    else:
        with Image.open(dataset.samples[0][0]) as image:
            width, height = image.size
    return len(dataset) * 3 * height * width


def total_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30
