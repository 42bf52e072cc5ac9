"""Errors a user can cause, printed as one ``error:`` line."""

from __future__ import annotations

import argparse

from lightning.fabric.utilities.exceptions import MisconfigurationException

from ..checkpoints import CheckpointError
from ..data import DataError


class UsageError(ValueError):
    """A command that cannot run as given; the message says what to do."""


def one_line(error: BaseException) -> str:
    """The error's message on one line, without jsonargparse's indentation."""
    text = " ".join(part.strip() for part in str(error).splitlines() if part.strip())
    return text or type(error).__name__


def user_errors() -> tuple[type[BaseException], ...]:
    from ..study import StudyError

    # DataError, CheckpointError, UsageError and StudyError are ValueErrors; named for the reader.
    # Lightning's MisconfigurationException: a Trainer option that cannot work with this data.
    return (argparse.ArgumentError, DataError, CheckpointError, UsageError, StudyError, OSError, ValueError, TypeError, MisconfigurationException)  # fmt: skip
