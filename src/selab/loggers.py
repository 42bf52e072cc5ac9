"""Loggers that keep what a run already wrote.

Lightning's ``CSVLogger`` deletes an existing ``metrics.csv`` when it opens a run folder that is
not empty, so resuming a run (or testing its checkpoint into the same folder) loses every metric
logged before. :class:`CSVLogger` appends instead: the earlier rows stay, and a new column widens
the file with the old rows left blank in it.
"""

from __future__ import annotations

import csv

from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter as PLExperimentWriter


class AppendingExperimentWriter(PLExperimentWriter):
    """Lightning's CSV experiment writer, appending to an existing ``metrics.csv``."""

    def __init__(self, log_dir: str) -> None:
        super().__init__(log_dir)
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                header = next(csv.reader(file), [])
            self.metrics_keys = sorted(header)

    def _check_log_dir_exists(self) -> None:
        """Keep the folder's files: new rows are appended to them."""


class CSVLogger(LightningCSVLogger):
    """``lightning.pytorch.loggers.CSVLogger`` that never deletes earlier metrics of its folder."""

    @property
    def experiment(self) -> AppendingExperimentWriter:
        if self._experiment is not None:
            return self._experiment
        self._fs.makedirs(self.root_dir, exist_ok=True)
        self._experiment = AppendingExperimentWriter(log_dir=self.log_dir)
        return self._experiment


__all__ = ["CSVLogger"]
