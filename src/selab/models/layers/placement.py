"""Where attention sits in a residual block: the SE paper's integration ablation.

Hu et al. 2018, section 6.5 / Fig. 5: ``standard`` (SE at the end of the residual branch, before
the addition), ``pre`` (at the start of the residual branch), ``post`` (after the addition and the
block's final activation) and ``identity`` (on the shortcut, in parallel to the residual branch).
Every residual block in selab runs through :func:`residual_forward`, so each backbone offers all
four positions with the same meaning.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

POSITIONS = ("standard", "pre", "post", "identity")


def check_position(position: str) -> str:
    if position not in POSITIONS:
        raise ValueError(
            f"unknown attention position {position!r}; choose one of {', '.join(POSITIONS)}"
        )
    return position


def attention_channels(position: str, in_channels: int, out_channels: int) -> int:
    """Width of the feature map the attention module sees at ``position``."""
    return in_channels if check_position(position) == "pre" else out_channels


def attach_attention(
    block: nn.Module, spec, stage: int | None, in_channels: int, out_channels: int
) -> None:
    """Give a residual block its ``attention`` module (``nn.Identity`` outside the spec's stages)
    and ``attention_position``, for :func:`residual_forward`."""
    block.attention_position = spec.position
    block.attention = spec.create(
        attention_channels(spec.position, in_channels, out_channels), stage
    )


def residual_forward(
    x: torch.Tensor,
    branch: Callable[[torch.Tensor], torch.Tensor],
    shortcut: Callable[[torch.Tensor], torch.Tensor],
    attention: Callable[[torch.Tensor], torch.Tensor],
    position: str,
    activation: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """``activation(branch(x) + shortcut(x))`` with ``attention`` applied at ``position``.

    ``activation`` is the block's final non-linearity (ReLU for post-activation ResNets, None for
    pre-activation blocks, which end at the addition).
    """
    identity = shortcut(x)
    out = branch(attention(x) if position == "pre" else x)
    if position == "standard":
        out = attention(out)
    elif position == "identity":
        identity = attention(identity)
    out = out + identity
    if activation is not None:
        out = activation(out)
    return attention(out) if position == "post" else out
