"""Dissect checkpoints and compare runs: the logic behind ``notebooks/`` and the TensorBoard callbacks.

Everything here is plain functions over a model, a data loader or a ``logs/`` folder, so the
notebooks stay short calls plus plots and the numbers are tested like any other code.

- Checkpoints: :func:`resolve_checkpoint`, :func:`load_checkpoint`, :func:`datamodule_for`.
- Evaluation: :func:`evaluate` (top-1/top-5, per-class accuracy, confusion matrix, most-confused
  pairs and their images), optionally collecting attention gates on the same pass.
- Attention: :func:`attention_blocks` finds the channel-attention modules of any backbone,
  :class:`GateHooks` reads their gates, :class:`GateStats` accumulates them (per channel, per
  class, histogram), :func:`without_attention` swaps blocks for ``nn.Identity`` (the SE paper's
  ablation, on the fly), :func:`stage_ablation` measures what that costs.
- Cost: :func:`count_macs` (``torch.utils.flop_counter``; MACs = FLOPs / 2), :func:`complexity`
  (with vs without attention), :func:`module_table`.
- Runs: :func:`find_runs`, :func:`read_run`, :func:`results_table`, :func:`plot_learning_curves`.

Plots use matplotlib, imported only when a ``plot_*`` function is called.
"""

from __future__ import annotations

import inspect
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from . import models as _models  # noqa: F401  (importing registers every attention variant)
from .models.layers.create_attn import _ATTENTION

# -- tables ------------------------------------------------------------------------------------


class Table:
    """Rows of a small results table; prints as Markdown and renders as a table in notebooks."""

    def __init__(
        self, rows: Iterable[dict[str, Any]], formats: dict[str, str] | None = None
    ) -> None:
        self.rows = [dict(row) for row in rows]
        self.formats = dict(formats or {})
        self.columns: list[str] = []
        for row in self.rows:
            self.columns += [key for key in row if key not in self.columns]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.rows[index]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def column(self, name: str) -> list[Any]:
        return [row.get(name) for row in self.rows]

    def _cell(self, column: str, value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        if column in self.formats:
            return self.formats[column].format(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return str(value)
        if isinstance(value, int):
            return f"{value:,}"
        return f"{value:.4f}"

    def to_markdown(self) -> str:
        lines = ["| " + " | ".join(self.columns) + " |", "|" + " --- |" * len(self.columns)]
        for row in self.rows:
            cells = [self._cell(c, row.get(c)).replace("|", "\\|") for c in self.columns]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    __str__ = to_markdown

    def __repr__(self) -> str:
        return self.to_markdown()

    def _repr_markdown_(self) -> str:
        return self.to_markdown()


# -- checkpoints and data ----------------------------------------------------------------------


def resolve_checkpoint(path: str | Path) -> Path:
    """A ``.ckpt`` file, or for a run folder (``logs/<experiment>/version_N``) its best checkpoint.

    The best is the one ModelCheckpoint recorded in ``last.ckpt``; failing that ``last.ckpt``,
    failing that the newest ``.ckpt`` of the run.
    """
    path = Path(path)
    if path.is_file():
        return path
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    if not folder.is_dir():
        raise FileNotFoundError(f"{path} is neither a checkpoint file nor a run folder")
    last = folder / "last.ckpt"
    if last.is_file():
        state = torch.load(last, map_location="cpu", weights_only=False)
        for key, value in state.get("callbacks", {}).items():
            best = value.get("best_model_path") if key.startswith("ModelCheckpoint") else None
            if best and (folder / Path(best).name).is_file():
                return folder / Path(best).name
        return last
    found = sorted(folder.glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"no .ckpt file in {folder}")
    return found[-1]


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu"):
    """``Classifier.load_from_checkpoint`` for a checkpoint or run folder, in eval mode."""
    from .classifier import Classifier

    return Classifier.load_from_checkpoint(
        resolve_checkpoint(path), map_location=map_location
    ).eval()


def datamodule_for(checkpoint: str | Path, **overrides):
    """The run's ``VisionDataModule``, rebuilt from the hyper-parameters saved in its checkpoint.

    ``overrides`` replace saved arguments, e.g. ``root=`` for data that moved, ``num_workers=``,
    ``batch_size=``. Downloads are off unless ``download=True`` is passed. The module is set up.
    """
    from .data import VisionDataModule

    state = torch.load(resolve_checkpoint(checkpoint), map_location="cpu", weights_only=False)
    accepted = inspect.signature(VisionDataModule.__init__).parameters
    saved = {
        k: v for k, v in (state.get("datamodule_hyper_parameters") or {}).items() if k in accepted
    }  # LightningCLI adds entries of its own (``_instantiator``)
    if not saved:
        raise ValueError(f"{checkpoint} holds no datamodule hyper-parameters; build one yourself")
    args = {**saved, "download": False, **{k: v for k, v in overrides.items() if v is not None}}
    datamodule = VisionDataModule(**args)
    datamodule.setup("test")
    return datamodule


def pick_device(device: str | torch.device | None = "auto") -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def example_input(dataset_or_loader, n: int = 1) -> torch.Tensor:
    """``n`` images from a dataset or a data loader, as a batch."""
    if isinstance(dataset_or_loader, torch.utils.data.DataLoader):
        batch = next(iter(dataset_or_loader))
        images = batch[0] if isinstance(batch, (list, tuple)) else batch
        return images[:n]
    return torch.stack([dataset_or_loader[i][0] for i in range(n)])


# -- attention blocks and their gates ----------------------------------------------------------

_STAGE_PATTERNS = (
    (re.compile(r"(?:^|\.)stages\.(\d+)(?:\.|$)"), 1),  # selab's CIFAR nets: stages.0 is stage 1
    (re.compile(r"(?:^|\.)layer(\d+)(?:\.|$)"), 0),  # torchvision-style ResNets: layer1 is stage 1
)


@dataclass
class AttentionBlock:
    """One channel-attention module of a network.

    ``stage`` is 1-based: from the module path (``stages.<i>`` counts from 0, ``layer<i>`` from 1)
    where it has one, else by spatial size (blocks seeing the same H x W form a stage, the largest
    maps are stage 1). ``shape`` is the (C, H, W) of the feature map the block sees.
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
    return tuple(_ATTENTION.values())


def attention_name(module: nn.Module) -> str:
    """The registry name of an attention module's class (the most specific one)."""
    for name, cls in _ATTENTION.items():
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


def _stage_from_name(name: str) -> int | None:
    for pattern, offset in _STAGE_PATTERNS:
        matches = pattern.findall(name)
        if matches:
            return int(matches[-1]) + offset
    return None


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
    stages = [_stage_from_name(name) for name, _ in used]
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

    def stage_summary(self) -> Table:
        """Per stage: blocks, channels, and the spread of the per-channel mean gates."""
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
        return Table(rows)


def default_class_blocks(blocks: Sequence[AttentionBlock]) -> list[str]:
    """A few blocks for per-class profiles: the last block of each stage (SE paper, Fig. 6)."""
    last: dict[int, str] = {}
    for block in blocks:
        last[block.stage] = block.name
    return [last[stage] for stage in sorted(last)]


# -- ablation: attention replaced by identity --------------------------------------------------


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


# -- evaluation --------------------------------------------------------------------------------


@dataclass
class Evaluation:
    """Predictions of a classifier on a labelled split, and what follows from them."""

    probs: torch.Tensor  # (N, K) softmax
    targets: torch.Tensor  # (N,)
    class_names: list[str]
    gates: GateStats | None = None
    seconds: float = 0.0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def predictions(self) -> torch.Tensor:
        return self.probs.argmax(1)

    def topk(self, k: int) -> float:
        k = min(k, self.num_classes)
        hits = (self.probs.topk(k, dim=1).indices == self.targets[:, None]).any(1)
        return float(hits.double().mean())

    @property
    def top1(self) -> float:
        return self.topk(1)

    @property
    def top5(self) -> float:
        return self.topk(5)

    @property
    def confusion(self) -> torch.Tensor:
        """(K, K) counts: row = true class, column = predicted class."""
        k = self.num_classes
        flat = self.targets * k + self.predictions
        return torch.bincount(flat, minlength=k * k).view(k, k)

    @property
    def per_class(self) -> dict[str, float]:
        confusion = self.confusion.double()
        totals = confusion.sum(1)
        accuracy = confusion.diagonal() / totals.clamp(min=1)
        return {
            name: float(acc) if total else math.nan
            for name, acc, total in zip(self.class_names, accuracy, totals, strict=True)
        }

    def per_class_table(self) -> Table:
        counts = self.confusion.sum(1).tolist()
        return Table(
            {"class": name, "images": n, "accuracy": acc}
            for (name, acc), n in zip(self.per_class.items(), counts, strict=True)
        )

    def summary(self) -> Table:
        return Table(
            [{"images": len(self.targets), "top-1": self.top1, "top-5": self.top5}],
        )

    def most_confused(self, k: int = 5) -> list[tuple[str, str, int]]:
        """The ``k`` largest off-diagonal confusion counts as (true, predicted, count)."""
        return most_confused(self.confusion, self.class_names, k)

    def examples(self, true: str | int, predicted: str | int, n: int = 4) -> list[int]:
        """Indices of up to ``n`` images of class ``true`` predicted as ``predicted``, the most
        confident mistakes first."""
        t, p = (self.class_names.index(c) if isinstance(c, str) else c for c in (true, predicted))
        mask = (self.targets == t) & (self.predictions == p)
        indices = mask.nonzero().flatten()
        order = self.probs[indices, p].argsort(descending=True)
        return indices[order][:n].tolist()


def most_confused(
    confusion: torch.Tensor, class_names: Sequence[str], k: int = 5
) -> list[tuple[str, str, int]]:
    """The ``k`` largest off-diagonal entries of a (true x predicted) confusion matrix, largest
    first (ties: the order of the classes); zero counts are left out."""
    confusion = torch.as_tensor(confusion).clone()
    confusion.fill_diagonal_(0)
    n = confusion.shape[1]
    flat = confusion.flatten()
    order = sorted(range(flat.numel()), key=lambda i: (-int(flat[i]), i))
    pairs = []
    for index in order[:k]:
        count = int(flat[index])
        if count == 0:
            break
        pairs.append((class_names[index // n], class_names[index % n], count))
    return pairs


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    class_names: Sequence[str] | None = None,
    device: str | torch.device | None = "auto",
    gates: bool | GateStats = False,
) -> Evaluation:
    """Run ``model`` (eval mode) over a labelled loader.

    ``gates=True`` also collects attention gate statistics on the same pass (per-class profiles for
    every block and a 50-bin histogram over [0, 1]); pass a :class:`GateStats` to choose.
    """
    device = pick_device(device)
    class_names = list(class_names or getattr(model, "class_names", None) or [])
    training = model.training
    model.eval().to(device)
    probs, targets = [], []
    stats: GateStats | None = None
    hooks = None
    start = time.perf_counter()
    try:
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            if gates is not False and hooks is None:
                blocks = attention_blocks(model, images[:1])
                if isinstance(gates, GateStats):
                    stats = gates
                else:
                    n = len(class_names) or int(getattr(model, "num_classes", 0))
                    stats = GateStats(blocks, n, class_names, bins=50)
                hooks = GateHooks(stats.blocks, stats.update).__enter__()
            if stats is not None:
                stats.targets = labels
            probs.append(model(images).float().softmax(1).cpu())
            targets.append(labels.cpu())
    finally:
        if hooks is not None:
            hooks.__exit__(None, None, None)
        if stats is not None:
            stats.targets = None
        model.train(training)
    seconds = time.perf_counter() - start
    probs_t = torch.cat(probs)
    if not class_names:
        class_names = [str(i) for i in range(probs_t.shape[1])]
    return Evaluation(probs_t, torch.cat(targets), class_names, stats, seconds)


def stage_ablation(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    stages: Iterable[int] | str | None = None,
    device: str | torch.device | None = "auto",
) -> Table:
    """Accuracy with all attention, then with the attention of some stages replaced by identity.

    ``stages``: None for the last stage only (the SE paper's ablation), ``"all"`` for each stage in
    turn plus every stage at once, or a list of 1-based stages. Each row is a pass over ``loader``.
    """
    example = example_input(loader)
    blocks = attention_blocks(model, example)
    if not blocks:
        raise ValueError("the model has no attention blocks to remove")
    present = sorted({b.stage for b in blocks})
    if stages is None:
        variants = [[present[-1]]]
    elif stages == "all":
        variants = [[s] for s in present] + [present]
    else:
        variants = [[int(s)] for s in stages]  # type: ignore[union-attr]
    full = evaluate(model, loader, device=device)
    rows = [{"attention removed": "none", "blocks removed": 0, "top-1": full.top1, "top-5": full.top5, "Δ top-1": 0.0}]  # fmt: skip
    for removed in variants:
        names = [b.name for b in blocks if b.stage in removed]
        with without_attention(model, names):
            result = evaluate(model, loader, device=device)
        label = "all stages" if len(removed) > 1 else f"stage {removed[0]}"
        rows.append(
            {
                "attention removed": label,
                "blocks removed": len(names),
                "top-1": result.top1,
                "top-5": result.top5,
                "Δ top-1": result.top1 - full.top1,
            }
        )
    return Table(rows, formats={"Δ top-1": "{:+.4f}"})


# -- parameters and MACs -----------------------------------------------------------------------


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def _flop_counter(model: nn.Module, example: torch.Tensor) -> FlopCounterMode:
    training = model.training
    counter = FlopCounterMode(display=False)
    param = next(model.parameters(), None)
    example = example.to(param.device) if param is not None else example
    try:
        model.eval()
        with counter:
            model(example)
    finally:
        model.train(training)
    return counter


def count_macs(model: nn.Module, example: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass on ``example`` (pass one image for per-image).

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` (convolutions, matrix products,
    attention), which reports FLOPs = 2 x MACs; element-wise work (ReLU, pooling, the sigmoid
    and the channel rescaling of SE) is not counted, as in the papers' tables.
    """
    return _flop_counter(model, example).get_total_flops() // 2


def complexity(model: nn.Module, example: torch.Tensor, macs: int | None = None) -> Table:
    """Parameters and MACs per image with and without the attention blocks (``macs``: the
    model's count if already known, to save a pass)."""
    example = example[:1]
    params = count_params(model)
    macs = count_macs(model, example) if macs is None else macs
    attention_params = sum(count_params(m) for _, m in find_attention(model))
    with without_attention(model):
        base_macs = count_macs(model, example)
    rows = [
        {"model": "with attention", "params": params, "MACs": macs},
        {"model": "without attention", "params": params - attention_params, "MACs": base_macs},
        {
            "model": "attention share",
            "params": f"{attention_params / max(params, 1):.2%}",
            "MACs": f"{(macs - base_macs) / max(macs, 1):.2%}",
        },
    ]
    return Table(rows)


def module_table(model: nn.Module, example: torch.Tensor) -> Table:
    """Parameters and MACs per image of each top-level part of ``model``, attention summed apart.

    The part rows include their attention blocks; the attention row repeats that share.
    """
    example = example[:1]
    counter = _flop_counter(model, example)
    counts = counter.get_flop_counts()
    root = type(model).__name__

    def macs(path: str) -> int:
        return sum(counts.get(f"{root}.{path}", {}).values()) // 2

    rows = [
        {"module": name, "type": type(child).__name__, "params": count_params(child), "MACs": macs(name)}
        for name, child in model.named_children()
    ]  # fmt: skip
    attention = find_attention(model)
    if attention:
        rows.append(
            {
                "module": f"attention ({len(attention)} blocks)",
                "type": ", ".join(sorted({attention_name(m) for _, m in attention})),
                "params": sum(count_params(m) for _, m in attention),
                "MACs": sum(macs(name) for name, _ in attention),
            }
        )
    total = counter.get_total_flops() // 2
    rows.append({"module": "total", "type": root, "params": count_params(model), "MACs": total})
    return Table(rows)


# -- runs under logs/ --------------------------------------------------------------------------

HPARAMS_TAG = "_hparams_/session_start_info"
# The hyper-parameters selab's Dashboard logs to the HParams tab, in display order.
HPARAMS = ("backbone", "attention", "reduction", "optimizer", "lr", "batch_size", "epochs", "dataset", "params", "macs")  # fmt: skip


@dataclass
class Run:
    """One run folder's TensorBoard data: ``scalars[tag]`` = [(step, value, wall_time), ...]."""

    path: Path
    name: str
    scalars: dict[str, list[tuple[int, float, float]]] = field(default_factory=dict)
    hparams: dict[str, Any] = field(default_factory=dict)

    def values(self, tag: str) -> list[float]:
        return [value for _, value, _ in self.scalars.get(tag, [])]

    def last(self, tag: str) -> float | None:
        values = self.values(tag)
        return values[-1] if values else None

    def best(self, tag: str, mode: str = "max") -> float | None:
        values = self.values(tag)
        if not values:
            return None
        return max(values) if mode == "max" else min(values)

    @property
    def wall_time(self) -> float | None:
        """Seconds of training: the last ``time/fit_elapsed_s``, else the span of the train and
        validation events."""
        elapsed = self.last("time/fit_elapsed_s")
        if elapsed is not None:
            return elapsed
        times = [
            t
            for tag, events in self.scalars.items()
            if tag.startswith(("train/", "val/"))
            for _, _, t in events
        ]
        return max(times) - min(times) if times else None


def find_runs(root: str | Path = "logs", pattern: str = "**") -> list[Path]:
    """Run folders (holding TensorBoard event files) under ``root`` whose path matches ``pattern``
    (a glob relative to ``root``, e.g. ``cifar10/*/version_*``), sorted."""
    root = Path(root)
    folders = {p.parent for p in root.glob(f"{pattern}/events.out.tfevents.*")}
    if pattern != "**":
        folders |= {p.parent for p in root.glob(f"{pattern}/**/events.out.tfevents.*")}
    return sorted(folders, key=_natural_key)


def _natural_key(path: Path) -> list:
    """``version_10`` after ``version_9``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def _hparam_value(value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        number = value.number_value
        return int(number) if number.is_integer() else number
    return getattr(value, kind) if kind else None


def read_run(path: str | Path, root: str | Path | None = None) -> Run:
    """Scalars and HParams of a run folder, read with TensorBoard's own ``EventAccumulator``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    path = Path(path)
    guidance = {"scalars": 0, "histograms": 1, "images": 1, "tensors": 1, "audio": 1}
    events = EventAccumulator(str(path), size_guidance=guidance)
    events.Reload()
    name = str(path.relative_to(root)) if root is not None else str(path)
    run = Run(path=path, name=name)
    for tag in events.Tags()["scalars"]:
        run.scalars[tag] = [(e.step, e.value, e.wall_time) for e in events.Scalars(tag)]
    try:
        raw = events.PluginTagToContent("hparams").get(HPARAMS_TAG)
    except KeyError:  # no HParams in this run
        raw = None
    if raw:
        info = plugin_data_pb2.HParamsPluginData.FromString(raw).session_start_info
        order = {key: i for i, key in enumerate(HPARAMS)}
        keys = sorted(info.hparams, key=lambda k: (order.get(k, len(order)), k))
        run.hparams = {key: _hparam_value(info.hparams[key]) for key in keys}
    return run


def read_runs(root: str | Path = "logs", pattern: str = "**") -> list[Run]:
    return [read_run(path, root) for path in find_runs(root, pattern)]


def _format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def results_table(runs: Sequence[Run]) -> Table:
    """Best val top-1, test top-1/top-5, parameters, MACs and wall time, one row per run."""
    rows = []
    for run in runs:
        wall = run.wall_time
        rows.append(
            {
                "run": run.name,
                "backbone": run.hparams.get("backbone"),
                "attention": run.hparams.get("attention"),
                "best val top-1": run.best("val/acc_top1"),
                "test top-1": run.last("test/acc_top1"),
                "test top-5": run.last("test/acc_top5"),
                "params": run.hparams.get("params"),
                "MACs": run.hparams.get("macs"),
                "wall time": _format_seconds(wall) if wall is not None else None,
            }
        )
    return Table(rows)


# -- plots ---------------------------------------------------------------------------------------
# Figures are built with ``matplotlib.figure.Figure`` (no pyplot): no global state, no GUI backend,
# nothing to close. Jupyter shows a figure that ends a cell; TensorBoard takes it via add_figure.


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def plot_confusion(confusion: torch.Tensor, class_names: Sequence[str], normalize: bool = True):
    """Confusion matrix (rows true, columns predicted) with class names on both axes; colours are
    row-normalised when ``normalize``, cells show counts."""
    confusion = torch.as_tensor(confusion).cpu()
    k = len(class_names)
    colours = confusion.double()
    if normalize:
        colours = colours / colours.sum(1, keepdim=True).clamp(min=1)
    size = max(4.0, 0.45 * k + 2)
    fig = _figure(size + 1.2, size)
    ax = fig.subplots()
    image = ax.imshow(colours.numpy(), cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, label="fraction of the true class" if normalize else "images")
    ax.set_xticks(range(k), class_names, rotation=90 if k > 5 else 0)
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 30:
        threshold = float(colours.max()) / 2
        for i in range(k):
            for j in range(k):
                colour = "white" if colours[i, j] > threshold else "black"
                ax.text(
                    j, i, int(confusion[i, j]), ha="center", va="center", fontsize=7, color=colour
                )
    ax.set_title("confusion matrix")
    return fig


def plot_per_class(per_class: dict[str, float], title: str = "per-class accuracy"):
    names = list(per_class)
    values = [0.0 if math.isnan(v) else v for v in per_class.values()]
    fig = _figure(max(4.0, 0.4 * len(names) + 2), 3.5)
    ax = fig.subplots()
    ax.bar(range(len(names)), values, color="tab:blue")
    ax.set_xticks(range(len(names)), names, rotation=90 if len(names) > 5 else 0)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    return fig


def _unnormalize(image: torch.Tensor, mean, std) -> torch.Tensor:
    mean = torch.as_tensor(mean).view(-1, 1, 1)
    std = torch.as_tensor(std).view(-1, 1, 1)
    return (image.float().cpu() * std + mean).clamp(0, 1)


def plot_confused_examples(
    evaluation: Evaluation, dataset, mean, std, pairs: int = 3, per_pair: int = 4
):
    """For the most-confused (true, predicted) pairs, the most confident wrong images
    (``dataset[i][0]`` normalised with ``mean``/``std``, as the data module gives them)."""
    confused = evaluation.most_confused(pairs)
    if not confused:
        return None
    fig = _figure(1.8 * per_pair + 1.5, 2.0 * len(confused) + 0.4)
    axes = fig.subplots(len(confused), per_pair, squeeze=False)
    for row, (true, predicted, count) in enumerate(confused):
        indices = evaluation.examples(true, predicted, per_pair)
        p = evaluation.class_names.index(predicted)
        for col in range(per_pair):
            ax = axes[row][col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col < len(indices):
                image = _unnormalize(dataset[indices[col]][0], mean, std)
                ax.imshow(image.permute(1, 2, 0).numpy())
                ax.set_title(f"p={float(evaluation.probs[indices[col], p]):.2f}", fontsize=8)
            else:
                ax.set_axis_off()
        axes[row][0].set_ylabel(f"{true} → {predicted}\n({count})", fontsize=9)
    fig.suptitle("most-confused pairs, true → predicted (count): the most confident mistakes")
    return fig


def plot_gate_distributions(stats: GateStats):
    """Per stage (columns): the distribution of every gate value of each block (top, when
    ``stats`` has histograms) and box plots of the per-channel mean gates (bottom)."""
    stages = stats.stages()
    if not stages:
        return None
    rows = 2 if stats.bins else 1
    fig = _figure(4.2 * len(stages), 3.2 * rows)
    axes = fig.subplots(rows, len(stages), squeeze=False)
    for col, (stage, blocks) in enumerate(stages.items()):
        if stats.bins:
            ax = axes[0][col]
            low, high = stats.value_range
            edges = torch.linspace(low, high, stats.bins + 1)
            centres = ((edges[1:] + edges[:-1]) / 2).numpy()
            for block in blocks:
                hist = stats.histogram(block.name)
                ax.plot(centres, (hist / hist.sum().clamp(min=1)).numpy(), label=block.short_name)
            ax.set_xlabel("gate value (all images and channels)")
            ax.set_ylabel("fraction")
            ax.set_title(f"stage {stage}")
            ax.legend(fontsize=6)
        ax = axes[-1][col]
        ax.boxplot([stats.mean(b.name).numpy() for b in blocks])
        ax.set_xticks(
            range(1, len(blocks) + 1), [b.short_name for b in blocks], rotation=45, fontsize=7
        )
        ax.set_ylabel("mean gate per channel")
        if not stats.bins:
            ax.set_title(f"stage {stage}")
    return fig


def plot_class_gates(
    stats: GateStats,
    blocks: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
    max_classes: int = 10,
):
    """Mean gate per channel for each class, one panel per block, as in the SE paper's Fig. 6
    (black: the mean over all images). Blocks default to the last of each stage."""
    if blocks is None:
        blocks = [n for n in default_class_blocks(stats.blocks) if n in stats.class_sums]
    names = [stats.block(n).name for n in blocks]
    if not names:
        return None
    classes = list(classes) if classes is not None else stats.class_names[:max_classes]
    fig = _figure(3.6 * len(names) + 1.2, 3.2)
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, names, strict=True):
        block = stats.block(name)
        per_class = stats.class_mean(name)
        for cls in classes:
            ax.plot(per_class[stats.class_names.index(cls)].numpy(), lw=0.9, label=cls)
        ax.plot(stats.mean(name).numpy(), color="black", lw=1.6, label="all")
        ax.set_title(f"{block.short_name} (stage {block.stage})", fontsize=9)
        ax.set_xlabel("channel")
    axes[0].set_ylabel("mean gate")
    axes[-1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig


def plot_learning_curves(
    runs: Sequence[Run], tags: Sequence[str] = ("train/loss", "val/loss", "val/acc_top1")
):
    """One panel per tag, one line per run, against the global step."""
    fig = _figure(4.5 * len(tags), 3.8)
    axes = fig.subplots(1, len(tags), squeeze=False)[0]
    for ax, tag in zip(axes, tags, strict=True):
        for run in runs:
            events = run.scalars.get(tag, [])
            if events:
                marker = "." if len(events) < 20 else None
                ax.plot(
                    [e[0] for e in events], [e[1] for e in events], label=run.name, marker=marker
                )
        ax.set_title(tag)
        ax.set_xlabel("step")
    if any(ax.get_legend_handles_labels()[0] for ax in axes):
        axes[-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig
