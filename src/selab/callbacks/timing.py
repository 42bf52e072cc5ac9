"""Training wall time, from Lightning's ``Timer``."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.trainer.states import RunningStage, TrainerFn


class FitTimer(Timer):
    """Lightning's ``Timer`` that also logs ``time/fit_elapsed_s`` (training wall time, validation
    included) after every validation of ``fit``. The elapsed time is kept in checkpoints, so a
    resumed run counts on from where it stopped.

    Args:
        enabled: ``--timer.enabled false`` stops the logging.
        duration: stop training after this long (``"00:12:00:00"``, a ``timedelta`` or a dict), as
            Lightning's ``Timer``; None (the default) never stops. The CLI links
            ``trainer.max_time`` here (Lightning ignores it when a Timer is among the callbacks).
        interval, verbose: as Lightning's ``Timer`` (when the duration is checked; announce the
            stop).
    """

    def __init__(
        self,
        enabled: bool = True,
        duration: str | timedelta | dict[str, int] | None = None,
        interval: Literal["step", "epoch"] = "step",
        verbose: bool = True,
    ) -> None:
        super().__init__(duration=duration, interval=interval, verbose=verbose)
        self.enabled = enabled

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.enabled or trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        elapsed = self.time_elapsed(RunningStage.TRAINING)
        for logger in trainer.loggers:
            logger.log_metrics({"time/fit_elapsed_s": elapsed}, step=trainer.global_step)
