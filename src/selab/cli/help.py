"""``selab --help``: the commands in one screen, and the command's name as typed."""

from __future__ import annotations

import sys
from pathlib import Path

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
