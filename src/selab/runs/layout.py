"""Where a run keeps its files: the folder layout, ``version_N`` claims and the loggers' folders."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

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


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``: readers
    see the old file or the new one, never half of one."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
    return path
