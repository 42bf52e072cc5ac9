"""What a run logged: its config, and its metrics from ``metrics.csv`` or TensorBoard's events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .layout import CONFIG, EVENTS_GLOB, METRICS


def read_config(run: str | Path) -> dict[str, Any]:
    """The run's ``config.yaml`` as a dict ({} when there is none)."""
    import yaml

    path = Path(run, CONFIG)
    if not path.is_file():
        return {}
    with open(path) as file:
        return yaml.safe_load(file) or {}


def read_metrics(run: str | Path):
    """Every metric the run logged as a pandas DataFrame, one row per logging call.

    From ``metrics.csv`` (columns ``epoch``, ``step`` and one per metric; a row holds the metrics
    of one ``log_metrics`` call, the others empty); for a run logged by TensorBoard alone, from its
    event files in the same shape (one row per step). Empty when nothing was logged.
    """
    import pandas as pd

    path = Path(run, METRICS)
    if path.is_file() and path.stat().st_size > 0:
        return pd.read_csv(path)
    if any(Path(run).glob(EVENTS_GLOB)):
        return _read_tensorboard_scalars(run)
    return pd.DataFrame(columns=["epoch", "step"])


def _read_tensorboard_scalars(run: str | Path):
    import pandas as pd
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    guidance = {"scalars": 0, "histograms": 1, "images": 1, "tensors": 1, "audio": 1}
    events = EventAccumulator(str(run), size_guidance=guidance)
    events.Reload()
    records = [
        {"step": event.step, "tag": tag, "value": event.value}
        for tag in events.Tags()["scalars"]
        for event in events.Scalars(tag)
    ]
    if not records:
        return pd.DataFrame(columns=["epoch", "step"])
    long = pd.DataFrame.from_records(records)
    wide = long.pivot_table(index="step", columns="tag", values="value", aggfunc="last")
    wide = wide.reset_index()
    wide.columns.name = None
    if "epoch" not in wide:
        wide.insert(0, "epoch", float("nan"))
    return wide


def epoch_values(metrics, name: str):
    """A per-epoch metric (e.g. ``val/acc_top1``) as a Series indexed by epoch; when an epoch has
    several values (a resumed epoch), the last one logged."""
    import pandas as pd

    if name not in metrics or "epoch" not in metrics:
        return pd.Series(dtype=float, name=name)
    rows = metrics.loc[metrics[name].notna(), ["epoch", name]].dropna(subset=["epoch"])
    series = rows.groupby(rows["epoch"].astype(int))[name].last()
    series.index.name = "epoch"
    return series


def final_value(metrics, name: str) -> float | None:
    """The last value logged for ``name``, or None."""
    if name not in metrics:
        return None
    values = metrics[name].dropna()
    return float(values.iloc[-1]) if len(values) else None


def has_test_results(run: str | Path, metrics=None) -> bool:
    """Whether ``lightning test`` logged into this run (any ``test/`` metric)."""
    metrics = read_metrics(run) if metrics is None else metrics
    return any(str(c).startswith("test/") and metrics[c].notna().any() for c in metrics.columns)


def epochs_done(metrics) -> int:
    """Training epochs with a validation result (0 before the first validation)."""
    val = [c for c in metrics.columns if str(c).startswith("val/")]
    if not val or "epoch" not in metrics:
        return 0
    epochs = metrics.loc[metrics[val].notna().any(axis=1), "epoch"].dropna()
    return int(epochs.max()) + 1 if len(epochs) else 0


def diverged(run: str | Path) -> bool:
    """Whether a loss logged in ``metrics.csv`` was NaN or infinite (pandas reads an empty cell
    and ``nan`` alike, so the file's text is read)."""
    import csv

    path = Path(run, METRICS)
    if not path.is_file():
        return False
    with open(path, newline="", encoding="utf-8") as file:
        for row in csv.DictReader(file):
            for key, value in row.items():
                if key and key.endswith("loss") and value.strip().lower() in ("nan", "inf", "-inf"):
                    return True
    return False
