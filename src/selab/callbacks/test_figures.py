"""Figures of a test run: confusion matrix and per-class accuracy with class names."""

from __future__ import annotations

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only

from .. import analysis
from ._tensorboard import tensorboard_logger


class TestFigures(Callback):
    """``test/confusion_matrix`` (rows: true class, normalised per row) and
    ``test/per_class_accuracy`` in TensorBoard's Images tab, after ``lightning test``.

    Reads the ``confusion_matrix`` the ``Classifier`` computes at the end of the test epoch and the
    ``test/acc_class/<name>`` metrics it logs.

    Args:
        enabled: ``--test_figures.enabled false`` switches it off.
    """

    __test__ = False  # not a pytest class, despite its name

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    @rank_zero_only
    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        logger = tensorboard_logger(trainer)
        if not self.enabled or logger is None:
            return
        names = list(getattr(pl_module, "class_names", []) or [])
        confusion = getattr(pl_module, "confusion_matrix", None)
        writer, step = logger.experiment, trainer.global_step
        if confusion is not None and names:
            figure = analysis.plot_confusion(confusion, names)
            writer.add_figure("test/confusion_matrix", figure, step, close=False)
        metrics = trainer.callback_metrics
        per_class = {
            name: float(metrics[f"test/acc_class/{name}"])
            for name in names
            if f"test/acc_class/{name}" in metrics
        }
        if per_class:
            figure = analysis.plot_per_class(per_class, "per-class test accuracy")
            writer.add_figure("test/per_class_accuracy", figure, step, close=False)
