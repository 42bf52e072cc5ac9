"""Errors a user can cause with their data or data options; each message is one line saying
what is wrong (the file, the option, the value) and what to do."""

from __future__ import annotations

import os


class DataError(ValueError):
    """Bad data or data options: an undecodable file, an empty class folder, an impossible split.

    Raised inside a DataLoader worker, torch re-raises it in the main process as
    ``DataError(text)`` with the worker's traceback prepended; the constructor keeps only the
    original message so the error stays one line.
    """

    def __init__(self, message: str = "") -> None:
        if "\nOriginal Traceback" in message:
            last = message.rstrip().splitlines()[-1]
            message = last.split(": ", 1)[1] if ": " in last else last
        super().__init__(message)


class DatasetNotFoundError(DataError, FileNotFoundError):
    """The dataset is neither on disk nor downloadable; the message says what to do."""


def image_folder_hint() -> str:
    """How to train on an image folder instead, in the form the user is typing: ``make train``
    (make sets ``MAKELEVEL`` for the commands it runs) or the command's own options."""
    if os.environ.get("MAKELEVEL"):
        return "make train DATA=DIR"
    return "--data.dataset imagefolder --data.root DIR"
