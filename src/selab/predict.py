"""``lightning predict``: class probabilities for a folder of images, written to CSV.

    lightning predict --config configs/cifar10/se_resnet20.yaml \\
        --ckpt_path logs/cifar10/se_resnet20/version_0/checkpoints/last.ckpt \\
        --data.predict_root my_images/ [--predictions.path predictions.csv]

``--data.predict_root`` points the data module at any folder of images (searched recursively,
any size: they are resized as the model's test images are); without it the test split is
predicted and its labels are written too. ``PredictionWriter`` (CLI group ``predictions``) writes
one row per image: ``file``, ``target`` (labelled data only), ``prediction`` and the top-k classes
with their probabilities, ``top1``, ``top1_prob``, ..., most probable first.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS, default_loader

from .sampling import split_key


class ImageFiles(Dataset):
    """Every image under ``root`` (recursively, sorted by path) as ``(image, path)`` pairs."""

    def __init__(self, root: str | Path, transform=None) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"predict_root {self.root} is not a folder of images")
        self.files = sorted(
            p for p in self.root.rglob("*") if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS
        )
        if not self.files:
            raise FileNotFoundError(
                f"no images ({', '.join(IMG_EXTENSIONS)}) under predict_root {self.root}"
            )
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Any, str]:
        image = default_loader(str(self.files[index]))
        if self.transform is not None:
            image = self.transform(image)
        return image, str(self.files[index])


class PredictionWriter(BasePredictionWriter):
    """Writes ``lightning predict`` outputs (softmax probabilities) to CSV, one row per image.

    Args:
        path: the CSV file; by default ``predictions.csv`` in the run folder (the logger's
            ``log_dir``, which for a checkpoint of a run is that run's folder). Under several
            processes each writes ``<stem>.rank<r>.csv``.
        top_k: how many classes (with probabilities) to write per image.
    """

    def __init__(self, path: str | None = None, top_k: int = 5) -> None:
        super().__init__(write_interval="batch")
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self.path = path
        self.top_k = top_k
        self.written: Path | None = None
        self._file = None
        self._writer = None

    def _output(self, trainer: Trainer) -> Path:
        path = Path(self.path) if self.path else Path(trainer.log_dir or ".") / "predictions.csv"
        if trainer.world_size > 1:
            path = path.with_name(f"{path.stem}.rank{trainer.global_rank}{path.suffix}")
        return path

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.written = self._output(trainer)
        self.written.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.written, "w", newline="")  # noqa: SIM115  (closed at predict end)
        self._writer = csv.writer(self._file)
        self._header_done = False

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx
    ) -> None:
        probs = prediction.float()
        names = list(getattr(pl_module, "class_names", []) or []) or [
            str(i) for i in range(probs.shape[1])
        ]
        k = min(self.top_k, probs.shape[1])
        top = probs.topk(k, dim=1)
        second = batch[1] if isinstance(batch, (list, tuple)) and len(batch) > 1 else None
        labelled = isinstance(second, torch.Tensor)
        if not self._header_done:
            header = ["file", *(["target"] if labelled else []), "prediction"]
            for i in range(1, k + 1):
                header += [f"top{i}", f"top{i}_prob"]
            self._writer.writerow(header)
            self._header_done = True
        indices = list(batch_indices) if batch_indices is not None else [None] * len(probs)
        for row in range(len(probs)):
            if second is not None and not labelled:
                file = second[row]  # a path from ImageFiles
            else:
                # The sampler's (epoch, index) key: the image's index in the split.
                file = split_key(indices[row])[1] if indices[row] is not None else row
            classes = [names[i] for i in top.indices[row].tolist()]
            values = [f"{p:.6f}" for p in top.values[row].tolist()]
            cells = [file, *([names[int(second[row])]] if labelled else []), classes[0]]
            for name, value in zip(classes, values, strict=True):
                cells += [name, value]
            self._writer.writerow(cells)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            print(f"predictions written to {self.written}")

    def on_exception(self, trainer, pl_module, exception) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
