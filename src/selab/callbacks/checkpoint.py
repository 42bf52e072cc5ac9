"""``ModelCheckpoint`` whose ``last.ckpt`` is always the last epoch.

Lightning 2.6 writes ``last.ckpt`` only at a step where a top-k checkpoint was saved too
("Only save last checkpoint if a checkpoint was actually saved in this step"), so with
``save_top_k: 1`` it stays at the best epoch: ``--ckpt_path last`` would resume from there and
testing ``last.ckpt`` would test the best epoch. This subclass also writes it after every other
validation and after every training epoch (also one that did not validate), and writes
nothing under ``fast_dev_run``, whose ``on_train_end`` Lightning does not guard.
"""

from __future__ import annotations

import warnings

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint as LightningModelCheckpoint


class ModelCheckpoint(LightningModelCheckpoint):
    """Lightning's ``ModelCheckpoint``, with ``last.ckpt`` written at every checkpointing point."""

    # Set by the CLI when fit resumes from a checkpoint (Trainer.ckpt_path is set only later).
    resuming = False

    def _save_last_if_missed(self, trainer: Trainer) -> None:
        if not self.save_last or self._should_skip_saving_checkpoint(trainer):
            return
        if self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_missed(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        # Also when this epoch did not validate (validation runs before this hook), so that a
        # run which validates only at its end can still resume from any epoch.
        self._save_last_if_missed(trainer)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.fast_dev_run:  # "checkpointing is suppressed", but Lightning saves last here
            return
        super().on_train_end(trainer, pl_module)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        with warnings.catch_warnings():
            if self.resuming:  # a resumed run finds its own checkpoints there
                warnings.filterwarnings("ignore", message="Checkpoint directory .* is not empty")
            super().setup(trainer, pl_module, stage)
