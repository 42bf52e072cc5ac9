"""What the TensorBoard callbacks share: finding the logger, the images of a batch, fresh runs."""

from __future__ import annotations

import torch
from lightning.pytorch import LightningModule, Trainer
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
