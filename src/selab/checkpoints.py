"""Checkpoints a command is given: readable, of the configured network, consistent with the config.

``lightning test|validate|predict --ckpt_path X`` and resumed fits go through these checks before
anything runs, so a wrong file is one clear error instead of a traceback or, worse, a silent
result: a truncated file, a checkpoint of another network or class count, or a config that says
something else than the run that wrote the checkpoint.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as asked; the message says why and what to do."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's contents (on the CPU), or a :class:`CheckpointError` saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist; pass an existing .ckpt file or 'last'"
        )
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"checkpoint {path} is not a readable torch checkpoint (truncated or corrupt?); "
            "pick another file, e.g. the best or last checkpoint of the same run"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(
            f"checkpoint {path} could not be loaded ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}); it is corrupt"
        ) from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} has no 'state_dict': it is not a Lightning checkpoint")
    return checkpoint


def check_state_dict(model: nn.Module, checkpoint: Mapping[str, Any], path: str | Path) -> None:
    """The checkpoint's weights fit ``model``: the same parameter names and shapes."""
    theirs = checkpoint["state_dict"]
    ours = model.state_dict()
    missing = [k for k in ours if k not in theirs]
    unexpected = [k for k in theirs if k not in ours]
    wrong = [k for k in ours if k in theirs and tuple(theirs[k].shape) != tuple(ours[k].shape)]
    if not (missing or unexpected or wrong):
        return
    if wrong:
        key = wrong[0]
        detail = (
            f"{key} is {tuple(theirs[key].shape)} in the checkpoint but "
            f"{tuple(ours[key].shape)} in the configured model"
        )
    elif missing:
        detail = f"the configured model has {missing[0]}, the checkpoint does not"
    else:
        detail = f"the checkpoint has {unexpected[0]}, the configured model does not"
    count = len(missing) + len(unexpected) + len(wrong)
    more = f" ({count - 1} more differences)" if count > 1 else ""
    raise CheckpointError(
        f"checkpoint {path} holds another network than the configured one: {detail}{more}; "
        "use the config the checkpoint was trained with (config.yaml in its run folder)"
    )


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts (and jsonargparse Namespaces) as ``{"a.b.c": value}``."""
    if hasattr(tree, "as_dict"):
        tree = tree.as_dict()
    if isinstance(tree, Mapping):
        flat: dict[str, Any] = {}
        for key, value in tree.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: tree}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    return a == b


def config_conflicts(
    configured: Any, from_checkpoint: Any, ignore: Iterable[str] = ()
) -> list[tuple[str, Any, Any]]:
    """``(key, checkpoint value, configured value)`` for every key set in both that differs.

    A name given as shorthand on one side (``attention: se``) is compared with the ``name`` of the
    full form on the other (``attention: {name: se, reduction: 8}``)."""
    ours, theirs = flatten(configured), flatten(from_checkpoint)
    for one, other in ((ours, theirs), (theirs, ours)):
        for key, value in list(one.items()):
            if isinstance(value, str) and key not in other and f"{key}.name" in other:
                one[f"{key}.name"] = one.pop(key)
    skipped = tuple(ignore)
    return [
        (key, theirs[key], ours[key])
        for key in sorted(set(ours) & set(theirs))
        if not key.startswith(skipped) and not _same(ours[key], theirs[key])
    ]


def describe_conflicts(path: str | Path, conflicts: list[tuple[str, Any, Any]], prefix: str) -> str:
    key, theirs, ours = conflicts[0]
    more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
    return (
        f"checkpoint {path} was trained with {prefix}{key}={theirs!r} but the config gives "
        f"{ours!r}{more}; use the config the checkpoint was trained with (config.yaml in its "
        "run folder) or change the value there"
    )
