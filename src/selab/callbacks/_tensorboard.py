"""What the TensorBoard callbacks share: finding the logger, the images of a batch, fresh runs,
and writing once per run folder."""

from __future__ import annotations

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn

from .. import runs


def tensorboard_logger(trainer: Trainer) -> TensorBoardLogger | None:
    return next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)


def batch_images(batch) -> torch.Tensor:
    return batch[0] if isinstance(batch, (list, tuple)) else batch


def batch_size(batch) -> int:
    """Images in a batch: a shape, never a value, so it costs no device read."""
    return batch_images(batch).shape[0]


def backbone_of(pl_module: LightningModule) -> nn.Module:
    return getattr(pl_module, "backbone", pl_module)


def is_fresh_run(trainer: Trainer) -> bool:
    """Whether the run folder has no earlier session: a resumed fit, or a test logged into the run
    that trained the checkpoint, keeps what the first session wrote (HParams session, graph,
    model summary)."""
    logger = tensorboard_logger(trainer)
    return logger is not None and not runs.has_logged(logger.log_dir)


class OncePerRun(Callback):
    """Writes something to TensorBoard once per run folder, at the first batch of any stage (real
    input shape, model on its device); a run folder resumed or tested into keeps what its first
    session wrote. Subclasses implement :meth:`write`.

    Args:
        enabled: ``false`` switches it off.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._pending = False

    def write(self, trainer: Trainer, pl_module: LightningModule, batch) -> None:
        raise NotImplementedError

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._pending = self.enabled and trainer.is_global_zero and is_fresh_run(trainer)

    def _first_batch(self, trainer: Trainer, pl_module: LightningModule, batch) -> None:
        if self._pending:
            self._pending = False
            self.write(trainer, pl_module, batch)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self._first_batch(trainer, pl_module, batch)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._first_batch(trainer, pl_module, batch)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._first_batch(trainer, pl_module, batch)
