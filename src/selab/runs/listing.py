"""``selab runs``: one row per run folder (status, config, seed, epochs, metrics, wall time and,
while it runs, the time it still needs)."""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

from ..tables import to_markdown
from .layout import find_runs
from .metrics import epoch_values, epochs_done, final_value, read_config, read_metrics
from .status import read_status, run_state

# Config folders of presets (debug, logger, ...): they change how a run is done, not what is
# trained, and are not part of its name.
PRESET_FOLDERS = ("debug", "logger", "presets")


def _config_names(argv: list[str]) -> list[str]:
    paths = []
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            paths.append(Path(argv[i + 1]))
        elif arg.startswith("--config="):
            paths.append(Path(arg.split("=", 1)[1]))
    return [path.stem for path in paths if path.parent.name not in PRESET_FOLDERS]


def json_record(row: dict) -> dict:
    """A :func:`describe` row for scripts: keys as identifiers (``best_val_acc_top1``), floats
    rounded to 6 decimals (metrics are float32: 0.15, not 0.150000006), NaN as null."""
    record = {}
    for key, value in row.items():
        if hasattr(value, "item") and not isinstance(value, str):  # numpy scalars
            value = value.item()
        if isinstance(value, float):
            value = None if math.isnan(value) else round(value, 6)
        record[re.sub(r"[^0-9A-Za-z]+", "_", key).strip("_")] = value
    return record


def duration_text(seconds: float | None) -> str | None:
    """Seconds as ``h:mm:ss``; None for a missing value."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return None
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def describe(run: str | Path, root: str | Path | None = None, metric: str = "val/acc_top1") -> dict:
    """One row of ``selab runs``: status, config, seed, epochs, best and final ``metric``, test
    top-1 and training wall time of a run folder."""
    run = Path(run)
    metrics = read_metrics(run)
    status = read_status(run)
    config = read_config(run)
    fit = status.get("fit") or {}
    configs = _config_names(fit.get("argv") or [])
    if not configs:
        logger = (config.get("trainer") or {}).get("logger")
        logger = logger[0] if isinstance(logger, list) and logger else logger
        name = (
            ((logger or {}).get("init_args") or {}).get("name")
            if isinstance(logger, dict)
            else None
        )
        configs = [str(name)] if name else []
    values = epoch_values(metrics, metric)
    if values.empty:
        values = metrics[metric].dropna() if metric in metrics else values
    lower_is_better = "loss" in metric or "error" in metric
    best = (values.min() if lower_is_better else values.max()) if len(values) else None
    state = run_state(run, metrics)
    return {
        "run": str(run.relative_to(root)) if root is not None and run != Path(root) else str(run),
        "status": state,
        "config": "+".join(configs) or None,
        "seed": config.get("seed_everything"),
        "epochs": epochs_done(metrics),
        f"best {metric}": None if best is None else float(best),
        f"final {metric}": None if values.empty else float(values.iloc[-1]),
        "test/acc_top1": final_value(metrics, "test/acc_top1"),
        "wall time": duration_text(fit.get("seconds")),
        "time left": duration_text(time_left(fit, config)) if state == "running" else None,
    }


def time_left(fit: dict, config: dict) -> float | None:
    """Seconds a running fit still needs at its mean epoch time so far (the epochs and seconds
    its status recorded together, resumed sessions included), up to ``trainer.max_epochs``."""
    max_epochs = fit.get("max_epochs") or (config.get("trainer") or {}).get("max_epochs")
    epochs, seconds = fit.get("epochs"), fit.get("seconds")
    if not (isinstance(max_epochs, int) and epochs and seconds) or max_epochs <= epochs:
        return None
    return seconds / epochs * (max_epochs - epochs)


def runs_table(root: str | Path = "logs", pattern: str = "**", metric: str = "val/acc_top1"):
    """:func:`describe` for every run under ``root`` as a pandas DataFrame."""
    import pandas as pd

    rows = [describe(run, root, metric) for run in find_runs(root, pattern)]
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    """``selab runs [logs/] [--json]``."""
    parser = argparse.ArgumentParser(
        prog="selab runs",
        description="List run folders (logs/<name>/version_N and study cells) with their status.",
    )
    parser.add_argument("root", nargs="?", default="logs", help="folder to search (default: logs)")
    parser.add_argument(
        "--pattern", default="**", help="glob under root, e.g. 'cifar10/*/version_*'"
    )
    parser.add_argument("--metric", default="val/acc_top1", help="metric for best/final columns")
    parser.add_argument("--json", action="store_true", help="one JSON object per run, for scripts")
    args = parser.parse_args(argv)
    if not Path(args.root).is_dir():
        print(
            f"error: {args.root} is not a folder; pass the folder holding your runs",
            file=sys.stderr,
        )
        return 2
    table = runs_table(args.root, args.pattern, args.metric)
    if args.json:  # JSON Lines
        for row in table.to_dict(orient="records"):
            print(json.dumps(json_record(row)))
    elif table.empty:
        print(f"no runs under {args.root}")
    else:
        # accuracies in percent, as `selab study report` shows them
        percent = {column: "{:.2%}" for column in table.columns if "acc" in column}
        print(to_markdown(table, percent))
    return 0
