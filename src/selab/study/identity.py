"""What a study cell was run with: everything that changes its result, kept in ``cell.json``.

A cell's identity is the content of its config files (base, then arm), the study's and the arm's
dotted overrides, the ``--set`` values and the arguments after ``--``. The seed and the arm are
the cell's folder. A config's content is hashed from its parsed YAML, so comments and layout do
not count; ``data.root`` is recorded but not compared (the same dataset lives in different places
on different machines), nor is ``cpu_bf16``: what it changes, the precision a cell trains in, is
compared on its own (:func:`selab.study.cells.conflict`). Code changes are not part of it:
``status.json`` records the commit.

A finished cell is reused only when its recorded identity equals what the current command would
run; otherwise :func:`first_difference` says what differs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

CELL_FILE = "cell.json"
# Settings recorded but not compared: where the data is, and whether a CPU without native bf16
# trains in it anyway (the precision a cell trained in is compared by itself).
UNCOMPARED_KEYS = ("data.root", "cpu_bf16")


def content_hash(path: str | Path) -> str:
    """sha256 of a YAML file's parsed content (comments and formatting left out), 16 hex digits."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        canonical = json.dumps(yaml.safe_load(text), sort_keys=True, default=str)
    except yaml.YAMLError:
        canonical = text  # the command itself will report the broken file
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _is_uncompared(setting: str) -> bool:
    return setting.partition("=")[0].removeprefix("--") in UNCOMPARED_KEYS


def _from_config(path: str, key: str) -> Any:
    """The value a config file gives the dotted ``key`` (None: unset, or no such file)."""
    try:
        node: Any = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def given(key: str, settings: list[str], extra: list[str]) -> Any:
    """The value a cell's command line gives the dotted ``key``, the last one winning as in
    LightningCLI: ``--set KEY=VALUE``, then after ``--`` in order ``--KEY=VALUE``, ``--KEY VALUE``
    and the config files of ``--config FILE``; None when none of them sets it."""
    value = None
    for setting in settings:
        name, _, text = setting.partition("=")
        if name.removeprefix("--") == key:
            value = text
    for index, arg in enumerate(extra):
        name, equals, text = arg.partition("=")
        if not equals:
            text = extra[index + 1] if index + 1 < len(extra) else None
        if text is None:
            continue
        if name == f"--{key}":
            value = text
        elif name == "--config":
            value = found if (found := _from_config(text, key)) is not None else value
    return value


@dataclass
class CellIdentity:
    """What one cell was (or would be) run with; see the module docstring."""

    arm: str
    seed: int
    configs: list[dict[str, str]] = field(default_factory=list)  # [{path, sha256}]
    overrides: list[str] = field(default_factory=list)  # study + arm, as KEY=VALUE
    settings: list[str] = field(default_factory=list)  # --set KEY=VALUE
    extra: list[str] = field(default_factory=list)  # after --
    # The recipe's length (trainer.max_epochs, trainer.limit_train_batches) as the study's configs
    # set it, and the precision the cell's arguments ask for: recorded for the report, not
    # compared (the configs' content and the arguments are).
    recipe: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        arm: str,
        seed: int,
        configs: list[Path],
        overrides: dict[str, Any],
        settings: list[str],
        extra: list[str],
        shown=str,
        recipe: dict[str, Any] | None = None,
    ) -> CellIdentity:
        """``shown`` turns a config path into the text recorded for people to read."""
        return cls(
            recipe=dict(recipe or {}),
            arm=arm,
            seed=seed,
            configs=[{"path": shown(c), "sha256": content_hash(c)} for c in configs],
            overrides=[
                f"{key}={value if isinstance(value, str) else json.dumps(value)}"
                for key, value in overrides.items()
            ],
            settings=list(settings),
            extra=list(extra),
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CellIdentity:
        names = {"arm", "seed", "configs", "overrides", "settings", "extra", "recipe"}
        return cls(**{k: v for k, v in data.items() if k in names})

    def compared(self) -> list[tuple[str, str]]:
        """What equality is decided on, in order: (what it is, its text)."""
        items = [(f"config {Path(c['path']).name}", c["sha256"]) for c in self.configs]
        items += [("study override", o) for o in self.overrides]
        items += [("--set", s) for s in self.settings if not _is_uncompared(s)]
        if self.extra:
            items.append(("arguments after --", " ".join(self.extra)))
        return items

    def differences_from_study(self) -> str:
        """What this cell adds to the study file: its ``--set`` values (locations left out) and
        its arguments after ``--``; '' for a cell run as the study file says."""
        parts = [f"--set {s}" for s in self.settings if not _is_uncompared(s)]
        if self.extra:
            parts.append("-- " + " ".join(self.extra))
        return " ".join(parts)


def first_difference(recorded: CellIdentity, current: CellIdentity) -> str | None:
    """None when the two run the same; else one phrase naming the first thing that differs."""
    old, new = recorded.compared(), current.compared()
    for index in range(max(len(old), len(new))):
        before = old[index] if index < len(old) else None
        now = new[index] if index < len(new) else None
        if before == now:
            continue
        if before and now and before[0] == now[0] and before[0].startswith("config "):
            return f"{before[0]} has changed since the cell ran"
        if before and now and before[0] == now[0]:
            return f"it ran with {before[0]} `{before[1]}`, this command gives `{now[1]}`"
        if before and not now:
            return f"it ran with {before[0]} `{before[1]}`, which this command does not give"
        if now and not before:
            return f"this command adds {now[0]} `{now[1]}`, which it ran without"
        return f"it ran with {before[0]} `{before[1]}` where this command has {now[0]} `{now[1]}`"
    return None


def read(folder: str | Path) -> CellIdentity | None:
    """The identity recorded in ``<folder>/cell.json``, or None."""
    path = Path(folder, CELL_FILE)
    try:
        return CellIdentity.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def write(folder: str | Path, identity: CellIdentity, command: list[str]) -> Path:
    """Record ``identity`` and the full ``command`` (its fit arguments) in ``<folder>/cell.json``."""
    from ..runs import atomic_write_text

    Path(folder).mkdir(parents=True, exist_ok=True)
    data = {**asdict(identity), "command": command}
    return atomic_write_text(Path(folder, CELL_FILE), json.dumps(data, indent=2) + "\n")
