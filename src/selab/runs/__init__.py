"""The run folder: where a run keeps its files, which runs exist, what state they are in.

This package is the one place that knows the layout. A run folder is ``logs/<name>/version_N/``
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

Its modules: :mod:`~selab.runs.layout` (paths, ``version_N`` claims, the loggers' folders),
:mod:`~selab.runs.metrics` (reading what a run logged), :mod:`~selab.runs.status` (``status.json``
and :class:`RunStatus`), :mod:`~selab.runs.provenance` (commit and hardware) and
:mod:`~selab.runs.listing` (``selab runs [logs/]``, :func:`main`).
"""

from .layout import (
    CHECKPOINTS,
    CONFIG,
    CSV_LOGGER,
    EVENTS_GLOB,
    HPARAMS,
    LAST_CHECKPOINT,
    METRICS,
    REPORT,
    RUN_LOG,
    STATUS,
    VERSION_ENV,
    atomic_write_text,
    checkpoint_dir,
    claim_version,
    discard_claimed,
    extra_config_name,
    find_last_checkpoint,
    find_runs,
    has_logged,
    last_checkpoint,
    next_version,
    pin_logger_versions,
    release_unused,
    run_dir,
    run_of_checkpoint,
    version_folder,
    version_number,
    with_csv_twin,
)
from .listing import PRESET_FOLDERS, describe, duration_text, json_record, main, runs_table
from .metrics import (
    diverged,
    epoch_values,
    epochs_done,
    final_value,
    has_test_results,
    read_config,
    read_metrics,
)
from .provenance import hardware, provenance
from .status import (
    FAILED,
    FINISHED,
    INTERRUPTED,
    RUNNING,
    TRAINING_COMMANDS,
    UNKNOWN,
    RunStatus,
    fit_finished,
    mark_failed,
    read_status,
    record_state,
    run_state,
    update_status,
)

__all__ = [
    "CHECKPOINTS",
    "CONFIG",
    "CSV_LOGGER",
    "EVENTS_GLOB",
    "FAILED",
    "FINISHED",
    "HPARAMS",
    "INTERRUPTED",
    "LAST_CHECKPOINT",
    "METRICS",
    "PRESET_FOLDERS",
    "REPORT",
    "RUNNING",
    "RUN_LOG",
    "STATUS",
    "TRAINING_COMMANDS",
    "UNKNOWN",
    "VERSION_ENV",
    "RunStatus",
    "atomic_write_text",
    "checkpoint_dir",
    "claim_version",
    "describe",
    "discard_claimed",
    "diverged",
    "duration_text",
    "epoch_values",
    "epochs_done",
    "extra_config_name",
    "final_value",
    "find_last_checkpoint",
    "find_runs",
    "fit_finished",
    "hardware",
    "has_logged",
    "has_test_results",
    "json_record",
    "last_checkpoint",
    "main",
    "mark_failed",
    "next_version",
    "pin_logger_versions",
    "provenance",
    "read_config",
    "read_metrics",
    "read_status",
    "record_state",
    "release_unused",
    "run_dir",
    "run_of_checkpoint",
    "run_state",
    "runs_table",
    "update_status",
    "version_folder",
    "version_number",
    "with_csv_twin",
]
