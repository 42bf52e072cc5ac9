"""Finding a backbone's channel-attention blocks, reading their gates, and removing them
(the SE paper's ablation, on the fly)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from ..models.layers import attention_classes


@dataclass
class AttentionBlock:
    """One channel-attention module of a network.

    ``stage`` is 1-based: the ``stage`` the backbone gave the module when it built it (every selab
    backbone and ``inject_attention`` do), else by spatial size (blocks seeing the same H x W form
    a stage, the largest maps are stage 1). ``shape`` is the (C, H, W) of the feature map the block
    sees.
    """

    name: str
    module: nn.Module
    stage: int
    shape: tuple[int, ...]

    @property
    def channels(self) -> int:
        return self.shape[0]

    @property
    def kind(self) -> str:
        return attention_name(self.module)

    @property
    def short_name(self) -> str:
        name = self.name.removeprefix("backbone.")
        return name.removesuffix(".attention")


def attention_types() -> tuple[type, ...]:
    """Every registered attention class (``selab.models.register_attention``)."""
    return tuple(attention_classes().values())


def attention_name(module: nn.Module) -> str:
    """The registry name of an attention module's class (the most specific one)."""
    for name, cls in attention_classes().items():
        if type(module) is cls:
            return name
    return type(module).__name__


def find_attention(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(path, module)`` of each attention module, outermost only (not their own sub-parts)."""
    types = attention_types()
    found: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if isinstance(module, types) and not any(name.startswith(f"{p}.") for p, _ in found):
            found.append((name, module))
    return found


@torch.no_grad()
def attention_blocks(model: nn.Module, example: torch.Tensor) -> list[AttentionBlock]:
    """The attention modules of ``model`` that run on ``example`` (a batch), with their stages.

    One forward pass in eval mode (batch-norm statistics untouched) records each block's input.
    """
    found = find_attention(model)
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name: str, args: tuple) -> None:  # a pre-hook that returns None changes nothing
        shapes.setdefault(name, tuple(args[0].shape[1:]))

    handles = [
        module.register_forward_pre_hook(lambda m, args, name=name: record(name, args))
        for name, module in found
    ]
    training = model.training
    try:
        model.eval()
        param = next(model.parameters(), None)
        model(example.to(param.device) if param is not None else example)
    finally:
        model.train(training)
        for handle in handles:
            handle.remove()
    used = [(name, module) for name, module in found if name in shapes]
    stages = [getattr(module, "stage", None) for _, module in used]
    if None in stages:  # by resolution: the largest feature maps are stage 1
        sizes = sorted({math.prod(shapes[n][1:]) for n, _ in used}, reverse=True)
        stages = [sizes.index(math.prod(shapes[n][1:])) + 1 for n, _ in used]
    return [
        AttentionBlock(name, module, stage, shapes[name])
        for (name, module), stage in zip(used, stages, strict=True)
    ]


def gate_source(module: nn.Module) -> str | None:
    """Where a block's gate is read: ``"excitation"`` (a method returning the (N, C, 1, 1) or
    (N, C) gate, preferred), ``"gate"`` (the output of a ``gate`` sub-module), or None."""
    if callable(getattr(type(module), "excitation", None)):
        return "excitation"
    if isinstance(getattr(module, "gate", None), nn.Module):
        return "gate"
    return None


def _per_channel(gate: torch.Tensor) -> torch.Tensor:
    gate = gate.detach().float()
    return gate.flatten(2).mean(2) if gate.ndim > 2 else gate.reshape(gate.shape[0], -1)


class GateHooks:
    """Context manager: ``fn(block, gate)`` with each block's (N, C) gate on every forward pass.

    A block's ``excitation`` method is wrapped on the instance (its class is untouched and the
    wrapper is removed on exit), else a forward hook goes on its ``gate`` sub-module. Blocks with
    neither are skipped (``skipped`` lists them).
    """

    def __init__(
        self,
        blocks: Sequence[AttentionBlock],
        fn: Callable[[AttentionBlock, torch.Tensor], None],
    ) -> None:
        self.blocks = list(blocks)
        self.fn = fn
        self.skipped: list[str] = []
        self._undo: list[Callable[[], None]] = []

    def __enter__(self) -> GateHooks:
        for block in self.blocks:
            source = gate_source(block.module)
            if source == "excitation":
                self._wrap_excitation(block)
            elif source == "gate":
                handle = block.module.gate.register_forward_hook(
                    lambda m, args, out, block=block: self.fn(block, _per_channel(out))
                )
                self._undo.append(handle.remove)
            else:
                self.skipped.append(block.name)
        return self

    def _wrap_excitation(self, block: AttentionBlock) -> None:
        module = block.module
        original = module.excitation

        def excitation(*args, **kwargs):
            gate = original(*args, **kwargs)
            self.fn(block, _per_channel(gate))
            return gate

        module.excitation = excitation  # an instance attribute shadows the class's method
        self._undo.append(lambda: module.__dict__.pop("excitation", None))

    def __exit__(self, *exc) -> None:
        while self._undo:
            self._undo.pop()()


class GateStats:
    """Running sums of attention gates over a data set.

    Per block: the mean gate per channel, the mean per channel for each class (for
    ``class_blocks``, all blocks when None) and, with ``bins > 0``, a histogram of every gate value
    over ``value_range`` (values outside are counted in the end bins).
    """

    def __init__(
        self,
        blocks: Sequence[AttentionBlock],
        num_classes: int,
        class_names: Sequence[str] | None = None,
        class_blocks: Iterable[str] | None = None,
        bins: int = 0,
        value_range: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        self.blocks = list(blocks)
        self.num_classes = num_classes
        self.class_names = list(class_names or [str(i) for i in range(num_classes)])
        self.class_blocks = set(class_blocks) if class_blocks is not None else None
        self.bins = bins
        self.value_range = value_range
        self._targets: torch.Tensor | None = None
        self._batch_counts: torch.Tensor | None = None
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, float] = {}  # images per block, kept on the host
        self.class_sums: dict[str, torch.Tensor] = {}
        self.class_counts: dict[str, torch.Tensor] = {}
        self.histograms: dict[str, torch.Tensor] = {}

    @property
    def targets(self) -> torch.Tensor | None:
        """The labels of the batch going through the model (None: no per-class statistics)."""
        return self._targets

    @targets.setter
    def targets(self, targets: torch.Tensor | None) -> None:
        self._targets, self._batch_counts = targets, None

    def _class_counts(self, device: torch.device) -> torch.Tensor:
        """Images per class in this batch, computed once for all blocks (no device sync)."""
        if self._batch_counts is None or self._batch_counts.device != device:
            targets = self._targets.to(device)
            counts = torch.zeros(self.num_classes, device=device)
            self._batch_counts = counts.index_add_(
                0, targets, torch.ones(len(targets), device=device)
            )
        return self._batch_counts

    def wants_classes(self, name: str) -> bool:
        return self.class_blocks is None or name in self.class_blocks

    def update(self, block: AttentionBlock, gate: torch.Tensor) -> None:
        """Add a (N, C) gate; ``self.targets`` (N,) labels it by class when set."""
        name, device = block.name, gate.device
        gate = gate.float()
        if name not in self.sums:  # float32 sums: exact enough for means of values in [0, 1]
            self.sums[name] = torch.zeros(gate.shape[1], device=device)
            self.counts[name] = 0.0
        self.sums[name] += gate.sum(0)
        self.counts[name] += gate.shape[0]
        targets = self._targets
        if targets is not None and len(targets) == len(gate) and self.wants_classes(name):
            if name not in self.class_sums:
                self.class_sums[name] = torch.zeros(self.num_classes, gate.shape[1], device=device)
                self.class_counts[name] = torch.zeros(self.num_classes, device=device)
            self.class_sums[name].index_add_(0, targets.to(device), gate)
            self.class_counts[name] += self._class_counts(device)
        if self.bins:
            low, high = self.value_range
            values = gate.clamp(low, high)
            hist = torch.histc(values, bins=self.bins, min=low, max=high)
            self.histograms[name] = self.histograms.get(name, 0) + hist.double()

    def reduce(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Combine the sums of all processes, e.g. with ``trainer.strategy.reduce(x, "sum")``."""
        for name in sorted(self.counts):
            device = self.sums[name].device
            count = torch.tensor(self.counts[name], device=device)
            self.counts[name] = float(fn(count))
        for store in (self.sums, self.class_sums, self.class_counts, self.histograms):
            for name in sorted(store):
                store[name] = fn(store[name])

    @property
    def names(self) -> list[str]:
        return [b.name for b in self.blocks if b.name in self.sums]

    def block(self, name: str) -> AttentionBlock:
        return next(b for b in self.blocks if b.name == name or b.short_name == name)

    def mean(self, name: str) -> torch.Tensor:
        """(C,) mean gate per channel of block ``name`` over every image seen."""
        name = self.block(name).name
        return (self.sums[name] / max(self.counts[name], 1.0)).float().cpu()

    def class_mean(self, name: str) -> torch.Tensor:
        """(K, C) mean gate per channel for each class (NaN rows for classes never seen)."""
        name = self.block(name).name
        counts = self.class_counts[name][:, None]
        means = self.class_sums[name] / counts.clamp(min=1)
        return means.masked_fill(counts == 0, float("nan")).float().cpu()

    def histogram(self, name: str) -> torch.Tensor:
        return self.histograms[self.block(name).name].float().cpu()

    def stages(self) -> dict[int, list[AttentionBlock]]:
        grouped: dict[int, list[AttentionBlock]] = {}
        for block in self.blocks:
            if block.name in self.sums:
                grouped.setdefault(block.stage, []).append(block)
        return dict(sorted(grouped.items()))

    def stage_summary(self):
        """Per stage: blocks, channels, and the spread of the per-channel mean gates (a DataFrame)."""
        import pandas as pd

        rows = []
        for stage, blocks in self.stages().items():
            means = torch.cat([self.mean(b.name) for b in blocks])
            rows.append(
                {
                    "stage": stage,
                    "blocks": len(blocks),
                    "channels": int(means.numel()),
                    "mean gate": float(means.mean()),
                    "std": float(means.std()) if means.numel() > 1 else 0.0,
                    "min": float(means.min()),
                    "max": float(means.max()),
                }
            )
        columns = ["stage", "blocks", "channels", "mean gate", "std", "min", "max"]
        return pd.DataFrame(rows, columns=columns)


def default_class_blocks(blocks: Sequence[AttentionBlock]) -> list[str]:
    """A few blocks for per-class profiles: the last block of each stage (SE paper, Fig. 6)."""
    last: dict[int, str] = {}
    for block in blocks:
        last[block.stage] = block.name
    return [last[stage] for stage in sorted(last)]


@contextmanager
def without_attention(model: nn.Module, names: Iterable[str] | None = None) -> Iterator[nn.Module]:
    """Replace attention modules (all, or those at the paths ``names``) by ``nn.Identity``.

    The original modules are put back on exit, even after an error; the weights are not copied.
    """
    names = [n for n, _ in find_attention(model)] if names is None else list(names)
    replaced: list[tuple[nn.Module, str, nn.Module]] = []
    try:
        for name in names:
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name)
            original = getattr(parent, child)
            setattr(parent, child, nn.Identity())
            replaced.append((parent, child, original))
        yield model
    finally:
        for parent, child, original in reversed(replaced):
            setattr(parent, child, original)
