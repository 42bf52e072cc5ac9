"""Squeeze-and-Excitation block.

Hu, Shen, Albanie, Sun, Wu: "Squeeze-and-Excitation Networks", CVPR 2018 (arXiv:1709.01507).
Squeeze: global average pooling to one descriptor per channel. Excitation: a bottleneck of two
fully connected layers (C -> C/r -> C) with ReLU between and a sigmoid gate that rescales the
input channel by channel. The FC layers are 1x1 convolutions (as in timm and torchvision), which is
the same arithmetic on a (N, C, 1, 1) descriptor and keeps ``channels_last`` inputs in that layout.

The other pooled-descriptor variants (``se_max``, ``se_avgmax_*``, ``se_dual_*``, ``cbam_channel``,
``ca_conv``) subclass :class:`SqueezeExcite` and only change how descriptors reach the bottleneck,
so the MLP, the hidden-width rule and the gate options are this file's alone.
"""

from __future__ import annotations

import torch
from torch import nn

from .create_attn import register_attention

GATES = {"sigmoid": nn.Sigmoid, "hard_sigmoid": nn.Hardsigmoid, "tanh": nn.Tanh}


def avg_pool(x: torch.Tensor) -> torch.Tensor:
    """Global average pooling to (N, C, 1, 1): SE's squeeze."""
    return x.mean((2, 3), keepdim=True)


def max_pool(x: torch.Tensor) -> torch.Tensor:
    """Global max pooling to (N, C, 1, 1)."""
    return x.amax((2, 3), keepdim=True)


def hidden_channels(channels: int, reduction: int, min_hidden: int = 8) -> int:
    """Bottleneck width ``C // r``, floored at ``min_hidden`` (and never wider than ``C``).

    The floor keeps the 16-channel stages of CIFAR ResNets from collapsing to a single unit when
    r = 16; pass ``min_hidden=1`` for the paper's plain ``C // r``.
    """
    if channels < 1 or reduction < 1 or min_hidden < 1:
        raise ValueError(
            f"channels, reduction and min_hidden must be >= 1, got {channels}, {reduction}, "
            f"{min_hidden}"
        )
    return min(channels, max(channels // reduction, min_hidden))


def create_gate(name: str) -> nn.Module:
    try:
        return GATES[name]()
    except KeyError:
        raise ValueError(f"unknown gate {name!r}; choose one of {', '.join(GATES)}") from None


@register_attention("se")
class SqueezeExcite(nn.Module):
    """SE: global average pool -> FC C->C/r -> ReLU -> FC C/r->C -> gate -> rescale."""

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        min_hidden: int = 8,
        gate: str = "sigmoid",
        bias: bool = True,
    ) -> None:
        super().__init__()
        hidden = hidden_channels(channels, reduction, min_hidden)
        self.fc1 = nn.Conv2d(channels, hidden, kernel_size=1, bias=bias)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, kernel_size=1, bias=bias)
        self.gate = create_gate(gate)

    def bottleneck(self, descriptor: torch.Tensor) -> torch.Tensor:
        """FC C->h, ReLU, FC h->C on a (N, C, 1, 1) descriptor, before the gate."""
        return self.fc2(self.act(self.fc1(descriptor)))

    def excitation(self, x: torch.Tensor) -> torch.Tensor:
        """The per-channel gate, shape (N, C, 1, 1); analysis code hooks this."""
        return self.gate(self.bottleneck(avg_pool(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.excitation(x)
