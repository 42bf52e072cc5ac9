"""The ``lightning`` / ``selab`` command: LightningCLI over ``Classifier`` and ``VisionDataModule``."""

from __future__ import annotations

import re
import sys
import time
import zipfile
from pathlib import Path

import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from .callbacks import Dashboard, ExcitationMonitor
from .classifier import Classifier
from .data import DatasetNotFoundError, VisionDataModule
from .predict import PredictionWriter

TRAINER_DEFAULTS = {
    "logger": {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        "init_args": {"save_dir": "logs", "name": "default", "default_hp_metric": False},
    },
}


class CheckpointError(RuntimeError):
    """A ``--ckpt_path`` that cannot be used; the message says why and what to do."""


def check_checkpoint(path: str | Path) -> Path:
    """Fail early, with advice, on a missing, truncated or non-Lightning checkpoint."""
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
            f"checkpoint {path} could not be loaded ({error}); it is corrupt"
        ) from error
    if "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} has no 'state_dict': it is not a Lightning checkpoint")
    return path


def find_last_checkpoint(save_dir: str | Path, name: str) -> tuple[Path, int] | None:
    """The newest ``last.ckpt`` under ``save_dir/name/version_N/checkpoints`` and its N."""
    runs = []
    for ckpt in Path(save_dir, name).glob("version_*/checkpoints/last*.ckpt"):
        match = re.fullmatch(r"version_(\d+)", ckpt.parent.parent.name)
        if match:
            runs.append((ckpt.stat().st_mtime, int(match.group(1)), ckpt))
    if not runs:
        return None
    _, version, ckpt = max(runs)
    return ckpt, version


class SelabCLI(LightningCLI):
    """LightningCLI with selab's data->model links, checkpointing and resume defaults."""

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
        # TensorBoard dashboards and ``lightning predict`` to CSV, on in every run (issue 6).
        parser.add_lightning_class_args(Dashboard, "dashboard")
        parser.add_lightning_class_args(ExcitationMonitor, "excitation")
        parser.add_lightning_class_args(PredictionWriter, "predictions")

    def before_instantiate_classes(self) -> None:
        """Give the backbone the dataset's number of classes, like the links above.

        A jsonargparse link cannot target the arguments of a builder function such as
        ``selab.models.resnet20`` or ``torchvision.models.resnet50``, so this sets it directly.
        """
        config = self.config[self.subcommand] if self.subcommand else self.config
        # The Dashboard logs real hp/* metrics; Lightning's placeholder hp_metric = -1 goes.
        for logger in _logger_configs(config.trainer.get("logger")):
            if str(logger.get("class_path", "")).endswith("TensorBoardLogger"):
                logger.init_args.default_hp_metric = False
        init_args = getattr(config.model.backbone, "init_args", None)
        if init_args is not None and "num_classes" in init_args:
            init_args.num_classes = VisionDataModule(**config.data.as_dict()).num_classes

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        config = self.config[subcommand]
        self._keep_existing_config(config, subcommand)
        ckpt_path = config.get("ckpt_path")
        if ckpt_path == "last":
            self._resolve_last(config)
        elif ckpt_path not in (None, "best", "hpc", "registry"):
            check_checkpoint(ckpt_path)
            if subcommand in ("test", "predict"):
                self._log_into_checkpoint_run(config, subcommand, Path(ckpt_path))

    def _keep_existing_config(self, config, subcommand: str) -> None:
        """A run folder named explicitly (``logger.init_args.version``) that already holds a
        config.yaml keeps it; this command's config goes beside it."""
        init_args = getattr(config.trainer.get("logger"), "init_args", None)
        if init_args is None:
            entries = _logger_configs(config.trainer.get("logger"))
            init_args = entries[0].get("init_args") if entries else None
        if init_args is None or init_args.get("version") is None:
            return
        version = init_args.get("version")
        folder = version if isinstance(version, str) else f"version_{version}"
        run_dir = Path(init_args.get("save_dir", "logs"), init_args.get("name") or "", folder)
        if (run_dir / "config.yaml").exists():
            self._save_config_beside(run_dir, "resumed" if subcommand == "fit" else subcommand)

    def _resolve_last(self, config) -> None:
        """Resume the newest run of this experiment, in its own version folder.

        Lightning looks for ``last`` in the *new* run's checkpoint folder, which is empty; here we
        find the previous run's ``last.ckpt`` and keep logging into that run's version.
        """
        logger = config.trainer.get("logger")
        init_args = getattr(logger, "init_args", None)
        if init_args is None:
            return  # no TensorBoard logger config: leave "last" to Lightning
        found = find_last_checkpoint(init_args.get("save_dir", "logs"), init_args.get("name", ""))
        if found is None:
            print(
                f"ckpt_path=last: no previous run of {init_args.get('name')!r} under "
                f"{init_args.get('save_dir')}; starting from scratch",
                file=sys.stderr,
            )
            config.ckpt_path = None
            return
        ckpt, version = found
        config.ckpt_path = str(check_checkpoint(ckpt))
        if init_args.get("version") is None:
            init_args.version = version
            # The run's config.yaml stays as written; the resumed run's config goes beside it.
            self._save_config_beside(ckpt.parent.parent, "resumed")

    def _log_into_checkpoint_run(self, config, subcommand: str, ckpt: Path) -> None:
        """Test or predict a checkpoint of ``<save_dir>/<name>/version_N`` in that run's folder.

        So a run's folder holds its test metrics (and HParams row) beside its training curves.
        ``validate`` is left to a new folder: its ``val/*`` points would land in the run's curves.
        """
        init_args = getattr(config.trainer.get("logger"), "init_args", None)
        if init_args is None or init_args.get("version") is not None:
            return
        run_dir = ckpt.resolve().parent.parent
        match = re.fullmatch(r"version_(\d+)", run_dir.name)
        experiment = Path(init_args.get("save_dir", "logs"), init_args.get("name") or "")
        if ckpt.resolve().parent.name != "checkpoints" or not match:
            return
        if run_dir.parent != experiment.resolve():
            return
        init_args.version = int(match.group(1))
        self._save_config_beside(run_dir, subcommand)

    def _save_config_beside(self, run_dir: Path, what: str) -> None:
        """Save this command's config as a new ``config.<what>-<time>[-n].yaml`` in ``run_dir``."""
        stem = f"config.{what}-{time.strftime('%Y%m%d-%H%M%S')}"
        name, n = f"{stem}.yaml", 1
        while (run_dir / name).exists():  # two commands within one second
            n += 1
            name = f"{stem}-{n}.yaml"
        self.save_config_kwargs["config_filename"] = name


def _logger_configs(logger) -> list:
    """The logger entries of a parsed ``trainer.logger`` (one, a list, or none)."""
    entries = logger if isinstance(logger, list) else [logger]
    return [e for e in entries if e is not None and not isinstance(e, bool) and hasattr(e, "get")]


def run(args=None, **kwargs) -> SelabCLI:
    """Run the CLI in-process (``args`` as on the command line) and return it for inspection."""
    return SelabCLI(
        Classifier, VisionDataModule, trainer_defaults=TRAINER_DEFAULTS, args=args, **kwargs
    )


def main(args=None) -> None:
    """Console entry point: known user errors print one actionable line, not a traceback."""
    try:
        run(args)
    except (DatasetNotFoundError, CheckpointError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
