"""Reload the best weights whenever the learning rate drops.

A recipe from the STL10 study's training loop (study note 000, ``SEBlock_train.py``): it keeps
a copy of the weights with the best validation loss and, after ``ReduceLROnPlateau`` lowers the
learning rate, continues from that copy instead of from the last epoch's weights::

    if val_loss < best_loss:
        best_model_wts = copy.deepcopy(model.state_dict())
    lr_scheduler.step(val_loss)
    if current_lr != get_lr(opt):
        model.load_state_dict(best_model_wts)

Only the model's weights are reloaded (the optimizer keeps its state), as there.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch
from lightning.pytorch import Callback, LightningModule, Trainer


class ReloadBestOnLRDrop(Callback):
    """Keep the weights of the best validation epoch by ``monitor`` and load them back at the
    start of the first training epoch whose learning rate is lower than the previous one's.

    Args:
        monitor: the logged validation metric that ranks epochs (``val/loss`` as in the study).
        mode: ``min`` or ``max``.
    """

    def __init__(self, monitor: str = "val/loss", mode: Literal["min", "max"] = "min") -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.monitor = monitor
        self.mode = mode
        self.best: float | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.last_lr: float | None = None
        self.reloads = 0

    @staticmethod
    def _lr(trainer: Trainer) -> float | None:
        if not trainer.optimizers:
            return None
        return float(trainer.optimizers[0].param_groups[0]["lr"])

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            raise ValueError(
                f"ReloadBestOnLRDrop: no logged metric {self.monitor!r}; logged are "
                f"{sorted(trainer.callback_metrics)}"
            )
        value = float(value)  # once per validation epoch
        better = self.best is None or (
            value < self.best if self.mode == "min" else value > self.best
        )
        if better:
            self.best = value
            self.best_state = copy.deepcopy(pl_module.state_dict())

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        lr = self._lr(trainer)
        if self.last_lr is not None and lr is not None and lr < self.last_lr:
            if self.best_state is not None:
                pl_module.load_state_dict(self.best_state)
                self.reloads += 1
        self.last_lr = lr

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_state": self.best_state,
            "last_lr": self.last_lr,
            "reloads": self.reloads,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = state_dict.get("best")
        self.best_state = state_dict.get("best_state")
        self.last_lr = state_dict.get("last_lr")
        self.reloads = int(state_dict.get("reloads", 0))
