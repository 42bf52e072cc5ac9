"""The model graph in TensorBoard's Graphs tab."""

from __future__ import annotations

import warnings

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from ._compiled import uncompiled
from ._tensorboard import OncePerRun, backbone_of, batch_images, tensorboard_logger


class ModelGraph(OncePerRun):
    """The backbone's graph, traced from one real image in eval mode (batch-norm statistics
    untouched), written once per run folder at the first batch. A backbone that cannot be traced
    gets a warning and trains anyway.

    Args:
        enabled: ``--graph.enabled false`` switches it off.
    """

    def write(self, trainer: Trainer, pl_module: LightningModule, batch) -> None:
        writer = tensorboard_logger(trainer).experiment
        add_graph(writer, backbone_of(pl_module), batch_images(batch)[:1])


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
