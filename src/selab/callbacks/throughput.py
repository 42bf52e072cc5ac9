"""Images per second, from Lightning's ``ThroughputMonitor``, without a device sync per step."""

from __future__ import annotations

import time
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ThroughputMonitor
from lightning.pytorch.trainer.states import RunningStage, TrainerFn
from lightning.pytorch.utilities import rank_zero_only

from ._tensorboard import batch_size


def _synchronize(trainer: Trainer) -> None:
    if trainer.strategy.root_device.type == "cuda":
        torch.cuda.synchronize(trainer.strategy.root_device)


class Throughput(ThroughputMonitor):
    """``throughput/train_images_per_s`` at every logging step and ``throughput/val_images_per_s``
    after every validation, per device.

    Lightning's ``ThroughputMonitor`` synchronises the device after every batch to time it; here
    every batch is only counted (its size is a shape, no device read) and the clock is read, after
    one synchronisation, at logging steps (``trainer.log_every_n_steps``) and around validation.
    The training rate is over the steps since the previous logging step, validation time excluded.

    Args:
        enabled: ``--throughput.enabled false`` switches it off.
    """

    def __init__(self, enabled: bool = True) -> None:
        super().__init__(batch_size_fn=batch_size, window_size=2)
        self.enabled = enabled
        self._paused_at: float | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.enabled:
            super().setup(trainer, pl_module, stage)

    def _count(self, trainer: Trainer, batch: Any) -> RunningStage:
        stage = trainer.state.stage
        self._samples[stage] += self.batch_size_fn(batch)
        self._batches[stage] += 1
        return stage

    def _clock(self, trainer: Trainer, stage: RunningStage) -> None:
        _synchronize(trainer)
        self._throughputs[stage].update(
            time=time.perf_counter() - self._t0s[stage],
            batches=self._batches[stage],
            samples=self._samples[stage],
        )

    def _log(self, trainer: Trainer, stage: RunningStage, name: str) -> None:
        rate = self._throughputs[stage].compute().get("device/samples_per_sec")
        if rate is not None:
            for logger in trainer.loggers:
                logger.log_metrics({f"throughput/{name}_images_per_s": rate}, trainer.global_step)

    @rank_zero_only
    def on_train_start(self, trainer: Trainer, *_: Any) -> None:
        if self.enabled:
            super().on_train_start(trainer)
            self._clock(trainer, RunningStage.TRAINING)  # the window's first point

    @rank_zero_only
    def on_train_batch_end(self, trainer: Trainer, pl_module, outputs, batch, *_: Any) -> None:
        if not self.enabled:
            return
        stage = self._count(trainer, batch)
        if trainer._logger_connector.should_update_logs:  # the step Lightning logs at
            self._clock(trainer, stage)
            self._log(trainer, stage, "train")

    @rank_zero_only
    def on_validation_start(self, trainer: Trainer, *_: Any) -> None:
        if not self.enabled or trainer.sanity_checking:
            return
        if trainer.state.fn == TrainerFn.FITTING:
            _synchronize(trainer)
            self._paused_at = time.perf_counter()
        super().on_validation_start(trainer)

    @rank_zero_only
    def on_validation_batch_end(self, trainer: Trainer, pl_module, outputs, batch, *_: Any, **__):
        if self.enabled and not trainer.sanity_checking:
            self._count(trainer, batch)

    @rank_zero_only
    def on_validation_end(self, trainer: Trainer, *_: Any) -> None:
        if not self.enabled or trainer.sanity_checking:
            return
        self._clock(trainer, RunningStage.VALIDATING)
        # One point since the start of validation: the rate is samples over elapsed time.
        throughput = self._throughputs[RunningStage.VALIDATING]
        elapsed, samples = throughput._time[-1], throughput._samples[-1]
        if elapsed > 0:
            for logger in trainer.loggers:
                logger.log_metrics(
                    {"throughput/val_images_per_s": samples / elapsed}, trainer.global_step
                )
        if self._paused_at is not None and RunningStage.TRAINING in self._t0s:
            self._t0s[RunningStage.TRAINING] += time.perf_counter() - self._paused_at
            self._paused_at = None

    def on_test_start(self, trainer: Trainer, *_: Any) -> None:
        """Test throughput is not logged."""

    def on_test_batch_end(self, *_: Any, **__: Any) -> None:
        """Test throughput is not logged."""

    def on_predict_start(self, trainer: Trainer, *_: Any) -> None:
        """Predict throughput is not logged."""

    def on_predict_batch_end(self, *_: Any, **__: Any) -> None:
        """Predict throughput is not logged."""
