"""Where attention sits in a residual block: the SE paper's integration ablation.

Hu et al. 2018, section 6.5 / Fig. 5: ``standard`` (SE at the end of the residual branch, before
the addition), ``pre`` (at the start of the residual branch), ``post`` (after the addition and the
block's final activation) and ``identity`` (on the shortcut, in parallel to the residual branch).
Every residual block in selab runs through :func:`residual_forward`, so each backbone offers all
four positions with the same meaning.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

POSITIONS = ("standard", "pre", "post", "identity")


def check_position(position: str) -> str:
    if position not in POSITIONS:
        raise ValueError(
            f"unknown attention_position {position!r}; choose one of {', '.join(POSITIONS)}"
        )
    return position


def attention_channels(position: str, in_channels: int, out_channels: int) -> int:
    """Width of the feature map the attention module sees at ``position``."""
    return in_channels if check_position(position) == "pre" else out_channels


def stage_attention(attention: str, stage: int, stages: Sequence[int] | None) -> str:
    """``attention`` for 1-based ``stage`` if it is among ``stages`` (all when None), else none."""
    return attention if stages is None or stage in stages else "none"


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
