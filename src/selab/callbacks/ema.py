"""Exponential moving average of the weights, without reading the device every step."""

from __future__ import annotations

import itertools
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import EMAWeightAveraging as LightningEMAWeightAveraging


class EMAWeightAveraging(LightningEMAWeightAveraging):
    """Lightning's ``EMAWeightAveraging`` (validates and checkpoints the averaged weights) with
    the update done by multi-tensor ``lerp`` on the device.

    ``torch.optim.swa_utils.AveragedModel.update_parameters`` reads its update counter back to
    the host twice per update (``if n_averaged == 0``), a device sync at every step; here whether
    it is the first update is known on the host. Floating-point parameters and buffers are
    averaged, the others (BatchNorm's batch counts) copied.

    Args: as Lightning's (``decay``, ``update_every_n_steps``, ``update_starting_at_step``,
    ``update_starting_at_epoch``, ``use_buffers``, ``device``).
    """

    def __init__(
        self,
        device: torch.device | str | int | None = None,
        use_buffers: bool = True,
        decay: float = 0.999,
        update_every_n_steps: int = 1,
        update_starting_at_step: int | None = None,
        update_starting_at_epoch: int | None = None,
        **kwargs: Any,
    ) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {decay}")
        super().__init__(
            device=device,
            use_buffers=use_buffers,
            decay=decay,
            update_every_n_steps=update_every_n_steps,
            update_starting_at_step=update_starting_at_step,
            update_starting_at_epoch=update_starting_at_epoch,
            **kwargs,
        )
        self.decay = decay
        self._averaged_once = False

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._averaged_once = self._latest_update_step > 0

    def _tensors(self, module: torch.nn.Module) -> list[torch.Tensor]:
        tensors = module.parameters()
        if self._use_buffers:
            tensors = itertools.chain(tensors, module.buffers())
        return [t.detach() for t in tensors]

    @torch.no_grad()
    def _update(self, pl_module: LightningModule) -> None:
        average = self._average_model
        averaged = self._tensors(average.module)
        current = [t.to(a.device) for a, t in zip(averaged, self._tensors(pl_module), strict=True)]
        if not self._averaged_once:
            torch._foreach_copy_(averaged, current)
            self._averaged_once = True
        else:
            floats = [
                (a, c) for a, c in zip(averaged, current, strict=True) if a.is_floating_point()
            ]
            others = [
                (a, c) for a, c in zip(averaged, current, strict=True) if not a.is_floating_point()
            ]
            if floats:
                torch._foreach_lerp_([a for a, _ in floats], [c for _, c in floats], 1 - self.decay)
            if others:
                torch._foreach_copy_([a for a, _ in others], [c for _, c in others])
        if not self._use_buffers:
            for avg_buffer, buffer in zip(
                average.module.buffers(), pl_module.buffers(), strict=True
            ):
                avg_buffer.copy_(buffer)
        average.n_averaged += 1

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step_idx = trainer.global_step - 1
        if trainer.global_step > self._latest_update_step and self.should_update(step_idx=step_idx):
            self._update(pl_module)
            self._latest_update_step = trainer.global_step

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        epoch = trainer.current_epoch
        if epoch > self._latest_update_epoch and self.should_update(epoch_idx=epoch):
            self._update(pl_module)
            self._latest_update_epoch = epoch
