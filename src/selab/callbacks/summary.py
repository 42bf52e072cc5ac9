"""The ``model/summary`` text: parameters and MACs of each part of the backbone."""

from __future__ import annotations

import torch
from lightning.pytorch import LightningModule, Trainer

from .. import analysis
from ..tables import to_markdown
from ._compiled import uncompiled
from ._tensorboard import OncePerRun, backbone_of, batch_images, tensorboard_logger


class CostSummary(OncePerRun):
    """Parameters and MACs per image of each part of the backbone, and with vs without attention,
    as a TensorBoard text (``model/summary``), written once per run folder at the first batch.

    Counted with ``torch.utils.flop_counter`` (MACs = FLOPs / 2; convolutions and matrix products,
    not element-wise work) on one real image.

    Args:
        enabled: ``--summary.enabled false`` switches it off.
    """

    def write(self, trainer: Trainer, pl_module: LightningModule, batch) -> None:
        example = batch_images(batch)[:1]
        backbone = backbone_of(pl_module)
        with uncompiled(backbone):
            parts = analysis.module_table(backbone, example)
            cost = analysis.complexity(backbone, example, int(parts["MACs"].iloc[-1]))
        writer = tensorboard_logger(trainer).experiment
        writer.add_text("model/summary", summary_text(example, parts, cost), trainer.global_step)


def summary_text(example: torch.Tensor, parts, cost) -> str:
    """The text: the per-part and the with/without-attention tables (DataFrames) as Markdown."""
    shape = "x".join(str(s) for s in example.shape[1:])
    return (
        f"Parameters and MACs per {shape} image, counted with torch.utils.flop_counter "
        "(MACs = FLOPs / 2; convolutions and matrix products, not element-wise work).\n\n"
        f"{to_markdown(parts)}\n\n{to_markdown(cost)}\n"
    )
