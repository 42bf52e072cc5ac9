"""The model graph in TensorBoard's Graphs tab."""

from __future__ import annotations

import warnings

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from ._compiled import uncompiled
from ._tensorboard import backbone_of, batch_images, is_fresh_run, tensorboard_logger


class ModelGraph(Callback):
    """The backbone's graph, traced from one real image in eval mode (batch-norm statistics
    untouched), written once per run folder at the first batch. A backbone that cannot be traced
    gets a warning and trains anyway.

    Args:
        enabled: ``--graph.enabled false`` switches it off.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._pending = False

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._pending = self.enabled and trainer.is_global_zero and is_fresh_run(trainer)

    def _draw(self, trainer: Trainer, pl_module: LightningModule, batch) -> None:
        if not self._pending:
            return
        self._pending = False
        writer = tensorboard_logger(trainer).experiment
        add_graph(writer, backbone_of(pl_module), batch_images(batch)[:1])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self._draw(trainer, pl_module, batch)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._draw(trainer, pl_module, batch)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._draw(trainer, pl_module, batch)


@torch.no_grad()
def add_graph(writer, backbone: nn.Module, example: torch.Tensor) -> None:
    training = backbone.training
    backbone.eval()
    try:
        with uncompiled(backbone), warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*torch.jit.trace.*deprecated")
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            writer.add_graph(backbone, example)
    except Exception as error:
        rank_zero_warn(f"ModelGraph: could not trace the model graph ({error})")
    finally:
        backbone.train(training)
