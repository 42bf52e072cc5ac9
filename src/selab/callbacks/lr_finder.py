"""Lightning's learning-rate range test from the CLI: the suggestion and its plot in the run.

``lightning fit --config <recipe>.yaml --config configs/presets/lr_find.yaml`` runs the range
test (Smith 2017, "Cyclical Learning Rates") before training: the learning rate grows
exponentially over ``num_training_steps`` steps while the loss is recorded, and the steepest
descent of the smoothed loss is suggested. The suggestion is printed and written with the curve to
``lr_find.csv`` and ``lr_find.png`` in the run folder; the model's optimizer keeps its configured
learning rate (``update_attr: false``), so the suggestion is a number to put in the config.
"""

from __future__ import annotations

import sys

import pandas as pd
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import LearningRateFinder as LightningLearningRateFinder

from .. import runs


class LearningRateFinder(LightningLearningRateFinder):
    """``LearningRateFinder`` that reports its suggestion instead of setting an attribute."""

    def __init__(
        self,
        min_lr: float = 1e-6,
        max_lr: float = 1.0,
        num_training_steps: int = 100,
        mode: str = "exponential",
        early_stop_threshold: float | None = 4.0,
    ) -> None:
        super().__init__(
            min_lr=min_lr,
            max_lr=max_lr,
            num_training_steps=num_training_steps,
            mode=mode,
            early_stop_threshold=early_stop_threshold,
            update_attr=False,
        )

    def lr_find(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().lr_find(trainer, pl_module)
        result = self.optimal_lr
        if result is None or not trainer.is_global_zero:
            return
        suggestion = result.suggestion()
        print(f"lr_find: suggested learning rate {suggestion:.3g}", file=sys.stderr)
        log_dir = trainer.log_dir
        if log_dir is None:
            return
        table = pd.DataFrame({"lr": result.results["lr"], "loss": result.results["loss"]})
        runs.atomic_write_text(f"{log_dir}/lr_find.csv", table.to_csv(index=False))
        figure = result.plot(suggest=True)
        figure.savefig(f"{log_dir}/lr_find.png", dpi=100)
