"""Attention gate statistics over the validation set (the SE paper's excitation analysis)."""

from __future__ import annotations

from contextlib import ExitStack

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn

from .. import analysis
from ._compiled import uncompiled
from ._tensorboard import backbone_of, batch_images, tensorboard_logger


class ExcitationMonitor(Callback):
    """Attention gate statistics over the validation set, after every validation epoch.

    The gate of each attention block (see :func:`selab.analysis.attention_blocks`: modules of the
    registered attention classes, read through their ``excitation`` method or ``gate`` sub-module)
    is averaged per channel over the validation images and logged as a histogram,
    ``excitation/stage<s>/<block>``, plus ``excitation/stage<s>/all`` pooling each stage's blocks.
    For a few blocks (``class_blocks``; by default the last block of each stage) the mean per class
    is drawn as in the SE paper's Fig. 6, ``excitation/per_class``, every
    ``figure_every_n_epochs`` epochs and at the last one.

    Cost: the hooks add a sum and an ``index_add_`` of an (N, C) tensor per block and batch, on
    the model's device, during validation only (nothing runs during training or the sanity
    check). A compiled backbone runs those validation epochs uncompiled: hooks that come and go
    would otherwise make it recompile.

    Args:
        enabled: switch the whole callback (``--excitation.enabled false``).
        class_blocks: module paths (as in ``model.named_modules()``, e.g.
            ``backbone.stages.2.2.attention``) for the per-class figure.
        max_classes: classes drawn in the per-class figure (the first ones).
        figure_every_n_epochs: how often to draw it (0: only at the end of training).
    """

    def __init__(
        self,
        enabled: bool = True,
        class_blocks: list[str] | None = None,
        max_classes: int = 10,
        figure_every_n_epochs: int = 10,
    ) -> None:
        self.enabled = enabled
        self.class_blocks = class_blocks
        self.max_classes = max_classes
        self.figure_every_n_epochs = figure_every_n_epochs
        self.stats: analysis.GateStats | None = None
        self._blocks: list[analysis.AttentionBlock] | None = None
        self._context: ExitStack | None = None
        self._active = False

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._blocks = None

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._active = (
            self.enabled and not trainer.sanity_checking and tensorboard_logger(trainer) is not None
        )
        self.stats = None

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if not self._active:
            return
        if self.stats is None:
            self._start(pl_module, batch_images(batch))
            if self.stats is None:
                return
        targets = batch[1] if isinstance(batch, (list, tuple)) and len(batch) > 1 else None
        if targets is not None and targets.ndim == 2:  # class probabilities
            targets = targets.argmax(1)
        self.stats.targets = targets

    def _start(self, pl_module: LightningModule, images: torch.Tensor) -> None:
        self._context = ExitStack()
        self._context.enter_context(uncompiled(backbone_of(pl_module)))
        if self._blocks is None:
            self._blocks = analysis.attention_blocks(pl_module, images[:1])
        if not self._blocks:
            self._active = False
            self._close()
            return
        names = self.class_blocks or analysis.default_class_blocks(self._blocks)
        unknown = set(names) - {b.name for b in self._blocks}
        if unknown:
            self._close()
            raise ValueError(
                f"excitation.class_blocks: no attention block {sorted(unknown)}; blocks are "
                f"{[b.name for b in self._blocks]}"
            )
        self.stats = analysis.GateStats(
            self._blocks,
            pl_module.num_classes,
            getattr(pl_module, "class_names", None),
            class_blocks=names,
        )
        self._context.enter_context(analysis.GateHooks(self._blocks, self.stats.update))

    def _close(self) -> None:
        if self._context is not None:
            self._context.close()
            self._context = None

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._close()
        if not self._active or self.stats is None:
            return
        self.stats.targets = None
        self.stats.reduce(lambda t: trainer.strategy.reduce(t, reduce_op="sum"))
        if trainer.is_global_zero:
            self._log(trainer)

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._close()

    def teardown(self, trainer, pl_module, stage) -> None:
        self._close()

    def _draw_figure_now(self, trainer: Trainer) -> bool:
        epoch = trainer.current_epoch + 1
        last = trainer.max_epochs is not None and epoch >= trainer.max_epochs > 0
        periodic = self.figure_every_n_epochs > 0 and epoch % self.figure_every_n_epochs == 0
        return last or periodic or trainer.should_stop or trainer.state.fn != TrainerFn.FITTING

    def _log(self, trainer: Trainer) -> None:
        stats, step = self.stats, trainer.global_step
        writer = tensorboard_logger(trainer).experiment
        for stage, blocks in stats.stages().items():
            means = [stats.mean(block.name) for block in blocks]
            for block, mean in zip(blocks, means, strict=True):
                writer.add_histogram(f"excitation/stage{stage}/{block.short_name}", mean, step)
            writer.add_histogram(f"excitation/stage{stage}/all", torch.cat(means), step)
        if self._draw_figure_now(trainer):
            figure = analysis.plot_class_gates(stats, max_classes=self.max_classes)
            if figure is not None:
                writer.add_figure("excitation/per_class", figure, step, close=False)
