"""The ``lightning`` / ``selab`` command: LightningCLI over ``Classifier`` and ``VisionDataModule``.

Beyond LightningCLI it refuses what would silently give a wrong answer:

- ``test``, ``validate`` and ``predict`` need a checkpoint (``--ckpt_path``) of the configured
  network, or ``--allow_untrained true``;
- a checkpoint whose hyper-parameters disagree with the config is an error naming both values
  (LightningCLI would silently take the checkpoint's);
- options must be spelled out (no prefix abbreviations), there is one place for the optimizer
  (``model.optimizer``), and the backbone's number of classes and input size come from the data.

Errors a user can cause print one ``error:`` line and exit with status 2; ``SELAB_DEBUG=1`` shows
the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import logging
import os
import re
import sys
import warnings
import weakref
from pathlib import Path

import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import LearningRateMonitor, ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from . import runs
from .callbacks import (
    CostSummary,
    ExcitationMonitor,
    FitTimer,
    HParams,
    ModelGraph,
    ProgressLoss,
    TestFigures,
    Throughput,
)
from .callbacks.checkpoint import ModelCheckpoint
from .callbacks.log_interval import EpochLogInterval
from .callbacks.progress import RichProgressBar
from .callbacks.summary_table import ModelSummary
from .checkpoints import (
    CheckpointError,
    check_state_dict,
    config_conflicts,
    describe_conflicts,
    read_checkpoint,
)
from .classifier import Classifier
from .data import DataError, VisionDataModule
from .precision import CpuBf16, training_precision
from .predict import PredictionWriter

# One TensorBoardLogger, so `--trainer.logger.init_args.save_dir/name` address it as before; its
# CSV twin (selab.loggers.CSVLogger, same folder) is added in before_instantiate_classes.
TRAINER_DEFAULTS = {
    "logger": {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        "init_args": {"save_dir": "logs", "name": "default", "default_hp_metric": False},
    },
}
EVALUATING = ("test", "validate", "predict")
# Presets that change how a run is done or logged, not what is trained: not part of its name.
PRESET_FOLDERS = runs.PRESET_FOLDERS
# Hyper-parameters a checkpoint may legitimately differ in from the command's config.
NOT_COMPARED = (
    "compile",
    "channels_last",
    "num_classes",
    "class_names",
    "backbone.init_args.num_classes",
    "backbone.init_args.image_size",
)


# One line per subcommand in ``--help`` (Lightning's are the Trainer docstrings' first lines, cut
# mid-sentence).
SUBCOMMAND_HELP = {
    "fit": "train a network (a recipe config plus overlays), or resume one with --ckpt_path last",
    "validate": "evaluate a checkpoint (--ckpt_path) on the validation split",
    "test": "evaluate a checkpoint (--ckpt_path) on the test split",
    "predict": "class probabilities of a checkpoint (--ckpt_path) for a folder of images, to CSV",
}
HELP = """\
usage: {prog} <command> [options]

selab: a PyTorch Lightning lab for channel attention (Squeeze-and-Excitation and its variants)
on image classification. fit/validate/test/predict are LightningCLI commands over
selab.Classifier and selab.VisionDataModule, configured by YAML files and --options.

commands:
  fit        {fit}
  validate   {validate}
  test       {test}
  predict    {predict}
  study      arms x seeds as plain runs, with means, 95% intervals and paired differences
             (study run <study.yaml>, study report <folder>, study export <folder> <results>)
  runs       every run folder under logs/: status, config, seed, epochs, metric, time

  {prog} <command> --help lists a command's options.

start here: README.md, "Quick start"; e.g.
  {prog} fit --config configs/cifar10/resnet20.yaml --config configs/attention/se.yaml
  {prog} fit --config configs/cifar10/resnet20.yaml --config configs/debug/fast.yaml  # does it run?
"""


def prog_name() -> str:
    """The command's name as typed: ``selab`` for ``python -m selab``."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "selab"
    return "selab" if name in ("__main__.py", "cli.py", "-c", "") else name


def print_help(file=None) -> None:
    print(HELP.format(prog=prog_name(), **SUBCOMMAND_HELP), end="", file=file)


class UsageError(ValueError):
    """A command that cannot run as given; the message says what to do."""


class SelabCLI(LightningCLI):
    """LightningCLI with selab's data->model links, checks, checkpointing and resume defaults."""

    def _add_subcommands(self, parser: LightningArgumentParser, **kwargs) -> None:
        super()._add_subcommands(parser, **kwargs)
        # whole sentences, not the Trainer docstrings' first lines
        for action in parser._subcommands_action._choices_actions:
            action.help = SUBCOMMAND_HELP.get(action.dest, action.help)
        for name, subparser in self._subcommand_parsers.items():
            subparser.description = SUBCOMMAND_HELP.get(name, subparser.description)

    def _prepare_subcommand_parser(self, klass, subcommand: str, **kwargs):
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        for group in parser._action_groups:  # titled by a docstring's first line, cut mid-sentence
            if any(action.dest == "ckpt_path" for action in group._group_actions):
                group.title, group.description = f"{subcommand} options", None
        if subcommand in EVALUATING:
            parser.add_argument(
                "--allow_untrained",
                type=bool,
                default=False,
                help="evaluate without a checkpoint (the network's initial weights)",
            )
        return parser

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.class_names", "model.class_names", apply_on="instantiate")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/acc_top1",
                "checkpoint.mode": "max",
                "checkpoint.save_last": True,
                "checkpoint.filename": "epoch{epoch:03d}-acc{val/acc_top1:.4f}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.add_lightning_class_args(ModelSummary, "model_summary")
        # TensorBoard dashboards, one callback each, and ``lightning predict`` to CSV, in every run.
        for callback, group in (
            (HParams, "hparams"),
            (CostSummary, "summary"),
            (ModelGraph, "graph"),
            (Throughput, "throughput"),
            (FitTimer, "timer"),
            (TestFigures, "test_figures"),
            (ExcitationMonitor, "excitation"),
            (ProgressLoss, "progress"),
        ):
            parser.add_lightning_class_args(callback, group)
        # Lightning ignores max_time when a Timer is among the callbacks: ours enforces it.
        parser.link_arguments("trainer.max_time", "timer.duration")
        parser.add_lightning_class_args(PredictionWriter, "predictions")
        parser.add_lightning_class_args(runs.RunStatus, "run_status")
        parser.add_argument(
            "--cpu_bf16",
            type=CpuBf16,
            default="native",
            help="bf16 precision on a CPU: 'native' only where the CPU has bfloat16 instructions "
            "(AVX512-BF16 or AMX), float32 elsewhere; 'always' as set",
        )

    def _instantiate_trainer(self, config: dict, callbacks: list):
        if self.subcommand == "predict" and config.get("logger") is False:
            # nothing to checkpoint, and no run folder whose checkpoint state to restore
            config["enable_checkpointing"] = False
        if config.get("enable_checkpointing") is False:  # Lightning refuses a ModelCheckpoint then
            callbacks = [c for c in callbacks if not isinstance(c, ModelCheckpoint)]
        configured = config.get("callbacks") or []
        configured = configured if isinstance(configured, list) else [configured]
        bars = [c for c in [*configured, *callbacks] if isinstance(c, ProgressBar)]
        if config.get("enable_progress_bar") is not False and not bars:
            callbacks = [*callbacks, RichProgressBar()]  # Lightning's default, without v_num
        trainer = super()._instantiate_trainer(config, callbacks)
        _trainers[:] = [weakref.ref(trainer)]
        return trainer

    # -- after parsing: names, run folders, checkpoints ------------------------------------------
    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        for arg in args if isinstance(args, list) else sys.argv[1:]:
            option = str(arg).split("=", 1)[0]
            if option in ("--optimizer", "--lr_scheduler"):  # LightningCLI's, not selab's
                key = option[2:]
                example = "torch.optim.Adam" if key == "optimizer" else "CLASS"
                raise UsageError(
                    f"{option} is not an option: the optimizer and its schedule are the model's, "
                    f"pass --model.{key} {example} (and --model.{key}.init_args.NAME VALUE)"
                )
        argv = list(args if isinstance(args, list) else sys.argv[1:])
        # Plain --print_config is printed here, after the values the data decides (class count,
        # image size) and the run's name are filled in, as the run will use them.
        print_config = "--print_config" in argv
        if print_config:
            args = [arg for arg in argv if arg != "--print_config"]
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        config = self.config[subcommand]
        name_experiment(config)
        if print_config:
            with contextlib.suppress(DataError):  # data not there yet: the configured values
                self._data_into_backbone(config)
            subparser = self._subcommand_parsers[subcommand]
            sys.stdout.write(subparser.dump(config, skip_none=False, skip_validation=True))
            sys.exit(0)
        predictions = config.get("predictions") or {}
        if subcommand == "predict" and predictions.get("path"):
            if Path(predictions.path).exists():
                raise UsageError(
                    f"{predictions.path} exists; pass --predictions.path NEW.csv (predictions "
                    "never replace a file)"
                )
            # Predict logs nothing: with its CSV elsewhere it needs no run folder at all.
            config.trainer.logger = False
            self.save_config_callback = None
        self._keep_existing_config(config, subcommand)
        ckpt_path = config.get("ckpt_path")
        if ckpt_path == "last":
            self._resolve_last(config, subcommand)
        elif ckpt_path not in (None, "best", "hpc", "registry"):
            self._read_checkpoint(ckpt_path)
            if subcommand in ("test", "predict"):
                self._log_into_checkpoint_run(config, subcommand, Path(ckpt_path))
        if subcommand in EVALUATING and not config.get("ckpt_path"):
            if not config.get("allow_untrained"):
                raise UsageError(
                    f"{subcommand} needs a trained network: pass --ckpt_path <run>/checkpoints/"
                    f"last.ckpt (or 'last' for the newest run of this config), or "
                    f"--allow_untrained true to {subcommand} the initial weights"
                )

    def _parse_ckpt_path(self) -> None:
        """Check the checkpoint's hyper-parameters against the config, then use them.

        LightningCLI overwrites the model config with the checkpoint's; here a difference is an
        error naming both values, and what came from the checkpoint is said on stderr.
        """
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        ckpt_path = self.config[subcommand].get("ckpt_path")
        if not ckpt_path or not Path(ckpt_path).is_file():
            return
        checkpoint = self._read_checkpoint(ckpt_path)
        hparams = dict(checkpoint.get("hyper_parameters") or {})
        hparams.pop("_instantiator", None)
        if not hparams:
            return
        configured = copy.deepcopy(self.config[subcommand].model)
        super()._parse_ckpt_path()
        restored = self.config[subcommand].model
        conflicts = config_conflicts(configured, restored, ignore=NOT_COMPARED)
        if conflicts:
            raise CheckpointError(describe_conflicts(ckpt_path, conflicts, "model."))
        print(
            f"{subcommand}: model hyper-parameters restored from {ckpt_path} "
            "(all equal to the config's)",
            file=sys.stderr,
        )

    def _keep_existing_config(self, config, subcommand: str) -> None:
        """A run folder named explicitly (``logger.init_args.version``) that already holds a
        config.yaml keeps it; this command's config goes beside it."""
        init_args = _first_logger_args(config.trainer.get("logger"))
        if init_args is None or init_args.get("version") is None:
            return
        run_dir = runs.run_dir(
            init_args.get("save_dir", "logs"), init_args.get("name"), init_args.get("version")
        )
        if (run_dir / runs.CONFIG).exists():
            self._save_config_beside(run_dir, "resumed" if subcommand == "fit" else subcommand)

    def _resolve_last(self, config, subcommand: str) -> None:
        """Resume (or evaluate) the newest run of this experiment, in its own version folder.

        Lightning looks for ``last`` in the *new* run's checkpoint folder, which is empty; here we
        find the previous run's ``last.ckpt`` and keep logging into that run's version.
        """
        init_args = _first_logger_args(config.trainer.get("logger"))
        if init_args is None:
            raise UsageError("--ckpt_path last needs a logger that names the run folder")
        save_dir, name = init_args.get("save_dir", "logs"), init_args.get("name", "")
        found = runs.find_last_checkpoint(save_dir, name)
        if found is None:
            if subcommand in EVALUATING:
                raise UsageError(
                    f"--ckpt_path last: no run of {name!r} under {save_dir} has a checkpoint; "
                    f"train it first or pass the checkpoint's path"
                )
            print(
                f"ckpt_path=last: no previous run of {name!r} under {save_dir}; starting from "
                "scratch",
                file=sys.stderr,
            )
            config.ckpt_path = None
            return
        ckpt, version = found
        self._read_checkpoint(ckpt)
        config.ckpt_path = str(ckpt)
        if init_args.get("version") is None:
            init_args.version = version
            # The run's config.yaml stays as written; this command's config goes beside it.
            self._save_config_beside(
                ckpt.parent.parent, "resumed" if subcommand == "fit" else subcommand
            )

    def _log_into_checkpoint_run(self, config, subcommand: str, ckpt: Path) -> None:
        """Test or predict a checkpoint of ``<save_dir>/<name>/version_N`` in that run's folder.

        So a run's folder holds its test metrics (and HParams row) beside its training curves.
        ``validate`` is left to a new folder: its ``val/*`` points would land in the run's curves.
        """
        init_args = _first_logger_args(config.trainer.get("logger"))
        if init_args is None or init_args.get("version") is not None:
            return
        run_dir = runs.run_of_checkpoint(ckpt)
        number = runs.version_number(run_dir) if run_dir is not None else None
        experiment = Path(init_args.get("save_dir", "logs"), init_args.get("name") or "")
        if number is None or run_dir.parent != experiment.resolve():
            return
        init_args.version = number
        self._save_config_beside(run_dir, subcommand)

    def _save_config_beside(self, run_dir: Path, what: str) -> None:
        """Save this command's config as a new ``config.<what>-<time>[-n].yaml`` in ``run_dir``."""
        self.save_config_kwargs["config_filename"] = runs.extra_config_name(run_dir, what)

    # -- before instantiating: what the data decides ---------------------------------------------
    def before_instantiate_classes(self) -> None:
        """Give the backbone the dataset's number of classes and input size, like the links above.

        A jsonargparse link cannot target the arguments of a builder function such as
        ``selab.models.resnet20`` or ``torchvision.models.resnet50``, so this sets them directly.
        """
        config = self.config[self.subcommand] if self.subcommand else self.config
        # The HParams callback logs real hp/* metrics; Lightning's placeholder hp_metric = -1 goes.
        for logger in _logger_configs(config.trainer.get("logger")):
            if str(logger.get("class_path", "")).endswith("TensorBoardLogger"):
                logger.init_args.default_hp_metric = False
        self._data_into_backbone(config)
        precision, notice = training_precision(
            config.trainer.get("precision"), config.trainer.get("accelerator"), config.cpu_bf16
        )
        if notice:
            print(notice, file=sys.stderr)
            config.trainer.precision = precision
        # Every TensorBoard run also gets an appending CSV log, in the same version folder,
        # claimed now so that runs started together never share one.
        config.trainer.logger = runs.with_csv_twin(config.trainer.get("logger"))
        runs.pin_logger_versions(_logger_configs(config.trainer.get("logger")))

    @staticmethod
    def _data_into_backbone(config) -> None:
        data = VisionDataModule(**config.data.as_dict())
        init_args = getattr(config.model.backbone, "init_args", None)
        if init_args is not None and "num_classes" in init_args:
            init_args.num_classes = data.num_classes
        if init_args is not None and "image_size" in init_args:
            height, width = data.image_shape
            if height != width:
                raise UsageError(
                    f"{config.model.backbone.class_path} takes square images, the data gives "
                    f"{height}x{width}: set --data.image_size N"
                )
            init_args.image_size = height

    # -- before running: the checkpoint and the input fit the network ----------------------------
    def _read_checkpoint(self, path: str | Path) -> dict:
        """The checkpoint, read once per command however many checks look at it."""
        cache = self.__dict__.setdefault("_checkpoints", {})
        key = str(Path(path).resolve())
        if key not in cache:
            cache[key] = read_checkpoint(path)
        return cache[key]

    def _check_model(self) -> None:
        config = self.config[self.subcommand]
        if self.subcommand == "fit" and config.trainer.get("log_every_n_steps") is None:
            self.trainer.callbacks.append(EpochLogInterval())
        if isinstance(self.trainer.checkpoint_callback, ModelCheckpoint):
            self.trainer.checkpoint_callback.resuming = bool(config.get("ckpt_path"))
        check_input_size(self.model, self.datamodule)
        ckpt_path = config.get("ckpt_path")
        if ckpt_path and Path(ckpt_path).is_file():
            check_state_dict(self.model, self._read_checkpoint(ckpt_path), ckpt_path)
        self.__dict__.pop("_checkpoints", None)  # Lightning loads it again to run; free this copy

    before_fit = before_validate = before_test = before_predict = _check_model


def check_input_size(model: torch.nn.Module, datamodule: VisionDataModule) -> None:
    """Run the backbone on a meta-device batch of the data's shape: a network that cannot take
    these images fails here, in one line, not deep inside the first training step."""
    backbone = getattr(model, "backbone", model)
    height, width = datamodule.image_shape
    try:
        with torch.no_grad():
            shadow = copy.deepcopy(backbone).to("meta").eval()
            # forward, not __call__: a compiled backbone is not compiled again for this
            logits = shadow.forward(torch.empty(2, 3, height, width, device="meta"))
    except (RuntimeError, ValueError) as error:
        if "meta" in str(error).lower():
            return  # an operation without a meta kernel: the first real step will tell
        raise UsageError(
            f"{type(backbone).__name__} cannot take the data's {height}x{width} images "
            f"({str(error).splitlines()[0]}); set --data.image_size to a size it accepts"
        ) from error
    if logits.ndim != 2 or logits.shape[1] != model.num_classes:
        raise UsageError(
            f"{type(backbone).__name__} gives outputs of shape {tuple(logits.shape)} for "
            f"{height}x{width} images, not (batch, {model.num_classes})"
        )


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
    for logger in _logger_configs(config.trainer.get("logger")):
        init_args = logger.get("init_args")
        if init_args is None:
            continue
        # MLFlowLogger has no ``name``: its run (within the configured experiment) takes it.
        key = "run_name" if "experiment_name" in init_args else "name"
        if init_args.get(key) in (None, "default", "lightning_logs"):
            init_args[key] = name


def _logger_configs(logger) -> list:
    """The logger entries of a parsed ``trainer.logger`` (one, a list, or none)."""
    entries = logger if isinstance(logger, list) else [logger]
    return [e for e in entries if e is not None and not isinstance(e, bool) and hasattr(e, "get")]


def _first_logger_args(logger):
    """``init_args`` of the first logger entry, whose folder is the run's (``trainer.log_dir``)."""
    entries = _logger_configs(logger)
    return entries[0].get("init_args") if entries else None


# Warnings about Lightning's and torch's own internals or about choices selab already made.
QUIET_WARNINGS = (
    # given the command line with a run's config added (with_run_config)
    r"LightningCLI's args parameter is intended to run from within Python",
    r".*isinstance\(treespec, LeafSpec\).*",
    r".*does not have many workers.*",
    r".*smaller than the logging interval.*",
    r".*The `srun` command is available on your system.*",
)


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
    if Path(filename).resolve().is_relative_to(Path(__file__).resolve().parent):
        return f"warning: {message}\n"
    return _next(message, category, filename, lineno, line)


def quiet_warnings() -> None:
    for message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")
    rank_zero_log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _QuietInfo) for f in rank_zero_log.filters):
        patterns = QUIET_INFO if torch.cuda.is_available() else QUIET_INFO + QUIET_INFO_WITHOUT_GPU
        rank_zero_log.addFilter(_QuietInfo(patterns))
    if not isinstance(warnings.formatwarning, functools.partial):
        warnings.formatwarning = functools.partial(_format_warning, _next=warnings.formatwarning)


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


def run(args=None, **kwargs) -> SelabCLI:
    """Run the CLI in-process (``args`` as on the command line) and return it for inspection."""
    quiet_warnings()
    argv = list(sys.argv[1:] if args is None else args)
    if all(isinstance(arg, str) for arg in argv):
        rewritten = with_run_config(argv)
        if rewritten != argv:
            args = rewritten
    parser_kwargs = {
        "prog": prog_name(),
        "description": HELP.split("\n\n")[1].replace("\n", " "),
        "exit_on_error": False,
        "allow_abbrev": False,
        **kwargs.pop("parser_kwargs", {}),
    }
    if args is not None and list(args) == sys.argv[1:]:
        args = None  # the command line itself; LightningCLI warns when given it twice
    return SelabCLI(
        Classifier,
        VisionDataModule,
        trainer_defaults=TRAINER_DEFAULTS,
        auto_configure_optimizers=False,  # the optimizer is model.optimizer, in one place
        parser_kwargs=parser_kwargs,
        args=args,
        **kwargs,
    )


def outcome(cli: SelabCLI) -> str | None:
    """One line on what a finished command wrote: the run folder and its best or last metric."""
    trainer, subcommand = cli.trainer, cli.subcommand
    if subcommand is None:
        return None
    if trainer.fast_dev_run:
        return f"{subcommand}: fast_dev_run, nothing written"
    metrics = trainer.callback_metrics
    folder = trainer.log_dir if trainer.loggers else None
    parts = [f"{subcommand}: run folder {os.path.relpath(folder)}" if folder else subcommand + ":"]
    if subcommand == "fit":
        checkpoint = trainer.checkpoint_callback
        if checkpoint is not None and checkpoint.best_model_score is not None:
            parts.append(f"best {checkpoint.monitor} {_metric(checkpoint.best_model_score)}")
        if "val/acc_top1" in metrics:
            parts.append(f"last val/acc_top1 {_metric(metrics['val/acc_top1'])}")
    elif subcommand in ("test", "validate"):
        stage = "test" if subcommand == "test" else "val"
        parts += [
            f"{key} {_metric(metrics[key])}"
            for key in (f"{stage}/acc_top1", f"{stage}/loss")
            if key in metrics
        ]
    elif subcommand == "predict":
        writer = next((c for c in trainer.callbacks if isinstance(c, PredictionWriter)), None)
        if writer is not None and writer.written is not None:
            parts.append(f"predictions in {os.path.relpath(writer.written)}")
    return parts[0] + " " + "; ".join(parts[1:]) if parts[0].endswith(":") else "; ".join(parts)


def _metric(value) -> str:
    return f"{float(value):.4f}"


_trainers: list = []  # the command's Trainer (a weak reference): did it take a training step?


def discard_untrained_run() -> None:
    """After a failure before the first training step, remove the run folder the command claimed
    (with its config, events and status): nothing in it is worth keeping."""
    trainer = _trainers[-1]() if _trainers else None
    if trainer is not None and trainer.global_step > 0:
        return
    runs.discard_claimed()


def one_line(error: BaseException) -> str:
    """The error's message on one line, without jsonargparse's indentation."""
    text = " ".join(part.strip() for part in str(error).splitlines() if part.strip())
    return text or type(error).__name__


def user_errors() -> tuple[type[BaseException], ...]:
    from .study import StudyError

    # DataError, CheckpointError, UsageError and StudyError are ValueErrors; named for the reader.
    # Lightning's MisconfigurationException: a Trainer option that cannot work with this data.
    return (argparse.ArgumentError, DataError, CheckpointError, UsageError, StudyError, OSError, ValueError, TypeError, MisconfigurationException)  # fmt: skip


def main(args=None) -> None:
    """Console entry point: a user's error prints one ``error:`` line and exits with status 2."""
    argv = sys.argv[1:] if args is None else list(args)
    debug = os.environ.get("SELAB_DEBUG", "") not in ("", "0")
    if not argv or argv[0] in ("-h", "--help"):
        print_help(file=None if argv else sys.stderr)
        sys.exit(0 if argv else 2)
    try:
        if argv and argv[0] in ("study", "runs"):  # selab's own commands, not LightningCLI's
            from . import study

            sys.exit((study.main if argv[0] == "study" else runs.main)(argv[1:]))
        line = outcome(run(argv))
        if line:
            print(line)
    except user_errors() as error:
        discard_untrained_run()
        if debug:
            raise
        print(f"error: {one_line(error)} (SELAB_DEBUG=1 shows the traceback)", file=sys.stderr)
        sys.exit(2)
    except BaseException:
        discard_untrained_run()
        raise
    finally:
        _trainers.clear()
        runs.release_unused()


if __name__ == "__main__":
    main()
