"""Callbacks: what a run shows besides the scalars the Classifier logs, and weight averaging.

Each is one small module; the ``lightning`` command registers the TensorBoard ones in every run
(CLI groups in brackets, each with ``enabled``):

- :class:`HParams` (``hparams``): the HParams tab, ``hp/best_val_acc_top1``, ``hp/test_acc_top*``.
- :class:`CostSummary` (``summary``): parameters and MACs per part, ``model/summary``.
- :class:`ModelGraph` (``graph``): the graph.
- :class:`Throughput` (``throughput``): Lightning's ``ThroughputMonitor``, images/s.
- :class:`FitTimer` (``timer``): Lightning's ``Timer``, ``time/fit_elapsed_s``.
- :class:`TestFigures` (``test_figures``): confusion matrix and per-class accuracy at test.
- :class:`ExcitationMonitor` (``excitation``): attention gate statistics after each validation.
- :class:`ProgressLoss` (``progress``): the training loss on the progress bar, without syncs.

The TensorBoard ones write only to a ``TensorBoardLogger`` and do nothing without one.
Opt-in, through ``trainer.callbacks``: :class:`EMAWeightAveraging`, :class:`Lookahead` and
:class:`ReloadBestOnLRDrop`.
"""

from .ema import EMAWeightAveraging
from .excitation import ExcitationMonitor
from .graph import ModelGraph
from .hparams import HP_METRICS, HParams, run_hyperparameters
from .lookahead import Lookahead
from .lr_finder import LearningRateFinder
from .progress import ProgressLoss
from .reload_best import ReloadBestOnLRDrop
from .summary import CostSummary
from .test_figures import TestFigures
from .throughput import Throughput
from .timing import FitTimer

__all__ = [
    "HP_METRICS",
    "CostSummary",
    "EMAWeightAveraging",
    "ExcitationMonitor",
    "FitTimer",
    "HParams",
    "LearningRateFinder",
    "Lookahead",
    "ModelGraph",
    "ProgressLoss",
    "ReloadBestOnLRDrop",
    "TestFigures",
    "Throughput",
    "run_hyperparameters",
]
