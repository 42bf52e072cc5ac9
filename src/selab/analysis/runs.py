"""Runs under ``logs/``: hyper-parameters and metrics read back from TensorBoard event files."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .tables import Table

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
