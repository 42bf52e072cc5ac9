"""The run folder: where a run keeps its files, which runs exist, what state they are in.

This module is the one place that knows the layout. A run folder is ``logs/<name>/version_N/``
for a plain run and ``<study out>/<arm>/seed_<seed>/`` for a study cell; it holds

==============================  ==============================================================
``config.yaml``                 resolved config of the command that created the run (LightningCLI)
``config.<what>-<time>.yaml``   configs of later commands on the same run (resume, test, predict)
``metrics.csv``                 every logged metric (``selab.loggers.CSVLogger``)
``events.out.tfevents.*``       TensorBoard's copy of them (``TensorBoardLogger``)
``hparams.yaml``                the module's hyper-parameters, written with the first metrics
``checkpoints/``                ``last.ckpt`` and the best checkpoint(s)
``status.json``                 what each command did: state, pid, host, times (:class:`RunStatus`)
``run.log``                     stdout and stderr of a study cell's commands
``report.html``                 ``make report``: the checkpoint-analysis notebook, rendered
==============================  ==============================================================

``selab runs [logs/]`` lists run folders with their status and metrics (:func:`main`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import socket
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

CONFIG = "config.yaml"
METRICS = "metrics.csv"
STATUS = "status.json"
RUN_LOG = "run.log"
REPORT = "report.html"
HPARAMS = "hparams.yaml"
CHECKPOINTS = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
EVENTS_GLOB = "events.out.tfevents.*"
_MARKERS = (CONFIG, METRICS, STATUS)

# States of a run, as `selab runs` shows them.
RUNNING, FINISHED, FAILED, INTERRUPTED, UNKNOWN = (
    "running",
    "finished",
    "failed",
    "interrupted",
    "unknown",
)


# -- paths -------------------------------------------------------------------------------------


def version_folder(version: int | str) -> str:
    """``version_N`` for an integer version, the name itself for a string one (``seed_0``)."""
    return version if isinstance(version, str) else f"version_{version}"


def version_number(run: str | Path) -> int | None:
    """N of a ``version_N`` folder, else None."""
    match = re.fullmatch(r"version_(\d+)", Path(run).name)
    return int(match.group(1)) if match else None


def run_dir(save_dir: str | Path, name: str | None, version: int | str) -> Path:
    """The folder a logger with these arguments writes to (as TensorBoard and CSV loggers do)."""
    return Path(save_dir, name or "", version_folder(version))


def checkpoint_dir(run: str | Path) -> Path:
    return Path(run, CHECKPOINTS)


def last_checkpoint(run: str | Path) -> Path | None:
    """``<run>/checkpoints/last.ckpt`` if it exists."""
    path = checkpoint_dir(run) / LAST_CHECKPOINT
    return path if path.is_file() else None


def run_of_checkpoint(checkpoint: str | Path) -> Path | None:
    """The run folder of ``<run>/checkpoints/<file>.ckpt``, else None."""
    checkpoint = Path(checkpoint).resolve()
    if checkpoint.parent.name != CHECKPOINTS:
        return None
    return checkpoint.parent.parent


def next_version(save_dir: str | Path, name: str | None) -> int:
    """The version the next run of ``save_dir/name`` gets: one more than the largest existing."""
    root = Path(save_dir, name or "")
    numbers = (
        [version_number(p) for p in root.glob("version_*") if p.is_dir()] if root.is_dir() else []
    )
    numbers = [n for n in numbers if n is not None]
    return max(numbers) + 1 if numbers else 0


# Rank 0 passes the version it claimed to the processes it starts (DDP's subprocess launcher).
VERSION_ENV = "SELAB_RUN_VERSION"


def _rank() -> int:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) or 0)


def claim_version(save_dir: str | Path, name: str | None) -> int:
    """Create the next free ``version_N`` folder and return N. ``mkdir`` is atomic, so runs
    started at the same moment never share a folder; a claimed folder left empty by a command
    that failed before writing is removed by :func:`release_unused`.

    Only the global-zero process claims (the others write nothing and learn the run folder from
    it); the processes it launches inherit its claim through ``SELAB_RUN_VERSION``."""
    root = Path(save_dir, name or "")
    inherited = os.environ.get(VERSION_ENV)
    if inherited:
        path, number, claimer = json.loads(inherited)
        if Path(path) == root.resolve() and claimer != os.getpid():  # launched by the claimer
            return int(number)
    if _rank() != 0:
        return next_version(save_dir, name)
    missing = [p for p in (root, *root.parents) if not p.exists()]
    root.mkdir(parents=True, exist_ok=True)
    _claimed.extend(reversed(missing))  # removed again, innermost first, if left empty
    number = next_version(save_dir, name)
    while True:
        try:
            (root / version_folder(number)).mkdir()
        except FileExistsError:
            number += 1
            continue
        _claimed.append(root / version_folder(number))
        os.environ[VERSION_ENV] = json.dumps([str(root.resolve()), number, os.getpid()])
        return number


_claimed: list[Path] = []


def release_unused() -> None:
    """Remove the folders :func:`claim_version` created that are still empty."""
    while _claimed:
        folder = _claimed.pop()
        try:
            folder.rmdir()  # only succeeds when nothing was written
        except OSError:
            pass


def discard_claimed() -> None:
    """Remove the ``version_N`` folders :func:`claim_version` created, with what was written into
    them, unless they hold a checkpoint; for a command that failed before training."""
    for folder in list(_claimed):
        if version_number(folder) is None or not folder.is_dir():
            continue
        if not any(folder.glob(f"{CHECKPOINTS}/*.ckpt")):
            shutil.rmtree(folder, ignore_errors=True)
    release_unused()


def find_last_checkpoint(save_dir: str | Path, name: str | None) -> tuple[Path, int] | None:
    """The newest ``last.ckpt`` under ``save_dir/name/version_N/checkpoints`` and its N."""
    found = []
    for ckpt in Path(save_dir, name or "").glob(f"version_*/{CHECKPOINTS}/last*.ckpt"):
        number = version_number(ckpt.parent.parent)
        if number is not None:
            found.append((ckpt.stat().st_mtime, number, ckpt))
    if not found:
        return None
    _, number, ckpt = max(found)
    return ckpt, number


def extra_config_name(run: str | Path, what: str) -> str:
    """A new ``config.<what>-<time>[-n].yaml`` name in ``run`` for a later command's config."""
    stem = f"config.{what}-{time.strftime('%Y%m%d-%H%M%S')}"
    name, n = f"{stem}.yaml", 1
    while Path(run, name).exists():  # two commands within one second
        n += 1
        name = f"{stem}-{n}.yaml"
    return name


def has_logged(run: str | Path) -> bool:
    """Whether a logger already wrote into ``run`` (``hparams.yaml`` comes with the first metrics)."""
    return Path(run, HPARAMS).exists()


def pin_logger_versions(loggers: Iterable[Any]) -> None:
    """Make loggers writing to the same ``save_dir/name`` write to the same version folder.

    Each logger otherwise picks its own next ``version_N`` when it first writes, so a
    TensorBoardLogger that created ``version_0`` sends a CSVLogger beside it to ``version_1``, and
    two runs started together both pick ``version_0``. Loggers without a version get the one
    another logger of the group was given (a resumed run), else a version claimed atomically with
    :func:`claim_version`. ``loggers`` are parsed logger configs, changed in place.
    """
    groups: dict[tuple[str, str], list[Any]] = {}
    for logger in loggers:
        init_args = logger.get("init_args") if hasattr(logger, "get") else None
        class_path = str(logger.get("class_path", "")) if hasattr(logger, "get") else ""
        if init_args is None or "save_dir" not in init_args:
            continue
        if not class_path.endswith(("TensorBoardLogger", "CSVLogger")):
            continue  # loggers with their own idea of a version (W&B run ids, MLflow)
        key = (str(init_args.get("save_dir")), str(init_args.get("name") or ""))
        groups.setdefault(key, []).append(init_args)
    for (save_dir, name), members in groups.items():
        unset = [m for m in members if m.get("version") is None]
        if not unset:
            continue
        given = {m.get("version") for m in members} - {None}
        if len(given) > 1:
            continue  # versions chosen by hand; not ours to change
        version = given.pop() if given else claim_version(save_dir, name)
        for init_args in unset:
            init_args["version"] = version


CSV_LOGGER = "selab.loggers.CSVLogger"


def with_csv_twin(logger: Any) -> Any:
    """A parsed ``trainer.logger`` with a :data:`CSV_LOGGER` beside each TensorBoardLogger that has
    none writing to the same folder, so every run's metrics can be read back as a table.

    ``logger`` is one parsed logger config, a list of them, or True/False/None (returned as is).
    """
    from jsonargparse import Namespace

    if logger is None or isinstance(logger, bool):
        return logger
    entries = list(logger) if isinstance(logger, list) else [logger]

    def folder(entry) -> tuple[str, str] | None:
        init_args = entry.get("init_args") if hasattr(entry, "get") else None
        if init_args is None:
            return None
        return str(init_args.get("save_dir")), str(init_args.get("name") or "")

    has_csv = {folder(e) for e in entries if str(e.get("class_path", "")).endswith("CSVLogger")}
    twins = []
    for entry in entries:
        if not str(entry.get("class_path", "")).endswith("TensorBoardLogger"):
            continue
        if folder(entry) in has_csv or folder(entry) is None:
            continue
        init_args = entry.get("init_args")
        twin_args = {"save_dir": init_args.get("save_dir"), "name": init_args.get("name")}
        if init_args.get("version") is not None:
            twin_args["version"] = init_args.get("version")
        twins.append(Namespace(class_path=CSV_LOGGER, init_args=Namespace(**twin_args)))
    return entries + twins if twins else logger


def find_runs(root: str | Path = "logs", pattern: str = "**") -> list[Path]:
    """Run folders under ``root`` (``root`` itself if it is one) whose path relative to ``root``
    matches the glob ``pattern`` (e.g. ``cifar10/*/version_*``), in natural order."""
    root = Path(root)
    folders = set()
    for marker in (*_MARKERS, EVENTS_GLOB):
        folders |= {p.parent for p in root.glob(f"{pattern}/{marker}")}
        if pattern != "**":
            folders |= {p.parent for p in root.glob(f"{pattern}/**/{marker}")}
    folders = {f for f in folders if f.name != CHECKPOINTS}
    return sorted(folders, key=_natural_key)


def _natural_key(path: Path) -> list:
    """``version_10`` after ``version_9``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


# -- what a run wrote --------------------------------------------------------------------------


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


# -- status.json -------------------------------------------------------------------------------


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``: readers
    see the old file or the new one, never half of one."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
    return path


def read_status(run: str | Path) -> dict[str, Any]:
    """``status.json``: one record per command (``fit``, ``test``, ...) and ``last``, the command
    that wrote last. {} for a run without one (or an unreadable one)."""
    path = Path(run, STATUS)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def update_status(
    run: str | Path, command: str, replace: bool = False, **fields: Any
) -> dict[str, Any]:
    """Merge ``fields`` into the record of ``command`` in ``<run>/status.json`` (or ``replace``
    the record with them), atomically."""
    Path(run).mkdir(parents=True, exist_ok=True)
    status = read_status(run)
    if replace:
        status[command] = {}
    record = status.setdefault(command, {})
    record.update(fields)
    status["last"] = command
    atomic_write_text(Path(run, STATUS), json.dumps(status, indent=2, default=str) + "\n")
    return status


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def record_state(record: dict[str, Any]) -> str:
    """The state of one command's record: a ``running`` record whose process is gone from this
    host was interrupted (killed, or the machine stopped)."""
    state = record.get("state", UNKNOWN)
    if state != RUNNING:
        return state
    if record.get("host") == socket.gethostname() and not _pid_alive(int(record.get("pid", -1))):
        return INTERRUPTED
    return RUNNING  # alive here, or on another host where it cannot be checked


TRAINING_COMMANDS = ("fit", "test")


def run_state(run: str | Path, metrics=None) -> str:
    """running / finished / failed / interrupted, from ``status.json``.

    The state is that of the run's training and testing (``fit``, ``test``): a ``validate`` or
    ``predict`` that failed later on a finished run does not make the run failed. A run without one (written before it existed, or by a command that failed before training
    started) is ``finished`` when it has test results or reached ``trainer.max_epochs``, else
    ``unknown``.
    """
    status = read_status(run)
    commands = {k: v for k, v in status.items() if isinstance(v, dict)}
    if any(record_state(r) == RUNNING for r in commands.values()):
        return RUNNING
    last_name = status.get("last", "")
    if last_name not in TRAINING_COMMANDS:
        last_name = "test" if "test" in commands else "fit"
    last = commands.get(last_name)
    if last is not None:
        return record_state(last)
    metrics = read_metrics(run) if metrics is None else metrics
    if has_test_results(run, metrics):
        return FINISHED
    max_epochs = (read_config(run).get("trainer") or {}).get("max_epochs")
    if isinstance(max_epochs, int) and max_epochs > 0 and epochs_done(metrics) >= max_epochs:
        return FINISHED
    return UNKNOWN


def fit_finished(run: str | Path) -> bool:
    """Whether the run's ``fit`` ended normally (max_epochs, early stopping, time limit)."""
    record = read_status(run).get("fit") or {}
    return record.get("state") == FINISHED


def mark_failed(
    run: str | Path, command: str, returncode: int, argv: list[str], pid: int | None = None
) -> None:
    """Record that ``command`` (process ``pid``) exited with ``returncode``, unless that process
    recorded how it ended itself; it may have died before training started, or been killed."""
    record = read_status(run).get(command) or {}
    if record.get("pid") == pid and record.get("state") in (FAILED, INTERRUPTED):
        return  # RunStatus of that very process recorded the exception
    reason = f"signal {-returncode}" if returncode < 0 else f"exit status {returncode}"
    same = record.get("pid") == pid  # else a record of an earlier attempt, replaced
    update_status(
        run,
        command,
        replace=not same,
        state=FAILED,
        ended=_now(),
        exception=(record.get("exception") if same else None) or reason,
        returncode=returncode,
        argv=argv,
        pid=pid,
        host=socket.gethostname(),
    )


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


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


def hardware() -> str:
    """What ran the command: the CUDA devices, else the processor, its cores and torch's threads."""
    import platform

    import torch

    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        counts = {name: names.count(name) for name in names}
        return ", ".join(f"{n} x {name}" for name, n in counts.items())
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    threads = torch.get_num_threads()
    return (
        f"CPU {model}, {os.cpu_count()} cores, {threads} torch thread{'s' if threads != 1 else ''}"
    )


def provenance() -> dict[str, Any]:
    """The code and machine behind a run: selab's git commit (``+dirty`` with uncommitted changes;
    None outside a checkout), versions, host and hardware."""
    import subprocess

    import lightning
    import torch

    source = Path(__file__).resolve().parent
    commit = None
    try:
        git = ["git", "-C", str(source)]
        head = subprocess.run(
            [*git, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if head.returncode == 0:
            changes = subprocess.run([*git, "status", "--porcelain", "--", "."],
                                     capture_output=True, text=True, timeout=10)  # fmt: skip
            commit = head.stdout.strip() + ("+dirty" if changes.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    from . import __version__

    return {
        "commit": commit,
        "selab": __version__,
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "python": sys.version.split()[0],
        "host": socket.gethostname(),
        "hardware": hardware(),
    }


class RunStatus(Callback):
    """Records what each command does to its run folder in ``<run>/status.json``.

    Per command (``fit``, ``validate``, ``test``, ``predict``): ``state`` (running, finished, failed
    or interrupted), ``started``/``ended``, ``pid`` (and ``ppid``, what started it), ``host``,
    ``argv``, the ``exception`` type and
    message of a failure, and for ``fit`` the epochs done and training ``seconds`` (kept across a
    resume through the checkpoint). Written atomically at the start, after every training epoch and
    at the end, so ``selab runs`` can tell a running run from a killed one (a ``running`` record whose
    pid is gone from this host).
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.seconds_before = 0.0  # training seconds of earlier sessions of a resumed run
        self._start: float | None = None
        self._run: Path | None = None
        self._command: str | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": self._seconds()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.seconds_before = float(state_dict.get("seconds", 0.0))

    def _seconds(self) -> float:
        running = time.time() - self._start if self._start is not None else 0.0
        return self.seconds_before + running

    def _write(self, replace: bool = False, **fields: Any) -> None:
        if self._run is not None and self._command is not None:
            update_status(self._run, self._command, replace=replace, **fields)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._run = None
        # No run folder without a logger, or under fast_dev_run (Lightning's DummyLogger).
        log_dir = trainer.log_dir if trainer.loggers and not trainer.fast_dev_run else None
        if not (self.enabled and trainer.is_global_zero and log_dir):
            return
        self._run = Path(log_dir)
        self._command = trainer.state.fn.value if trainer.state.fn is not None else stage
        self._start = time.time() if self._command == "fit" else None
        record = {
            "state": RUNNING,
            "started": _now(),
            "ended": None,
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "host": socket.gethostname(),
            "argv": sys.argv[1:],
            "exception": None,
        }
        if self._command == "fit":
            record["max_epochs"] = trainer.max_epochs
            record["classes"] = getattr(pl_module, "num_classes", None)
            record.update(provenance())
        self._write(replace=True, **record)  # a new attempt: nothing of an earlier one stays

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._command == "fit":
            self._write(epochs=trainer.current_epoch + 1, seconds=round(self._seconds(), 3))

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        interrupted = isinstance(exception, KeyboardInterrupt)
        message = str(exception).strip().splitlines()
        fields: dict[str, Any] = {
            "state": INTERRUPTED if interrupted else FAILED,
            "ended": _now(),
            "exception": type(exception).__name__ + (f": {message[0]}" if message else ""),
        }
        if self._command == "fit":
            fields["seconds"] = round(self._seconds(), 3)
        self._write(**fields)
        self._run = None

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        fields: dict[str, Any] = {"state": FINISHED, "ended": _now()}
        if self._command == "fit":
            fields["epochs"] = trainer.current_epoch
            fields["seconds"] = round(self._seconds(), 3)
        self._write(**fields)
        self._run = None


# -- runs at a glance --------------------------------------------------------------------------


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
    return {
        "run": str(run.relative_to(root)) if root is not None and run != Path(root) else str(run),
        "status": run_state(run, metrics),
        "config": "+".join(configs) or None,
        "seed": config.get("seed_everything"),
        "epochs": epochs_done(metrics),
        f"best {metric}": None if best is None else float(best),
        f"final {metric}": None if values.empty else float(values.iloc[-1]),
        "test/acc_top1": final_value(metrics, "test/acc_top1"),
        "wall time": duration_text(fit.get("seconds")),
    }


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
        from .analysis.tables import to_markdown

        # accuracies in percent, as `selab study report` shows them
        percent = {column: "{:.2%}" for column in table.columns if "acc" in column}
        print(to_markdown(table, percent))
    return 0


__all__ = [
    "CHECKPOINTS",
    "CONFIG",
    "HPARAMS",
    "LAST_CHECKPOINT",
    "METRICS",
    "REPORT",
    "RUN_LOG",
    "STATUS",
    "RunStatus",
    "atomic_write_text",
    "checkpoint_dir",
    "describe",
    "epoch_values",
    "epochs_done",
    "extra_config_name",
    "final_value",
    "find_last_checkpoint",
    "find_runs",
    "fit_finished",
    "has_logged",
    "has_test_results",
    "last_checkpoint",
    "mark_failed",
    "next_version",
    "pin_logger_versions",
    "read_config",
    "read_metrics",
    "read_status",
    "run_dir",
    "run_of_checkpoint",
    "run_state",
    "runs_table",
    "update_status",
    "version_folder",
    "version_number",
]
