"""Instruments for tests and benchmarks: device->host reads and compilations during training.

A value read back from the device (``loss.item()``, ``if tensor:``, ``float(metric)``) makes the
host wait until the device has finished all queued work, so a training step that reads anything
cannot overlap the next one with it. On a GPU ``torch.cuda.set_sync_debug_mode("error")`` catches
these; :class:`HostReadCounter` catches them on any device, the CPU included, by counting calls of
the tensor methods that read values (:data:`READ_METHODS`) step by step.

:class:`CompileCounter` counts the frames ``torch.compile`` (Dynamo) compiles, epoch by epoch: after
the first epoch (training and validation graphs built) a run should compile nothing more.
"""

from __future__ import annotations

import traceback
from collections import defaultdict
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

# Tensor methods that copy values to the host: every one waits for the device.
READ_METHODS = (
    "item",
    "tolist",
    "cpu",
    "numpy",
    "__bool__",
    "__float__",
    "__int__",
    "__index__",
)


class HostReadCounter(Callback):
    """Counts device->host reads in each training step of ``fit``.

    A step's window runs from its ``on_train_batch_start`` to the next step's (so it covers the
    step, every callback after it, Lightning's per-step bookkeeping and the next batch's loading),
    or to the end of the epoch's training (validation and epoch-end work are not counted).
    Only steps with ``batch_idx >= skip`` are counted: the first steps of a run set things up.

    ``reads[global_step]`` lists ``(method, where)`` for each read, ``where`` being the innermost
    caller outside torch, for the error message.
    """

    def __init__(self, skip: int = 2) -> None:
        self.skip = skip
        self.reads: dict[int, list[tuple[str, str]]] = defaultdict(list)
        self.counted_steps: list[int] = []
        self._originals: dict[str, Any] = {}
        self._step: int | None = None

    # -- patching -------------------------------------------------------------------------------
    def _patch(self) -> None:
        if self._originals:
            return
        for name in READ_METHODS:
            original = getattr(torch.Tensor, name)
            self._originals[name] = original
            setattr(torch.Tensor, name, self._wrap(name, original))

    def _unpatch(self) -> None:
        for name, original in self._originals.items():
            setattr(torch.Tensor, name, original)
        self._originals = {}

    def _wrap(self, name: str, original):
        counter = self

        def read(tensor, *args, **kwargs):
            if counter._step is not None:
                counter.reads[counter._step].append((name, _caller()))
            return original(tensor, *args, **kwargs)

        read.__name__ = name
        return read

    # -- windows --------------------------------------------------------------------------------
    def _close(self) -> None:
        self._step = None
        self._unpatch()

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._close()
        if batch_idx >= self.skip:
            self._step = trainer.global_step
            self.counted_steps.append(self._step)
            self._patch()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._close()

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._close()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception) -> None:
        self._close()

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._close()

    # -- results --------------------------------------------------------------------------------
    def per_step(self) -> dict[int, int]:
        """Reads in every counted step (0 for the steps that read nothing)."""
        return {step: len(self.reads.get(step, [])) for step in self.counted_steps}

    def describe(self, steps=None) -> str:
        lines = []
        for step in steps if steps is not None else self.counted_steps:
            for name, where in self.reads.get(step, []):
                lines.append(f"step {step}: Tensor.{name} from {where}")
        return "\n".join(lines) or "no reads"


def _caller() -> str:
    for frame in reversed(traceback.extract_stack()[:-2]):
        if "/torch/" not in frame.filename and "testing.py" not in frame.filename:
            return f"{frame.filename}:{frame.lineno} ({frame.name})"
    return "torch"


class CompileCounter(Callback):
    """Frames compiled by Dynamo, recorded at the end of every training epoch (after its
    validation). ``after_epoch[e]`` is the running total once epoch ``e`` ended;
    :meth:`compiled_after` the frames compiled after the end of ``epoch``."""

    def __init__(self) -> None:
        self.after_epoch: list[int] = []
        self._start = 0

    @staticmethod
    def frames() -> int:
        from torch._dynamo.utils import counters

        return int(counters["frames"]["total"])

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start = self.frames()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Validation runs before on_train_epoch_end, so its graphs are included.
        self.after_epoch.append(self.frames() - self._start)

    def compiled_after(self, epoch: int) -> int:
        return self.after_epoch[-1] - self.after_epoch[epoch]
