"""The console entry point: ``selab``/``lightning`` in-process (:func:`run`) or as a command
(:func:`main`), with one line on what it wrote or why it failed."""

from __future__ import annotations

import os
import signal
import sys

from lightning.pytorch.utilities.exceptions import SIGTERMException

from .. import runs
from ..classifier import Classifier
from ..data import VisionDataModule
from ..predict import PredictionWriter
from . import lightning_cli
from .arguments import with_run_config
from .errors import one_line, user_errors
from .help import HELP, print_help, prog_name
from .lightning_cli import TRAINER_DEFAULTS, SelabCLI
from .quiet import quiet_warnings


def run(args=None, **kwargs) -> SelabCLI:
    """Run the CLI in-process (``args`` as on the command line) and return it for inspection."""
    argv = list(sys.argv[1:] if args is None else args)
    quiet_warnings(argv[0] if argv and isinstance(argv[0], str) else None)
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


def discard_untrained_run() -> None:
    """After a failure before the first training step, remove the run folder the command claimed
    (with its config, events and status): nothing in it is worth keeping."""
    trainer = lightning_cli.TRAINERS[-1]() if lightning_cli.TRAINERS else None
    if trainer is not None and trainer.global_step > 0:
        return
    runs.discard_claimed()


def main(args=None) -> None:
    """Console entry point: a user's error prints one ``error:`` line and exits with status 2."""
    argv = sys.argv[1:] if args is None else list(args)
    debug = os.environ.get("SELAB_DEBUG", "") not in ("", "0")
    if not argv or argv[0] in ("-h", "--help"):
        print_help(file=None if argv else sys.stderr)
        sys.exit(0 if argv else 2)
    try:
        if argv and argv[0] in ("study", "runs"):  # selab's own commands, not LightningCLI's
            from .. import study

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
    except SIGTERMException:
        # Lightning ends the run gracefully and exits with status 0; a caller (a shell script, a
        # study cell) must not take a terminated run for a finished one.
        discard_untrained_run()
        print(f"{argv[0]}: stopped by SIGTERM", file=sys.stderr)
        sys.exit(128 + signal.SIGTERM)
    except BaseException:
        discard_untrained_run()
        raise
    finally:
        lightning_cli.TRAINERS.clear()
        runs.release_unused()
