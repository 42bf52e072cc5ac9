"""Stacking residual blocks into stages, shared by the CIFAR-style backbones."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from .layers.placement import stage_attention


def attention_options(attention: str, reduction: int, attention_kwargs: dict | None) -> dict:
    """The options every block passes to ``create_attention`` (none for ``attention="none"``)."""
    return {} if attention == "none" else {"reduction": reduction, **(attention_kwargs or {})}


def stack_stages(
    in_channels: int,
    out_channels: Sequence[int],
    blocks_per_stage: int,
    make_block: Callable[[int, int, int, str], nn.Module],
    attention: str = "none",
    attention_stages: Sequence[int] | None = None,
) -> tuple[nn.Sequential, int]:
    """``len(out_channels)`` stages of ``blocks_per_stage`` blocks; every stage after the first
    halves the resolution in its first block (He et al.'s CIFAR layout).

    ``make_block(in_channels, stage_index, stride, attention)`` builds one block whose output has
    ``out_channels[stage_index]`` channels; ``attention`` is already "none" outside
    ``attention_stages`` (1-based). Returns the stages and the final width.
    """
    stages, channels = [], in_channels
    for index, width in enumerate(out_channels):
        stage_attn = stage_attention(attention, index + 1, attention_stages)
        blocks = []
        for i in range(blocks_per_stage):
            stride = 2 if index > 0 and i == 0 else 1
            blocks.append(make_block(channels, index, stride, stage_attn))
            channels = width
        stages.append(nn.Sequential(*blocks))
    return nn.Sequential(*stages), channels
