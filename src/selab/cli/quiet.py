"""Warnings and log lines silenced or shortened: Lightning's and torch's notes about their own
internals, and selab's own warnings as one ``warning:`` line."""

from __future__ import annotations

import functools
import logging
import os
import re
import warnings
from pathlib import Path

import torch

from .arguments import EVALUATING

# Warnings about Lightning's and torch's own internals or about choices selab already made.
QUIET_WARNINGS = (
    # given the command line with a run's config added (with_run_config)
    r"LightningCLI's args parameter is intended to run from within Python",
    r".*isinstance\(treespec, LeafSpec\).*",
    r".*does not have many workers.*",
    r".*smaller than the logging interval.*",
    r".*The `srun` command is available on your system.*",
    # mixed precision keeps the weights in float32, which is what the summary then assumes
    r"Precision \S+-mixed is not supported by the model summary",
    # the accuracies are logged after their compute(), which already synced them across processes
    r"It is recommended to use `self.log\('(train|val|test)/acc_",
)

# Evaluating writes to a new run folder, so the checkpoint callback's best-k record, which only
# a fit would use, is not carried over.
QUIET_WARNINGS_EVALUATING = (r"The dirpath has changed from",)


# Lightning's info lines that say nothing about this run: an advertisement, the model summary
# selab configures itself, and (on CPU-only machines) the accelerators that are absent.
QUIET_INFO = (r"💡 Tip:", r"Trainer already configured with model summary callbacks")
QUIET_INFO_WITHOUT_GPU = (r"GPU available: False", r"TPU available: False")


class _QuietInfo(logging.Filter):
    def __init__(self, patterns: tuple[str, ...]) -> None:
        super().__init__()
        self.pattern = re.compile("|".join(patterns))

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.match(record.getMessage())


def _format_warning(message, category, filename, lineno, line=None, _next=None) -> str:
    """selab's own warnings as one ``warning: ...`` line, without the source line that raised it."""
    if Path(filename).resolve().is_relative_to(Path(__file__).resolve().parents[1]):
        return f"warning: {message}\n"
    return _next(message, category, filename, lineno, line)


def quiet_warnings(subcommand: str | None = None) -> None:
    evaluating = QUIET_WARNINGS_EVALUATING if subcommand in EVALUATING else ()
    for message in QUIET_WARNINGS + evaluating:
        warnings.filterwarnings("ignore", message=message)
    os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")
    rank_zero_log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _QuietInfo) for f in rank_zero_log.filters):
        patterns = QUIET_INFO if torch.cuda.is_available() else QUIET_INFO + QUIET_INFO_WITHOUT_GPU
        rank_zero_log.addFilter(_QuietInfo(patterns))
    if not isinstance(warnings.formatwarning, functools.partial):
        warnings.formatwarning = functools.partial(_format_warning, _next=warnings.formatwarning)
