"""Lookahead weight averaging as the airbench recipe schedules it."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import nn


class Lookahead(Callback):
    """Lookahead (Zhang, Lucas, Hinton, Ba 2019, "Lookahead Optimizer: k steps forward, 1 step
    back"), scheduled as in Jordan 2024 (airbench).

    Every ``every_n_steps`` optimizer steps the slow weights move toward the model's (fast)
    weights, ``slow = decay * slow + (1 - decay) * fast``, and the model restarts from them. The
    decay grows as ``decay * (step / total_steps) ** power``: the average is short early in
    training and long at the end. At the last step the model takes the slow weights. BatchNorm
    statistics are averaged with the weights; integer buffers are left alone.

    Everything happens on the device with multi-tensor ops; the step count is the Trainer's, on the
    host, so no value is read back. The slow weights are kept in checkpoints.

    Args:
        every_n_steps: k, the optimizer steps between two averages (5).
        decay: the decay reached at the end of training (0.95 ** 5).
        power: how the decay grows with training progress (3: cubic).
    """

    def __init__(self, every_n_steps: int = 5, decay: float = 0.95**5, power: float = 3.0) -> None:
        if every_n_steps < 1 or not 0.0 <= decay <= 1.0 or power < 0:
            raise ValueError("every_n_steps must be >= 1, decay in [0, 1] and power >= 0")
        self.every_n_steps = every_n_steps
        self.decay = decay
        self.power = power
        self.slow: list[torch.Tensor] | None = None
        self._total_steps = 0
        self._last_step = -1

    @staticmethod
    def _fast(pl_module: LightningModule) -> list[torch.Tensor]:
        module: nn.Module = getattr(pl_module, "backbone", pl_module)
        tensors = list(module.parameters()) + list(module.buffers())
        return [t.detach() for t in tensors if t.is_floating_point()]

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":
            self.slow = None  # a checkpoint being resumed restores it before on_fit_start

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._total_steps = int(trainer.estimated_stepping_batches)
        self._last_step = trainer.global_step
        fast = self._fast(pl_module)
        if self.slow is None:
            self.slow = [t.clone() for t in fast]
        else:  # restored from a checkpoint, perhaps onto another device
            self.slow = [s.to(t.device) for s, t in zip(self.slow, fast, strict=True)]

    def decay_at(self, step: int) -> float:
        progress = min(1.0, step / max(1, self._total_steps))
        return self.decay * progress**self.power

    @torch.no_grad()
    def _average(self, pl_module: LightningModule, decay: float) -> None:
        fast = self._fast(pl_module)
        if decay < 1.0:
            torch._foreach_lerp_(self.slow, fast, 1.0 - decay)
        torch._foreach_copy_(fast, self.slow)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if step == self._last_step:  # gradient accumulation: no optimizer step in this batch
            return
        self._last_step = step
        if step % self.every_n_steps == 0:
            self._average(pl_module, self.decay_at(step))
        if step >= self._total_steps:
            self._average(pl_module, 1.0)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.global_step < self._total_steps:  # stopped early: end on the slow weights too
            self._average(pl_module, 1.0)

    def state_dict(self) -> dict[str, Any]:
        return {"slow": self.slow}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.slow = state_dict.get("slow")
