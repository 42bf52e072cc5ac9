"""Exponential moving average of the weights, without reading the device every step."""

from __future__ import annotations

import itertools
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import EMAWeightAveraging as LightningEMAWeightAveraging


class EMAWeightAveraging(LightningEMAWeightAveraging):
    """Lightning's ``EMAWeightAveraging`` (when to update, validating and checkpointing the
    averaged weights: its hooks) with the update itself done by multi-tensor ``lerp`` on the device.

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

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit":  # Lightning's hooks update the average through this method
            self._average_model.update_parameters = self._update

    def _tensors(self, module: torch.nn.Module, buffers: bool) -> list[torch.Tensor]:
        tensors = module.parameters()
        if buffers:
            tensors = itertools.chain(tensors, module.buffers())
        return [t.detach() for t in tensors]

    def _pairs(self, pl_module: LightningModule) -> tuple[list, list, list, list]:
        """(averaged floats, their sources, other averaged tensors, their sources): worked out
        once per (average, model) pair; later steps only run the two multi-tensor ops."""
        key = (id(self._average_model.module), id(pl_module))
        if getattr(self, "_pairs_key", None) != key:
            average = self._average_model.module
            pairs = list(
                zip(
                    self._tensors(average, self._use_buffers),
                    self._tensors(pl_module, self._use_buffers),
                    strict=True,
                )
            )
            floats = [(a, c) for a, c in pairs if a.is_floating_point()]
            others = [(a, c) for a, c in pairs if not a.is_floating_point()]
            if not self._use_buffers:  # buffers are copied, not averaged
                others += list(zip(average.buffers(), pl_module.buffers(), strict=True))
            self._pairs_cache = (
                [a for a, _ in floats], [c for _, c in floats],
                [a for a, _ in others], [c for _, c in others],
            )  # fmt: skip
            self._moves = any(a.device != c.device for a, c in pairs)
            self._pairs_key = key
        return self._pairs_cache

    @torch.no_grad()
    def _update(self, pl_module: LightningModule) -> None:
        avg_floats, floats, avg_others, others = self._pairs(pl_module)
        if self._moves:  # the average lives on another device (``device=``)
            floats = [c.to(a.device) for a, c in zip(avg_floats, floats, strict=True)]
            others = [c.to(a.device) for a, c in zip(avg_others, others, strict=True)]
        if avg_floats:
            if self._averaged_once:
                torch._foreach_lerp_(avg_floats, floats, 1 - self.decay)
            else:
                torch._foreach_copy_(avg_floats, floats)
        if avg_others:
            torch._foreach_copy_(avg_others, others)
        self._averaged_once = True
        self._average_model.n_averaged += 1
