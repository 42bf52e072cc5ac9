"""``lightning predict``: class probabilities for a folder of images, written to CSV.

    lightning predict --config configs/cifar10/resnet20.yaml --config configs/attention/se.yaml \\
        --ckpt_path logs/cifar10/resnet20+se/version_0/checkpoints/last.ckpt \\
        --data.predict_root my_images/ [--predictions.path predictions.csv]

``--data.predict_root`` points the data module at any folder of images (searched recursively,
any size: they are resized as the model's test images are); without it the test split is
predicted and its labels are written too. ``PredictionWriter`` (CLI group ``predictions``) writes
one row per image: ``file`` (the image's path, or its index in the dataset's test split),
``target`` (labelled data only), ``prediction`` and the top-k classes with their probabilities,
``top1``, ``top1_prob``, ..., most probable first.

Prediction batches (from :class:`selab.VisionDataModule`) are ``(images, names)`` for a folder
and ``(images, targets, names)`` for the test split. The CSV is written to a temporary file and
renamed when prediction ends, so a failed run leaves an earlier CSV as it was; a second prediction
into the same run folder is ``predictions-2.csv``, and an existing ``--predictions.path`` is an
error.
"""

from __future__ import annotations

import contextlib
import csv
import os
from pathlib import Path

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter


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
        # An earlier prediction in the run folder stays: this one gets the next free name.
        stem, number = path.stem, 1
        while not self.path and path.exists():
            number += 1
            path = path.with_name(f"{stem}-{number}{path.suffix}")
        return path

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.written = self._output(trainer)
        self.written.parent.mkdir(parents=True, exist_ok=True)
        self._partial = self.written.with_name(f".{self.written.name}.{os.getpid()}.tmp")
        self._file = open(self._partial, "w", newline="")  # noqa: SIM115  (closed at predict end)
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
        files = batch[-1]
        targets = batch[1].tolist() if len(batch) == 3 else None
        if not self._header_done:
            header = ["file", *(["target"] if targets is not None else []), "prediction"]
            for i in range(1, k + 1):
                header += [f"top{i}", f"top{i}_prob"]
            self._writer.writerow(header)
            self._header_done = True
        for row, (indices, values) in enumerate(
            zip(top.indices.tolist(), top.values.tolist(), strict=True)
        ):
            classes = [names[i] for i in indices]
            cells = [
                files[row],
                *([names[targets[row]]] if targets is not None else []),
                classes[0],
            ]
            for name, value in zip(classes, values, strict=True):
                cells += [name, f"{value:.6f}"]
            self._writer.writerow(cells)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            os.replace(self._partial, self.written)  # the command's last line names the file

    def on_exception(self, trainer, pl_module, exception) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            with contextlib.suppress(OSError):
                self._partial.unlink()
