"""``trainer.log_every_n_steps`` no longer than an epoch, so short runs log step metrics too."""

from __future__ import annotations

import math

from lightning.pytorch import Callback, LightningModule, Trainer


class EpochLogInterval(Callback):
    """Lower ``trainer.log_every_n_steps`` (Lightning's 50) to the number of training batches of
    an epoch when that is smaller: with 30 batches and 1 epoch Lightning would never reach a
    logging step, and ``train/loss`` and throughput would be missing. The ``lightning`` command
    adds it when ``trainer.log_every_n_steps`` is not set."""

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        batches = trainer.num_training_batches
        if not math.isinf(batches) and 0 < batches < trainer.log_every_n_steps:
            trainer.log_every_n_steps = int(batches)
