"""Lightning's model summary table without its FLOPs column and "Total Flops" line.

Lightning counts FLOPs only for modules with an ``example_input_array`` and prints 0 otherwise;
selab's ``CostSummary`` counts MACs on a real batch, so the 0 would only mislead.
"""

from __future__ import annotations

import logging
from typing import Any

from lightning.pytorch.callbacks import ModelSummary as LightningModelSummary
from lightning.pytorch.utilities.model_summary.model_summary import _format_summary_table

log = logging.getLogger("lightning.pytorch.callbacks.model_summary")


class ModelSummary(LightningModelSummary):
    """``ModelSummary`` printing parameters, sizes and modes, not the FLOPs it did not count."""

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int,
        **summarize_kwargs: Any,
    ) -> None:
        columns = [column for column in summary_data if column[0] != "FLOPs"]
        table = _format_summary_table(
            total_parameters,
            trainable_parameters,
            model_size,
            total_training_modes,
            total_flops,
            *columns,
        )
        lines = [line for line in table.splitlines() if "Total Flops" not in line]
        log.info("\n" + "\n".join(lines))
