"""The command line before LightningCLI parses it: run names from the config files, and the
run's own config for a command on one of its checkpoints."""

from __future__ import annotations

import sys
from pathlib import Path

from .. import runs

EVALUATING = ("test", "validate", "predict")
# Presets that change how a run is done or logged, not what is trained: not part of its name.
PRESET_FOLDERS = runs.PRESET_FOLDERS


def experiment_name(config_files: list) -> str | None:
    """A run name from the ``--config`` files: the first one's path below ``configs/`` (or its
    stem) and ``+<stem>`` for each overlay but presets, e.g. ``cifar10/resnet20+se``."""
    names = [str(getattr(path, "absolute", path)) for path in config_files or []]
    paths = [Path(name) for name in names if "\n" not in name]  # not config text (a run's)
    paths = [path for path in paths if path.parent.name not in PRESET_FOLDERS]
    if not paths:
        return None
    first = paths[0].with_suffix("")
    parts = first.parts
    name = "/".join(parts[parts.index("configs") + 1 :]) if "configs" in parts[:-1] else first.name
    return "+".join([name, *(path.stem for path in paths[1:])])


def name_experiment(config) -> None:
    """Loggers left at a default name (``default``, Lightning's ``lightning_logs``) take the name
    of the config files, so each recipe and overlay combination logs into its own folder without
    naming it in every file."""
    name = experiment_name(config.get("config"))
    if name is None:
        return
    for logger in logger_configs(config.trainer.get("logger")):
        init_args = logger.get("init_args")
        if init_args is None:
            continue
        # MLFlowLogger has no ``name``: its run (within the configured experiment) takes it.
        key = "run_name" if "experiment_name" in init_args else "name"
        if init_args.get(key) in (None, "default", "lightning_logs"):
            init_args[key] = name


def logger_configs(logger) -> list:
    """The logger entries of a parsed ``trainer.logger`` (one, a list, or none)."""
    entries = logger if isinstance(logger, list) else [logger]
    return [e for e in entries if e is not None and not isinstance(e, bool) and hasattr(e, "get")]


def first_logger_args(logger):
    """``init_args`` of the first logger entry, whose folder is the run's (``trainer.log_dir``)."""
    entries = logger_configs(logger)
    return entries[0].get("init_args") if entries else None


def _option_value(argv: list[str], option: str) -> str | None:
    """The last value of ``option`` (``--x V`` or ``--x=V``) in ``argv``."""
    value = None
    for i, arg in enumerate(argv):
        if arg == option and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(option + "="):
            value = arg.split("=", 1)[1]
    return value


def with_run_config(argv: list[str]) -> list[str]:
    """``test``/``validate``/``predict`` of a checkpoint inside a run folder start from that run's
    ``config.yaml``: its settings come first, its ``data`` after the command's own config files, and
    the command's options override both. The network still comes from the command's config files
    when it names any, so a checkpoint of another network stays an error."""
    if not argv or argv[0] not in EVALUATING:
        return argv
    ckpt = _option_value(argv, "--ckpt_path")
    if ckpt in (None, "last", "best", "hpc", "registry"):
        return argv
    run_dir = runs.run_of_checkpoint(ckpt)
    if run_dir is None or not (run_dir / runs.CONFIG).is_file():
        return argv
    import yaml

    saved = yaml.safe_load((run_dir / runs.CONFIG).read_text(encoding="utf-8")) or {}
    for key in ("ckpt_path", "weights_only"):  # the fit command's own arguments
        saved.pop(key, None)
    trainer = saved.get("trainer") or {}
    loggers = trainer.get("logger")
    for logger in loggers if isinstance(loggers, list) else [loggers]:
        if isinstance(logger, dict):  # which version folder this command writes to is decided later
            (logger.get("init_args") or {}).pop("version", None)
    after_configs = 1
    for i, arg in enumerate(argv):
        if arg in ("--config", "-c"):
            after_configs = i + 2
        elif arg.startswith("--config="):
            after_configs = i + 1
    if after_configs > 1:  # the network the command names; another one's checkpoint is an error
        saved.pop("model", None)
    data = saved.get("data") or {}
    print(
        f"{argv[0]}: settings of the checkpoint's run from {run_dir / runs.CONFIG} (data: "
        f"{data.get('dataset')} in {data.get('root')}); options given here override them",
        file=sys.stderr,
    )
    return [
        argv[0],
        "--config", yaml.safe_dump(saved, sort_keys=False),
        *argv[1:after_configs],
        "--data", yaml.safe_dump(data, sort_keys=False),
        *argv[after_configs:],
    ]  # fmt: skip
