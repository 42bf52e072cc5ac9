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

Modules: :mod:`~selab.cli.lightning_cli` (:class:`SelabCLI`: parsing, checks, what the data
decides before instantiation), :mod:`~selab.cli.arguments` (run names, a run's own config for a
command on its checkpoint), :mod:`~selab.cli.entry` (:func:`run`, :func:`main`),
:mod:`~selab.cli.errors`, :mod:`~selab.cli.help` and :mod:`~selab.cli.quiet` (warnings and log
lines).
"""

from ..checkpoints import CheckpointError
from .arguments import EVALUATING, PRESET_FOLDERS, experiment_name, name_experiment, with_run_config
from .entry import discard_untrained_run, main, outcome, run
from .errors import UsageError, one_line, user_errors
from .help import HELP, SUBCOMMAND_HELP, print_help, prog_name
from .lightning_cli import NOT_COMPARED, TRAINER_DEFAULTS, SelabCLI, check_input_size
from .quiet import quiet_warnings

__all__ = [
    "EVALUATING",
    "HELP",
    "NOT_COMPARED",
    "PRESET_FOLDERS",
    "SUBCOMMAND_HELP",
    "TRAINER_DEFAULTS",
    "CheckpointError",
    "SelabCLI",
    "UsageError",
    "check_input_size",
    "discard_untrained_run",
    "experiment_name",
    "main",
    "name_experiment",
    "one_line",
    "outcome",
    "print_help",
    "prog_name",
    "quiet_warnings",
    "run",
    "user_errors",
    "with_run_config",
]
