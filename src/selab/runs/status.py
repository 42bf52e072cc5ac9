"""``status.json``: what each command did to a run (state, pid, host, times), and the
:class:`RunStatus` callback that writes it."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.exceptions import SIGTERMException

from .layout import STATUS, atomic_write_text
from .metrics import epochs_done, has_test_results, read_config, read_metrics
from .provenance import provenance

# States of a run, as `selab runs` shows them.
RUNNING, FINISHED, FAILED, INTERRUPTED, UNKNOWN = (
    "running",
    "finished",
    "failed",
    "interrupted",
    "unknown",
)


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
        interrupted = isinstance(exception, (KeyboardInterrupt, SIGTERMException))
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
