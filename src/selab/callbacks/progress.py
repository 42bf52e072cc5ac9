"""The progress bar: the training loss on it, refreshed without stalling the device, and no
version number among its metrics."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import RichProgressBar as LightningRichProgressBar


class ProgressLoss(Callback):
    """Shows ``train/loss`` on Lightning's progress bar, refreshed every ``every_n_steps`` steps.

    Lightning turns every ``prog_bar`` value into a Python number each time the bar refreshes
    (every step by default), which waits for the device to finish the step. Here the loss is
    copied to host memory without waiting (pinned memory and an event on CUDA) and the bar shows
    the copy made ``every_n_steps`` steps earlier once the device has finished it: nothing on the
    host ever waits for the device. On a CPU the copy is an ordinary read, made on those steps
    only.

    Args:
        enabled: ``--progress.enabled false`` switches it off.
        every_n_steps: steps between two refreshes of the shown loss.
    """

    def __init__(self, enabled: bool = True, every_n_steps: int = 20) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.enabled = enabled
        self.every_n_steps = every_n_steps
        self._host: torch.Tensor | None = None
        self._event: torch.cuda.Event | None = None

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._host, self._event = None, None

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self.enabled or trainer.progress_bar_callback is None:
            return
        if (trainer.global_step - 1) % self.every_n_steps:
            return
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        self._show_previous(trainer)
        self._copy(loss.detach())

    def _copy(self, loss: torch.Tensor) -> None:
        if loss.device.type == "cuda":
            if self._host is None:
                self._host = torch.empty((), dtype=loss.dtype, pin_memory=True)
                self._event = torch.cuda.Event()
            self._host.copy_(loss, non_blocking=True)
            self._event.record()
        else:
            self._host = loss.float()

    def _show_previous(self, trainer: Trainer) -> None:
        if self._host is None or (self._event is not None and not self._event.query()):
            return
        # The bar reads this dict at its next refresh; a plain float costs it nothing to show.
        trainer.progress_bar_metrics["train/loss"] = round(self._host.item(), 4)


class RichProgressBar(LightningRichProgressBar):
    """Lightning's default progress bar without ``v_num``: the run folder's version number, which
    the bar would show among the metrics (``0.000`` with the CSV logger)."""

    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items
