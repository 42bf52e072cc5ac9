"""Decoding image folders once: into one uint8 tensor, kept next to the data.

An ``imagefolder`` split is decoded with DataLoader workers into a uint8 (N, C, H, W) tensor and
cached as ``<root>/.selab-cache/<split>-<size>-<fingerprint>.npz``; the fingerprint covers every
file's path, label, size and modification time, so an edited, added or removed image means a new
cache (stale ones are deleted). Files are written to a temporary name and renamed, so a reader
never sees half a file. A file that cannot be decoded is named in a :class:`DataError`, or skipped
and counted with ``skip_bad_files``; the list of skipped files is cached with the images.

The per-image loader can ask for the same checks without keeping the pixels (:func:`scan`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets import ImageFolder
from torchvision.transforms import v2

from .errors import DataError

CACHE_DIR = ".selab-cache"
CACHE_VERSION = 1


def bad_file_error(path: str, reason: str) -> DataError:
    return DataError(
        f"could not decode {path} ({reason}); delete or replace the file, or set "
        "--data.skip_bad_files true to leave such files out"
    )


def mixed_size_error(folder, first: str, first_size, other: str, other_size) -> DataError:
    return DataError(
        f"images in {folder} differ in size ({first} is {first_size[0]}x{first_size[1]}, {other} "
        f"is {other_size[0]}x{other_size[1]}, height x width); set --data.image_size N to resize "
        "them all to N x N"
    )


@dataclass
class Decoded:
    """A decoded split: uint8 images (N, C, H, W), int64 labels, the files left out, and what
    names each image in prediction CSVs (its file, or its index in the source split)."""

    images: torch.Tensor
    targets: torch.Tensor
    skipped: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.names:
            self.names = [str(i) for i in range(len(self.images))]


class _Files(Dataset):
    """Each file as ``(image or None, label, path, error)``; errors are returned, not raised, so
    the main process reports them (an exception raised in a worker arrives wrapped)."""

    def __init__(self, samples, image_size: int | None, pixels: bool = True) -> None:
        self.samples = samples
        self.pixels = pixels
        steps = [v2.ToImage()]
        if image_size:
            steps.append(v2.Resize((image_size, image_size), antialias=True))
        self.transform = v2.Compose(steps)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        try:
            with Image.open(path) as image:
                if not self.pixels:
                    return (image.height, image.width), label, path, None
                image = image.convert("RGB")  # ImageFolder's own loader does the same
            return self.transform(image), label, path, None
        except (OSError, ValueError, SyntaxError) as error:  # PIL's ways of saying "corrupt"
            return None, label, path, f"{type(error).__name__}: {error}"


def _keep(batch):
    return batch


def _items(samples, image_size: int | None, num_workers: int, pixels: bool):
    loader = DataLoader(
        _Files(samples, image_size, pixels), batch_size=256, num_workers=num_workers,
        collate_fn=_keep,
    )  # fmt: skip
    for batch in loader:
        yield from batch


def decode_folder(
    dataset: ImageFolder, image_size: int | None, num_workers: int = 0, skip_bad: bool = False
) -> Decoded:
    """Decode every image of an ImageFolder (RGB, resized when ``image_size``) into one tensor."""
    images = None
    labels, skipped = [], []
    first = None
    for image, label, path, error in _items(dataset.samples, image_size, num_workers, True):
        if error is not None:
            if not skip_bad:
                raise bad_file_error(path, error)
            skipped.append(path)
            continue
        if images is None:
            images = torch.empty((len(dataset), *image.shape), dtype=torch.uint8)
            first = (path, tuple(image.shape[-2:]))
        if image.shape != images.shape[1:]:
            raise mixed_size_error(dataset.root, *first, path, tuple(image.shape[-2:]))
        images[len(labels)] = image
        labels.append(label)
    if images is None:
        raise DataError(f"no decodable images in {dataset.root}; add images or check the files")
    if skipped:
        images = images[: len(labels)].clone()
    return Decoded(images, torch.tensor(labels, dtype=torch.int64), skipped)


def scan(
    dataset: ImageFolder,
    num_workers: int = 0,
    decode: bool = False,
    same_size: bool = True,
    skip_bad: bool = False,
    cache: bool = True,
) -> list[str]:
    """Check a split without keeping pixels: decodable files (``decode``: full decode, else
    headers only) and one image size (``same_size``). Returns the files to leave out; the result
    of a full decode is cached like the images."""
    path = cache_file(dataset, "scan", None, ".json") if cache and decode else None
    if path is not None and path.is_file():
        with contextlib.suppress(OSError, ValueError, KeyError):
            cached = json.loads(path.read_text())
            if cached["same_size"] or not same_size:  # a scan without the size check is not enough
                return _checked_skips(cached["bad"], skip_bad, root=Path(dataset.root))
    bad, first = [], None
    for size, _, file, error in _items(dataset.samples, None, num_workers, decode):
        if error is not None:
            if not skip_bad:
                raise bad_file_error(file, error)
            bad.append(file)
            continue
        size = size if not decode else tuple(size.shape[-2:])
        if first is None:
            first = (file, size)
        elif same_size and size != first[1]:
            raise mixed_size_error(dataset.root, *first, file, size)
    if path is not None:
        relative = [str(Path(f).relative_to(dataset.root)) for f in bad]
        record = {"bad": relative, "same_size": same_size}
        _write_atomic(path, lambda f: f.write(json.dumps(record).encode()))
    return bad


def _checked_skips(relative: list[str], skip_bad: bool, root: Path) -> list[str]:
    files = [str(root / name) for name in relative]
    if files and not skip_bad:
        raise bad_file_error(files[0], "recorded as undecodable in the decode cache")
    return files


def fingerprint(dataset: ImageFolder, image_size: int | None) -> str:
    """Changes when any file is added, removed, renamed, rewritten or touched, or the size does."""
    digest = hashlib.sha1(f"v{CACHE_VERSION} size={image_size}\n".encode())
    root = Path(dataset.root)
    prefix = str(root) + os.sep
    for path, label in dataset.samples:
        stat = os.stat(path)
        # What Path.relative_to gives, without its cost per file (ImageFolder joins root/...).
        relative = path[len(prefix) :] if path.startswith(prefix) else Path(path).relative_to(root)
        digest.update(f"{relative}\0{label}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def cache_file(
    dataset: ImageFolder, split: str, image_size: int | None, suffix: str = ".npz"
) -> Path:
    """``<root>/.selab-cache/<split>-<size>-<fingerprint><suffix>`` for ``root/<split>/``."""
    folder = Path(dataset.root)
    size = f"{image_size}px" if image_size else "native"
    name = f"{folder.name}-{split}-{size}" if split == "scan" else f"{split}-{size}"
    return folder.parent / CACHE_DIR / f"{name}-{fingerprint(dataset, image_size)}{suffix}"


def load_folder(
    dataset: ImageFolder,
    split: str,
    image_size: int | None,
    num_workers: int = 0,
    cache: bool = True,
    skip_bad: bool = False,
) -> Decoded:
    """An imagefolder split as tensors, from the cache when it is current, else decoded (and
    cached, when ``cache`` and the folder is writable)."""
    decoded = _load_or_decode(dataset, split, image_size, num_workers, cache, skip_bad)
    left_out = set(decoded.skipped)
    decoded.names = [path for path, _ in dataset.samples if path not in left_out]
    return decoded


def _load_or_decode(dataset, split, image_size, num_workers, cache, skip_bad) -> Decoded:
    path = cache_file(dataset, split, image_size) if cache else None
    if path is not None and path.is_file():
        try:
            with np.load(path) as stored:
                decoded = Decoded(
                    torch.from_numpy(stored["images"]),
                    torch.from_numpy(stored["targets"]),
                    [str(name) for name in stored.get("skipped", ())],
                )
        except (OSError, ValueError, KeyError) as error:  # unreadable: decode again
            rank_zero_warn(f"ignoring unreadable decode cache {path}: {error}")
        else:
            decoded.skipped = _checked_skips(decoded.skipped, skip_bad, Path(dataset.root))
            return decoded
    decoded = decode_folder(dataset, image_size, num_workers, skip_bad)
    if path is not None:
        relative = np.array([str(Path(f).relative_to(dataset.root)) for f in decoded.skipped])
        write_cache(path, decoded.images, decoded.targets, relative.astype(np.str_))
    return decoded


def _write_atomic(path: Path, write) -> bool:
    """Write through a temporary file and rename: other ranks or runs may read concurrently."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
        return True
    except OSError as error:
        with contextlib.suppress(OSError):
            tmp.unlink()
        rank_zero_warn(f"could not cache decoded images in {path.parent}: {error}")
        return False


def write_cache(path: Path, images: torch.Tensor, targets: torch.Tensor, skipped) -> None:
    """Write the decoded split atomically and drop stale versions of it."""
    if not _write_atomic(
        path,
        lambda f: np.savez(f, images=images.numpy(), targets=targets.numpy(), skipped=skipped),
    ):
        return
    split_and_size = path.name.rsplit("-", 1)[0]
    for stale in path.parent.glob(f"{split_and_size}-*.npz"):
        if stale != path:
            stale.unlink(missing_ok=True)
