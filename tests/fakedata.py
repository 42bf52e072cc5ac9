"""Small datasets written in the real on-disk formats that torchvision reads.

Images are learnable on purpose: class ``c`` has its own colour and stripe direction, plus noise,
so a short training run can show that the system really learns.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def make_images(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """uint8 images (N, H, W, 3) whose content depends on the label."""
    palette = np.random.default_rng(1234).integers(40, 216, size=(10, 3))  # fixed per class
    rng = np.random.default_rng(seed)
    n = len(labels)
    yy, xx = np.mgrid[0:size, 0:size]
    images = np.empty((n, size, size, 3), dtype=np.float64)
    for i, label in enumerate(labels):
        angle = np.pi * label / 10
        stripes = np.sin((np.cos(angle) * xx + np.sin(angle) * yy) * 2 * np.pi / 8)
        images[i] = palette[label] + 40 * stripes[..., None]
    images += rng.normal(0, 20, size=images.shape)
    return images.clip(0, 255).astype(np.uint8)


def balanced_labels(n: int, num_classes: int = 10, seed: int = 0) -> np.ndarray:
    labels = np.arange(n) % num_classes
    np.random.default_rng(seed).shuffle(labels)
    return labels


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_cifar10(root: Path, per_batch: int = 20, n_test: int = 50, seed: int = 0) -> dict:
    """``root/cifar-10-batches-py`` as pickled by the CIFAR authors: data (N, 3072) row-major
    RGB planes, labels as a list. Returns ``{filename: (labels, images HWC)}`` for checking."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for index, name in enumerate(names):
        n = n_test if name == "test_batch" else per_batch
        labels = balanced_labels(n, seed=seed + index)
        images = make_images(labels, 32, seed=seed + 100 + index)
        entry = {
            "batch_label": name,
            "labels": labels.tolist(),
            "data": images.transpose(0, 3, 1, 2).reshape(n, -1),
            "filenames": [f"{i}.png" for i in range(n)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)
        written[name] = (labels, images)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CLASSES, "num_cases_per_batch": per_batch}, f)
    return written


def patch_cifar10_checksums(monkeypatch, root: Path) -> None:
    """torchvision verifies the published md5 sums; point it at the files we wrote."""
    from torchvision.datasets import CIFAR10

    folder = root / "cifar-10-batches-py"
    monkeypatch.setattr(
        CIFAR10, "train_list", [[n, md5(folder / n)] for n, _ in CIFAR10.train_list]
    )
    monkeypatch.setattr(CIFAR10, "test_list", [[n, md5(folder / n)] for n, _ in CIFAR10.test_list])
    meta = dict(CIFAR10.meta, md5=md5(folder / CIFAR10.meta["filename"]))
    monkeypatch.setattr(CIFAR10, "meta", meta)


STL10_CLASSES = [
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
]


def write_stl10(root: Path, n_train: int = 30, n_test: int = 20, seed: int = 0) -> dict:
    """``root/stl10_binary`` as distributed: uint8 images in column-major (N, 3, 96, 96) order,
    labels 1..10 as uint8, plus unlabeled_X.bin and class_names.txt."""
    folder = root / "stl10_binary"
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, n in (("train", n_train), ("test", n_test), ("unlabeled", 4)):
        labels = balanced_labels(n, seed=seed)
        images = make_images(labels, 96, seed=seed + len(split))
        # STL10 stores each channel column-major: (N, C, W, H) in C order.
        (folder / f"{split}_X.bin").write_bytes(images.transpose(0, 3, 2, 1).tobytes())
        if split != "unlabeled":
            (folder / f"{split}_y.bin").write_bytes((labels + 1).astype(np.uint8).tobytes())
        written[split] = (labels, images)
    (folder / "class_names.txt").write_text("\n".join(STL10_CLASSES) + "\n")
    return written


def patch_stl10_checksums(monkeypatch, root: Path) -> None:
    from torchvision.datasets import STL10

    folder = root / "stl10_binary"
    monkeypatch.setattr(STL10, "train_list", [[n, md5(folder / n)] for n, _ in STL10.train_list])
    monkeypatch.setattr(STL10, "test_list", [[n, md5(folder / n)] for n, _ in STL10.test_list])


def write_imagefolder(
    root: Path,
    n_train: int = 40,
    n_test: int = 20,
    size: int = 32,
    classes: int = 10,
    seed: int = 0,
) -> dict:
    """``root/{train,test}/<class>/<i>.png``, lossless so pixels can be compared exactly."""
    written = {}
    for offset, (split, n) in enumerate((("train", n_train), ("test", n_test))):
        labels = balanced_labels(n, num_classes=classes, seed=seed + offset)
        images = make_images(labels, size, seed=seed + 10 + offset)
        for i, (label, image) in enumerate(zip(labels, images, strict=True)):
            folder = root / split / CLASSES[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{i:05d}.png")
        written[split] = (labels, images)
    return written


def write_truncated_jpeg(path: Path, size: int = 32, seed: int = 0) -> Path:
    """A JPEG cut in half, as an interrupted copy leaves it: PIL opens it, decoding fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = make_images(np.array([0]), size, seed)[0]
    Image.fromarray(image).save(path, format="JPEG", quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def write_image(path: Path, height: int, width: int, seed: int = 0) -> Path:
    """One lossless RGB image of the given size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return path
