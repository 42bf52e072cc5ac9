"""The ``model/summary`` text: parameters and MACs of each part of the backbone."""

from __future__ import annotations

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from .. import analysis
from ..tables import to_markdown
from ._compiled import uncompiled
from ._tensorboard import backbone_of, batch_images, is_fresh_run, tensorboard_logger


class CostSummary(Callback):
    """Parameters and MACs per image of each part of the backbone, and with vs without attention,
    as a TensorBoard text (``model/summary``), written once per run folder at the first batch.

    Counted with ``torch.utils.flop_counter`` (MACs = FLOPs / 2; convolutions and matrix products,
    not element-wise work) on one real image.

    Args:
        enabled: ``--summary.enabled false`` switches it off.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._pending = False

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._pending = self.enabled and trainer.is_global_zero and is_fresh_run(trainer)

    def _describe(self, trainer: Trainer, pl_module: LightningModule, batch) -> None:
        if not self._pending:
            return
        self._pending = False
        example = batch_images(batch)[:1]
        backbone = backbone_of(pl_module)
        with uncompiled(backbone):
            parts = analysis.module_table(backbone, example)
            cost = analysis.complexity(backbone, example, int(parts["MACs"].iloc[-1]))
        writer = tensorboard_logger(trainer).experiment
        writer.add_text("model/summary", summary_text(example, parts, cost), trainer.global_step)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self._describe(trainer, pl_module, batch)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._describe(trainer, pl_module, batch)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._describe(trainer, pl_module, batch)


def summary_text(example: torch.Tensor, parts, cost) -> str:
    """The text: the per-part and the with/without-attention tables (DataFrames) as Markdown."""
    shape = "x".join(str(s) for s in example.shape[1:])
    return (
        f"Parameters and MACs per {shape} image, counted with torch.utils.flop_counter "
        "(MACs = FLOPs / 2; convolutions and matrix products, not element-wise work).\n\n"
        f"{to_markdown(parts)}\n\n{to_markdown(cost)}\n"
    )
