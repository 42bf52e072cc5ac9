"""The study file: base configs, arms, seeds, the metric to compare and the published numbers.

.. code-block:: yaml

    name: vgg_small                  # default: the study file's folder name
    base: recipe.yaml                # one config or a list, relative to the study file
    arms:                            # name -> overlays: config files and/or dotted overrides
      plain: []
      skip: [skip.yaml]
      se: [{model.backbone.init_args.attention: se}]
    seeds: [0, 1, 2]
    metric: test/acc_top1            # compared between arms (default)
    last_epochs: 5                   # optional: also the mean of the metric's last 5 epochs
    other_metrics: [test/acc_top5]   # optional: reported beside it
    baseline: plain                  # default: the first arm
    published: {plain: 60.1, skip: 66.9}
    units: percent                   # percent: accuracies x 100, as published; raw: as logged
    overrides: {trainer.max_epochs: 20}  # optional: every cell
    out: logs/studies/vgg_small      # default: logs/studies/<name>
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

STUDY_FILE = "study.yaml"
UNITS = ("percent", "raw")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


class StudyError(ValueError):
    """A study file or study command that cannot be used; the message says what to do."""


@dataclass
class Arm:
    """One arm: overlay configs (applied after the base) and dotted overrides."""

    name: str
    configs: list[Path] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)
    published: float | None = None


@dataclass
class Study:
    """A parsed study file (see the module docstring for its keys)."""

    name: str
    arms: dict[str, Arm]
    seeds: list[int]
    base: list[Path] = field(default_factory=list)
    metric: str = "test/acc_top1"
    last_epochs: int | None = None
    other_metrics: list[str] = field(default_factory=list)
    baseline: str = ""
    units: str = "percent"
    overrides: dict[str, Any] = field(default_factory=dict)
    out: Path = Path()
    description: str = ""
    path: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    source: Path | None = None  # the file it was read from (a study folder's copy included)

    @property
    def scale(self) -> float:
        """Factor from logged accuracies to the table's units."""
        return 100.0 if self.units == "percent" else 1.0

    def scale_of(self, name: str) -> float:
        """Factor for the metric ``name``: accuracies in the table's units, losses as logged."""
        return self.scale if "acc" in name else 1.0

    def configured(self, arm: str, key: str) -> Any:
        """The value a dotted ``key`` (e.g. ``trainer.max_epochs``) gets from the arm's config
        files and overrides, the last one setting it winning as in LightningCLI; None if unset."""
        value = None
        for path in [*self.base, *self.arms[arm].configs]:
            node: Any = read_yaml(path) if Path(path).is_file() else None
            for part in key.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            value = node if node is not None else value
        overrides = {**self.overrides, **self.arms[arm].overrides}
        return overrides.get(key, value)

    @property
    def metric_quantities(self) -> list[str]:
        """Names of the numbers of ``metric``: the ones set against the published numbers."""
        if self.last_epochs:
            return [f"{self.metric} last {self.last_epochs} mean", f"{self.metric} final"]
        return [self.metric]

    @property
    def quantities(self) -> list[str]:
        """Names of the numbers reported per cell, the compared one first."""
        names = self.metric_quantities
        return names + [m for m in self.other_metrics if m not in names]


# The keys a study file may have: the Study fields a user writes, plus `published`.
_KEYS = {f.name for f in dataclasses.fields(Study)} - {"path", "raw", "source"} | {"published"}


def _fail(where: str, message: str) -> StudyError:
    return StudyError(f"{where}: {message}")


def _list_of(value: Any, kind: type, where: str, key: str) -> list:
    if value is None:
        return []
    if isinstance(value, kind):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, kind) for v in value):
        raise _fail(where, f"'{key}' must be a {kind.__name__} or a list of them, got {value!r}")
    return value


def _mapping(value: Any, where: str, key: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(where, f"'{key}' must be a mapping, got {value!r}")
    return dict(value)


def _config_path(name: str, folder: Path, where: str, check: bool) -> Path:
    path = Path(name).expanduser()
    path = path if path.is_absolute() else folder / path
    if check and not path.is_file():
        raise _fail(
            where,
            f"config {name!r} not found (looked for {path}); paths are relative to the study file",
        )
    return path


def _arm(name: Any, value: Any, folder: Path, where: str, check: bool) -> Arm:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise _fail(
            where, f"arm name {name!r} must be a plain folder name (letters, digits, _ . + -)"
        )
    arm = Arm(name)
    items = [] if value is None else value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, str):
            arm.configs.append(_config_path(item, folder, where, check))
        elif isinstance(item, dict):
            for key, setting in item.items():
                if not isinstance(key, str) or not key or key.startswith("-"):
                    raise _fail(
                        where,
                        f"arm {name!r}: override {key!r} must be a dotted key such as model.backbone.init_args.attention",
                    )
                arm.overrides[key] = setting
        else:
            raise _fail(
                where,
                f"arm {name!r}: {item!r} is neither a config file nor a mapping of dotted overrides",
            )
    return arm


def parse_study(
    raw: Any,
    path: Path | None = None,
    check_files: bool = True,
    where: str | None = None,
    default_name: str | None = None,
) -> Study:
    """A :class:`Study` from the loaded YAML of a study file; every mistake is one line.

    ``path`` is the study file (config paths are relative to its folder, whose name is the default
    study name); ``check_files`` checks that those configs exist.
    """
    where = where or (str(path) if path else "study")
    if not isinstance(raw, dict):
        raise _fail(where, "a study file is a mapping with at least 'arms' and 'seeds'")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise _fail(
            where, f"unknown key {unknown[0]!r}; a study file has: {', '.join(sorted(_KEYS))}"
        )
    folder = path.parent if path is not None else Path.cwd()
    name = raw.get("name") or (folder.name if path is not None else default_name)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise _fail(where, f"'name' must be a plain folder name, got {name!r}")
    arms_raw = raw.get("arms")
    if not isinstance(arms_raw, dict) or not arms_raw:
        raise _fail(
            where,
            "'arms' must map each arm's name to its overlays, e.g. {plain: [], se: [se.yaml]}",
        )
    arms = {
        arm_name: _arm(arm_name, v, folder, where, check_files) for arm_name, v in arms_raw.items()
    }
    seeds = raw.get("seeds")
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
    ):
        raise _fail(where, f"'seeds' must be a list of non-negative integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise _fail(where, f"'seeds' repeats a seed: {seeds}")
    metric = raw.get("metric", "test/acc_top1")
    if not isinstance(metric, str) or "/" not in metric:
        raise _fail(
            where, f"'metric' must be a logged metric name such as test/acc_top1, got {metric!r}"
        )
    last_epochs = raw.get("last_epochs")
    if last_epochs is not None and (not isinstance(last_epochs, int) or last_epochs < 1):
        raise _fail(where, f"'last_epochs' must be a positive integer, got {last_epochs!r}")
    baseline = raw.get("baseline", next(iter(arms)))
    if baseline not in arms:
        raise _fail(where, f"baseline {baseline!r} is not an arm; arms: {', '.join(arms)}")
    published = _mapping(raw.get("published"), where, "published")
    for arm_name, number in published.items():
        if arm_name not in arms:
            raise _fail(
                where,
                f"published number for {arm_name!r}, which is not an arm; arms: {', '.join(arms)}",
            )
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise _fail(where, f"published number of {arm_name!r} must be a number, got {number!r}")
        arms[arm_name].published = float(number)
    units = raw.get("units", "percent" if "acc" in metric else "raw")
    if units not in UNITS:
        raise _fail(where, f"'units' must be one of {', '.join(UNITS)}, got {units!r}")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise _fail(where, "'description' must be text")
    out = raw.get("out") or f"logs/studies/{name}"
    if not isinstance(out, str):
        raise _fail(where, f"'out' must be a folder, got {out!r}")
    return Study(
        name=name,
        arms=arms,
        seeds=list(seeds),
        base=[
            _config_path(b, folder, where, check_files)
            for b in _list_of(raw.get("base"), str, where, "base")
        ],
        metric=metric,
        last_epochs=last_epochs,
        other_metrics=_list_of(raw.get("other_metrics"), str, where, "other_metrics"),
        baseline=baseline,
        units=units,
        overrides=_mapping(raw.get("overrides"), where, "overrides"),
        out=Path(out).expanduser(),
        description=description,
        path=path,
        raw=raw,
    )


def read_yaml(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"study file {path} not found")
    try:
        with open(path) as file:
            return yaml.safe_load(file)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise StudyError(
            f"{path}: not valid YAML{at}: {getattr(error, 'problem', error)}"
        ) from None


def load_study(path: str | Path, check_files: bool = True) -> Study:
    """Read and check a study file; config paths are resolved relative to it."""
    path = Path(path).expanduser()
    study = parse_study(read_yaml(path), path.resolve(), check_files, where=str(path))
    study.source = path
    return study
