"""Runs under ``logs/`` side by side: metrics (from :mod:`selab.runs`) and the HParams the
Dashboard logged to TensorBoard."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import runs as run_folders

HPARAMS_TAG = "_hparams_/session_start_info"
# The hyper-parameters selab's Dashboard logs to the HParams tab, in display order.
HPARAMS = ("backbone", "attention", "reduction", "optimizer", "lr", "batch_size", "epochs", "dataset", "params", "macs")  # fmt: skip


def _empty_metrics():
    import pandas as pd

    return pd.DataFrame(columns=["epoch", "step"])


@dataclass
class Run:
    """One run folder: its metrics (a DataFrame, see :func:`selab.runs.read_metrics`), the
    HParams logged to TensorBoard and the training seconds recorded in ``status.json``."""

    path: Path
    name: str
    metrics: Any = field(default_factory=_empty_metrics)
    hparams: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None

    def series(self, tag: str):
        """``tag``'s logged values indexed by step."""
        if tag not in self.metrics:
            import pandas as pd

            return pd.Series(dtype=float, name=tag)
        rows = self.metrics.loc[self.metrics[tag].notna(), ["step", tag]]
        return rows.set_index("step")[tag]

    def values(self, tag: str) -> list[float]:
        return self.series(tag).tolist()

    def last(self, tag: str) -> float | None:
        return run_folders.final_value(self.metrics, tag)

    def best(self, tag: str, mode: str = "max") -> float | None:
        """The best per-epoch value; a resumed epoch counts with the value logged last."""
        values = run_folders.epoch_values(self.metrics, tag)
        if values.empty:
            values = self.series(tag)
        if values.empty:
            return None
        return float(values.max() if mode == "max" else values.min())

    @property
    def wall_time(self) -> float | None:
        """Seconds of training: ``status.json``'s fit seconds, else the last
        ``time/fit_elapsed_s`` logged."""
        return self.seconds if self.seconds is not None else self.last("time/fit_elapsed_s")


def find_runs(root: str | Path = "logs", pattern: str = "**") -> list[Path]:
    """Run folders under ``root`` matching ``pattern`` (see :func:`selab.runs.find_runs`)."""
    return run_folders.find_runs(root, pattern)


def _hparam_value(value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        number = value.number_value
        return int(number) if number.is_integer() else number
    return getattr(value, kind) if kind else None


def read_hparams(path: str | Path) -> dict[str, Any]:
    """The HParams session a run logged to TensorBoard (TensorBoard's own reader), {} if none."""
    if not any(Path(path).glob(run_folders.EVENTS_GLOB)):
        return {}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    guidance = {"scalars": 1, "histograms": 1, "images": 1, "tensors": 1, "audio": 1}
    events = EventAccumulator(str(path), size_guidance=guidance)
    events.Reload()
    try:
        raw = events.PluginTagToContent("hparams").get(HPARAMS_TAG)
    except KeyError:  # no HParams in this run
        raw = None
    if not raw:
        return {}
    info = plugin_data_pb2.HParamsPluginData.FromString(raw).session_start_info
    order = {key: i for i, key in enumerate(HPARAMS)}
    keys = sorted(info.hparams, key=lambda k: (order.get(k, len(order)), k))
    return {key: _hparam_value(info.hparams[key]) for key in keys}


def read_run(path: str | Path, root: str | Path | None = None) -> Run:
    """Metrics, HParams and training time of a run folder."""
    path = Path(path)
    name = str(path.relative_to(root)) if root is not None else str(path)
    seconds = (run_folders.read_status(path).get("fit") or {}).get("seconds")
    return Run(
        path=path,
        name=name,
        metrics=run_folders.read_metrics(path),
        hparams=read_hparams(path),
        seconds=seconds,
    )


def read_runs(root: str | Path = "logs", pattern: str = "**") -> list[Run]:
    return [read_run(path, root) for path in find_runs(root, pattern)]


def results_table(runs: Sequence[Run]):
    """Best val top-1, test top-1/top-5, parameters, MACs and wall time, one row per run, as a
    DataFrame."""
    import pandas as pd

    rows = []
    for run in runs:
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
                "wall time": run_folders.duration_text(run.wall_time),
            }
        )
    table = pd.DataFrame(rows)
    for column in ("params", "MACs"):
        if column in table:
            table[column] = table[column].astype("Int64")
    return table


def hparams_table(runs: Sequence[Run]):
    """The HParams of each run, one row per run, as a DataFrame."""
    import pandas as pd

    return pd.DataFrame([{"run": run.name, **run.hparams} for run in runs])
