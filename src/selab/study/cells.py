"""Cells of a study: one (arm, seed) each, an ordinary ``selab fit`` then ``selab test``.

A cell's run folder is ``<out>/<arm>/seed_<seed>/`` (:func:`cell_dir`; a TensorBoardLogger and a
``selab.loggers.CSVLogger`` with ``save_dir=<out>``, ``name=<arm>``, ``version=seed_<seed>``), so it
is an ordinary run folder (see :mod:`selab.runs`), plus ``cell.json``, what it was run with
(:mod:`.identity`). Whether a cell runs, resumes or is skipped is decided from that folder: test
results present -> done; ``last.ckpt`` present -> resume the fit from it (or only test, when the
fit had finished); else a new fit. A folder whose ``cell.json`` differs from what the command
would run is a conflict, never reused, and so is one that trained in another precision than the
command trains in on this machine (a bf16 recipe trains in float32 on a CPU without native bf16,
:mod:`selab.precision`; the run's ``config.yaml`` records the precision it used). Cells exported to
a results folder (``<results>/cells/<arm>/seed_<seed>/``, :mod:`.evidence`) with the same identity
count as done.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import runs
from ..precision import full_name, training_precision
from . import identity as cell_identity
from .identity import CellIdentity, first_difference
from .spec import Arm, Study, StudyError

# What a cell's folder says should happen to it.
DONE, RUNNING, NEW, RESUME, TEST = "done", "running", "new", "resume", "test"
COMMITTED = "committed"  # finished in the results folder
EXPORTED = "cells"  # <results>/cells/<arm>/seed_<seed>/
RECIPE_LENGTH = ("max_epochs", "limit_train_batches")  # recorded with each cell for the report
# What a cell folder holds before its fit writes anything: what it is run with, the log of its
# commands and their states.
BEFORE_FIT = (cell_identity.CELL_FILE, runs.RUN_LOG, runs.STATUS)


def cell_dir(root: str | Path, arm: str, seed: int) -> Path:
    """The folder of cell (``arm``, ``seed``) under a study folder (or ``<results>/cells``)."""
    return runs.run_dir(root, arm, f"seed_{seed}")


def cell_label(arm: str, seed: int) -> str:
    """How a cell is named in messages: its folder below the study folder, ``<arm>/seed_<seed>``."""
    return cell_dir(Path(), arm, seed).as_posix()


def exported_dir(results: str | Path, arm: str, seed: int) -> Path:
    """Where a results folder keeps the exported cell (``arm``, ``seed``)."""
    return cell_dir(Path(results) / EXPORTED, arm, seed)


def display_path(path: str | Path) -> str:
    """``path`` relative to the working directory when it lies below it, else absolute."""
    path = Path(path)
    absolute = path if path.is_absolute() else Path.cwd() / path
    try:
        return str(absolute.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(absolute.resolve())


def override_arg(key: str, value: Any) -> str:
    """``--key=value`` as jsonargparse reads it: strings as they are, anything else as JSON."""
    text = value if isinstance(value, str) else json.dumps(value)
    return f"--{key}={text}"


def logger_arg(out: Path, arm: str, seed: int) -> str:
    """Both loggers of a cell, writing to one folder, :func:`cell_dir`."""
    folder = cell_dir(out, arm, seed)
    init = {"save_dir": display_path(out), "name": folder.parent.name, "version": folder.name}
    loggers = [
        {
            "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
            "init_args": {**init, "default_hp_metric": False},
        },
        {"class_path": "selab.loggers.CSVLogger", "init_args": init},
    ]
    return "--trainer.logger=" + json.dumps(loggers, separators=(",", ":"))


@dataclass
class Cell:
    """One (arm, seed) of a study and the commands that run it."""

    arm: str
    seed: int
    folder: Path
    args: list[str]  # arguments shared by fit and test, after the subcommand
    identity: CellIdentity | None = None
    action: str = NEW
    steps: list[tuple[str, list[str]]] = field(default_factory=list)
    conflict: str | None = None  # how the folder's recorded cell differs from this one
    committed: Path | None = None  # the exported cell that makes this one done
    precision: str | None = None  # what its fit trains in here; None: decided where it runs

    @property
    def label(self) -> str:
        return cell_label(self.arm, self.seed)

    def fit_args(self, resume: bool = False) -> list[str]:
        args = ["fit", *self.args]
        if resume:
            args.append(
                f"--ckpt_path={display_path(runs.checkpoint_dir(self.folder) / runs.LAST_CHECKPOINT)}"
            )
        return args

    def test_args(self) -> list[str]:
        ckpt = runs.checkpoint_dir(self.folder) / runs.LAST_CHECKPOINT
        return ["test", *self.args, f"--ckpt_path={display_path(ckpt)}"]

    def spec(self, env: dict[str, str] | None = None) -> dict[str, Any]:
        """What a launcher needs to run the cell anywhere: plain data, picklable."""
        return {
            "arm": self.arm,
            "seed": self.seed,
            "folder": str(Path(self.folder).resolve()),
            "identity": dataclasses.asdict(self.identity) if self.identity else None,
            "steps": [(name, list(argv)) for name, argv in self.steps],
            "cwd": os.getcwd(),
            "env": dict(env or {}),
        }


def command_line(argv: list[str]) -> str:
    """The command a user would type: ``selab <subcommand> ...``, quoted for a POSIX shell."""
    return shlex.join(["selab", *argv])


def cell_args(
    study: Study, arm: Arm, seed: int, out: Path, settings: list[str], extra: list[str]
) -> list[str]:
    """Arguments of a cell's fit and test: base and arm configs, the study's and the arm's
    overrides, ``--set`` settings, the seed, the loggers, then ``extra`` (after ``--``)."""
    args: list[str] = []
    for config in [*study.base, *arm.configs]:
        args += ["--config", display_path(config)]
    args.append("--trainer.enable_progress_bar=false")  # output goes to run.log
    for key, value in {**study.overrides, **arm.overrides}.items():
        args.append(override_arg(key, value))
    args += [f"--{setting}" for setting in settings]
    args += [f"--seed_everything={seed}", logger_arg(out, arm.name, seed)]
    return args + list(extra)


def decide(folder: Path) -> str:
    """What to do with a cell, from what its folder holds."""
    if not folder.is_dir():
        return NEW
    if runs.has_test_results(folder):
        return DONE
    if runs.run_state(folder) == runs.RUNNING:
        return RUNNING
    if runs.last_checkpoint(folder) is not None:
        return TEST if runs.fit_finished(folder) else RESUME
    return NEW


def asked(study: Study, arm: str, key: str, settings: list[str], extra: list[str]) -> Any:
    """The value a cell's command gives the dotted ``key``: its command line's, else its configs'
    and the study's overrides'; None where nothing sets it."""
    value = cell_identity.given(key, settings, extra)
    return value if value is not None else study.configured(arm, key)


def asked_precision(study: Study, arm: str, settings: list[str], extra: list[str]) -> str:
    """The precision a cell's arguments ask for, by Lightning's full name."""
    return full_name(asked(study, arm, "trainer.precision", settings, extra))


def precision_here(study: Study, arm: str, settings: list[str], extra: list[str]) -> str:
    """The precision a cell's fit trains in on this machine (see :mod:`selab.precision`)."""
    accelerator = asked(study, arm, "trainer.accelerator", settings, extra)
    cpu_bf16 = asked(study, arm, "cpu_bf16", settings, extra) or "native"
    chosen, _ = training_precision(
        asked_precision(study, arm, settings, extra), accelerator, cpu_bf16
    )
    return full_name(chosen)


def trained_precision(folder: Path) -> str | None:
    """The precision the cell's fit trained in, from its ``config.yaml``; None before its fit."""
    config = runs.read_config(folder)
    return full_name((config.get("trainer") or {}).get("precision")) if config else None


def conflict(
    folder: Path, current: CellIdentity, action: str, precision: str | None = None
) -> str | None:
    """How the cell recorded in ``folder`` differs from ``current`` or, when ``precision`` is
    given, trained in another precision (None: the same, or nothing recorded and nothing run)."""
    recorded = cell_identity.read(folder)
    if recorded is None:
        if action == NEW:
            return None
        return "it was run without a record of its arguments (cell.json)"
    difference = first_difference(recorded, current)
    trained = trained_precision(folder)
    if difference is None and precision is not None and trained not in (None, precision):
        return f"it trained in {trained}, this command trains in {precision} on this machine"
    return difference


def plan(
    study: Study,
    out: Path,
    settings: list[str] = (),
    extra: list[str] = (),
    arms: list[str] | None = None,
    seeds: list[int] | None = None,
    results: Path | None = None,
    here: bool = True,
) -> list[Cell]:
    """Every cell to consider, seed by seed (all arms of the first seed first, so paired
    comparisons are available early), with what its folder says to do and, where the folder or
    ``results`` holds the cell run differently, the conflict. ``here``: the cells run on this
    machine, so the precision they train in is known and compared."""
    cells = []
    for seed in seeds if seeds is not None else study.seeds:
        for name in arms if arms is not None else study.arms:
            arm = study.arms[name]
            folder = cell_dir(out, name, seed)
            cell = Cell(
                name, seed, folder, cell_args(study, arm, seed, out, list(settings), list(extra))
            )
            cell.identity = CellIdentity.build(
                name, seed, [*study.base, *arm.configs], {**study.overrides, **arm.overrides},
                list(settings), list(extra), shown=display_path,
                recipe={
                    **{key: study.configured(name, f"trainer.{key}") for key in RECIPE_LENGTH},
                    "precision": asked_precision(study, name, list(settings), list(extra)),
                },
            )  # fmt: skip
            if here:
                cell.precision = precision_here(study, name, list(settings), list(extra))
            cell.action = decide(folder)
            cell.conflict = conflict(folder, cell.identity, cell.action, cell.precision)
            if results is not None and cell.action != DONE:
                exported = exported_dir(results, name, seed)
                if runs.has_test_results(exported):
                    difference = conflict(exported, cell.identity, DONE, cell.precision)
                    if difference is None:
                        cell.action, cell.committed, cell.conflict = COMMITTED, exported, None
                    else:
                        raise StudyError(
                            f"{cell.label} in {display_path(results)} cannot be counted: "
                            f"{difference}; pass another --results (committed cells are never replaced)"
                        )
            set_steps(cell)
            cells.append(cell)
    return cells


def set_steps(cell: Cell) -> None:
    """The commands that bring the cell from its ``action`` to done."""
    if cell.action == NEW:
        cell.steps = [("fit", cell.fit_args()), ("test", cell.test_args())]
    elif cell.action == RESUME:
        cell.steps = [("fit", cell.fit_args(resume=True)), ("test", cell.test_args())]
    elif cell.action == TEST:
        cell.steps = [("test", cell.test_args())]
    else:
        cell.steps = []


def stale(cell: Cell) -> bool:
    """Whether a cell about to be fitted anew holds what an earlier fit wrote before it was
    stopped without a checkpoint (configs, metrics, events): a new fit must not log beside them."""
    if cell.action != NEW or not cell.folder.is_dir():
        return False
    return any(path.name not in BEFORE_FIT for path in cell.folder.iterdir())


def replace(cell: Cell, out: Path) -> Path:
    """Move a conflicting or :func:`stale` cell's folder to ``<out>/replaced/<arm>/seed_<seed>-<time>/``
    (kept, never deleted) so that the cell runs anew; returns where it went."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = cell_dir(Path(out) / "replaced", cell.arm, cell.seed)
    target = target.with_name(f"{target.name}-{stamp}")
    target.parent.mkdir(parents=True, exist_ok=True)
    os.rename(cell.folder, target)
    cell.action, cell.conflict = NEW, None
    set_steps(cell)
    return target


def run_cell(spec: dict[str, Any], stop: threading.Event | None = None) -> dict[str, Any]:
    """Run a cell's steps one after another as ``python -m selab ...`` subprocesses.

    Output goes to ``<cell>/run.log`` (appended, each command on a header line). A step that fails
    ends the cell; its failure is recorded in ``status.json`` when the command could not record it
    itself. ``stop`` (set by a launcher) terminates the running step. Runs on whatever machine the
    launcher chose; returns plain data.
    """
    folder = Path(spec["folder"])
    folder.mkdir(parents=True, exist_ok=True)
    if spec.get("identity") and cell_identity.read(folder) is None:
        first = spec["steps"][0][1] if spec["steps"] else []
        cell_identity.write(folder, CellIdentity.from_dict(spec["identity"]), first)
    env = {**os.environ, **spec.get("env", {}), "PYTHONUNBUFFERED": "1"}
    start = time.time()
    result = {"arm": spec["arm"], "seed": spec["seed"], "folder": str(folder), "ok": True,
              "step": None, "returncode": 0, "log": str(folder / runs.RUN_LOG)}  # fmt: skip
    for name, argv in spec["steps"]:
        with open(folder / runs.RUN_LOG, "a", encoding="utf-8") as log:
            log.write(f"\n# {time.strftime('%Y-%m-%d %H:%M:%S')} {command_line(argv)}\n")
            log.flush()
            process = subprocess.Popen(
                [sys.executable, "-m", "selab", *argv],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=spec.get("cwd"), env=env,
            )  # fmt: skip
            try:
                returncode = _wait(process, stop)
            except BaseException:  # the launcher was interrupted or cancelled the cell
                _terminate(process)
                raise
            log.write(f"# exit status {returncode}\n")
        if returncode != 0:
            runs.mark_failed(folder, name, returncode, argv, process.pid)
            result.update(ok=False, step=name, returncode=returncode)
            break
    result["seconds"] = round(time.time() - start, 1)
    return result


def _wait(process: subprocess.Popen, stop: threading.Event | None) -> int:
    while True:
        try:
            return process.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            if stop is not None and stop.is_set():
                _terminate(process)
                return process.wait()


def _terminate(process: subprocess.Popen, grace: float = 30.0) -> None:
    """Interrupt as Ctrl+C would (Lightning records it and exits cleanly), kill if it hangs."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
