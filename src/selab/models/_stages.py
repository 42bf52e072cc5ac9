"""Stacking residual blocks into stages, shared by the CIFAR-style backbones."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn


def stack_stages(
    in_channels: int,
    out_channels: Sequence[int],
    blocks_per_stage: int,
    make_block: Callable[[int, int, int], nn.Module],
) -> tuple[nn.Sequential, int]:
    """``len(out_channels)`` stages of ``blocks_per_stage`` blocks; every stage after the first
    halves the resolution in its first block (He et al.'s CIFAR layout).

    ``make_block(in_channels, stage, stride)`` builds one block of 1-based ``stage`` whose output
    has ``out_channels[stage - 1]`` channels. Returns the stages and the final width.
    """
    stages, channels = [], in_channels
    for stage, width in enumerate(out_channels, start=1):
        blocks = []
        for i in range(blocks_per_stage):
            stride = 2 if stage > 1 and i == 0 else 1
            blocks.append(make_block(channels, stage, stride))
            channels = width
        stages.append(nn.Sequential(*blocks))
    return nn.Sequential(*stages), channels
