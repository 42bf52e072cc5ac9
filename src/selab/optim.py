"""Optimizer plumbing: learning-rate schedules that need the run's length (which only the Trainer
knows), per-group learning-rate multipliers, and multi-tensor optimizer kernels."""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


class WarmupCosineLR(LambdaLR):
    """Linear warmup then cosine decay, stepped every optimizer step.

    ``total_steps=None`` (the default) is filled in by ``Classifier`` from
    ``trainer.estimated_stepping_batches``, so the schedule follows ``max_epochs``, the dataset size,
    gradient accumulation and the number of devices without being restated in the config.
    """

    interval = "step"

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_steps: int = 0,
        total_steps: int | None = None,
        min_lr_ratio: float = 0.0,
    ) -> None:
        if warmup_steps < 0 or not 0.0 <= min_lr_ratio <= 1.0:
            raise ValueError("warmup_steps must be >= 0 and min_lr_ratio in [0, 1]")
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.min_lr_ratio = min_lr_ratio
        super().__init__(optimizer, self.factor)

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if not self.total_steps:
            return 1.0
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine


class TriangularLR(LambdaLR):
    """Piecewise-linear schedule, stepped every optimizer step: from ``start_factor`` x lr up to
    lr at ``peak`` (a fraction of the run), then down to ``end_factor`` x lr at the last step.

    The defaults are the triangular schedule of the airbench94 recipe (Jordan 2024): 0.2 -> 1 over
    the first 23% of the steps, then down to 0.07. ``total_steps=None`` is filled in by
    ``Classifier`` from ``trainer.estimated_stepping_batches``, as for :class:`WarmupCosineLR`.
    """

    interval = "step"

    def __init__(
        self,
        optimizer: Optimizer,
        peak: float = 0.23,
        start_factor: float = 0.2,
        end_factor: float = 0.07,
        total_steps: int | None = None,
    ) -> None:
        if not 0.0 <= peak <= 1.0 or start_factor < 0 or end_factor < 0:
            raise ValueError("peak must be in [0, 1] and the factors >= 0")
        self.peak = peak
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.total_steps = total_steps
        super().__init__(optimizer, self.factor)

    def factor(self, step: int) -> float:
        if not self.total_steps:
            return self.start_factor
        peak_step = self.peak * self.total_steps
        if step < peak_step:
            return self.start_factor + (1.0 - self.start_factor) * step / peak_step
        decay_steps = max(1.0, self.total_steps - peak_step)
        progress = min(1.0, (step - peak_step) / decay_steps)
        return 1.0 + (self.end_factor - 1.0) * progress


RUN_LENGTH_SCHEDULES = (WarmupCosineLR, TriangularLR)


def parameter_groups(module: nn.Module) -> list[dict] | list[nn.Parameter]:
    """The module's optimizer parameter groups: its own ``parameter_groups()`` when it defines one
    (a backbone giving some parameters their own learning rate), else its trainable parameters.

    A group may carry ``lr_scale`` and ``weight_decay_scale``; :func:`scale_param_groups` applies
    them once the optimizer has filled in its defaults.
    """
    groups = getattr(module, "parameter_groups", None)
    if callable(groups):
        return [group for group in groups() if group["params"]]
    return [param for param in module.parameters() if param.requires_grad]


def scale_param_groups(optimizer: Optimizer) -> Optimizer:
    """Multiply each group's ``lr`` and ``weight_decay`` by its ``lr_scale`` and
    ``weight_decay_scale`` (both default to 1); schedules then scale each group's own base lr."""
    for group in optimizer.param_groups:
        group["lr"] = group["lr"] * group.pop("lr_scale", 1.0)
        if "weight_decay" in group:
            group["weight_decay"] = group["weight_decay"] * group.pop("weight_decay_scale", 1.0)
        group.pop("weight_decay_scale", None)
    return optimizer


def multi_tensor_kwargs(factory: Callable, device: torch.device) -> dict[str, bool]:
    """``fused=True`` on CUDA (one kernel updates every parameter), ``foreach=True`` elsewhere, for
    an optimizer factory that takes these options and was left at their defaults (None).

    ``factory`` is a class such as ``torch.optim.SGD`` or the ``functools.partial`` LightningCLI
    builds from YAML; an explicit ``fused``/``foreach`` in the config is kept as given.
    """
    keywords = getattr(factory, "keywords", None) or {}
    target = factory
    while isinstance(target, functools.partial):
        target = next((a for a in reversed(target.args) if isinstance(a, type)), target.func)
    try:
        accepted = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return {}
    if "fused" not in accepted or "foreach" not in accepted:
        return {}
    if keywords.get("fused") is not None or keywords.get("foreach") is not None:
        return {}
    return {"fused": True} if device.type == "cuda" else {"foreach": True}


class StepMultiStepLR(torch.optim.lr_scheduler.MultiStepLR):
    """``MultiStepLR`` whose milestones count optimizer steps (iterations), not epochs: for
    recipes written in iterations, such as "lr 0.01, then 0.001 after 100k iterations"."""

    interval = "step"
