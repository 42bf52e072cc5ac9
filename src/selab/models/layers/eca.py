"""ECA: Efficient Channel Attention.

Wang, Wu, Zhu, Li, Zuo, Hu: "ECA-Net: Efficient Channel Attention for Deep Convolutional Neural
Networks", CVPR 2020 (arXiv:1910.03151). No dimensionality reduction: the average-pooled descriptor
goes through a 1D convolution *across channels* (local cross-channel interaction, bias-free, zero
padded) and a sigmoid. The kernel size adapts to the width,
``k = |log2(C) / gamma + beta / gamma|_odd`` with gamma = 2, beta = 1, computed as in the authors'
code: truncate to an integer, then take the next odd number if it is even. The module has ``k``
parameters and no ``reduction``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .create_attn import register_attention
from .squeeze_excite import avg_pool, create_gate


def eca_kernel_size(channels: int, gamma: int = 2, beta: int = 1) -> int:
    """ECA's adaptive kernel size for ``channels`` (3 for 16-64 channels, 5 for 128-1024)."""
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    t = int(abs(math.log2(channels) + beta) / gamma)
    return t if t % 2 else t + 1


@register_attention("eca")
class EfficientChannelAttention(nn.Module):
    """ECA: global average pool -> 1D conv of size k across channels -> gate -> rescale.

    ``kernel_size`` overrides the adaptive size (must be odd, so channel c sees the same number of
    neighbours on both sides).
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int | None = None,
        gamma: int = 2,
        beta: int = 1,
        gate: str = "sigmoid",
    ) -> None:
        super().__init__()
        if kernel_size is None:
            kernel_size = eca_kernel_size(channels, gamma, beta)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 1, got {kernel_size}")
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.gate = create_gate(gate)

    def excitation(self, x: torch.Tensor) -> torch.Tensor:
        """The per-channel gate, shape (N, C, 1, 1)."""
        descriptor = avg_pool(x).view(x.shape[0], 1, x.shape[1])  # channels as a 1D sequence
        return self.gate(self.conv(descriptor)).view(x.shape[0], x.shape[1], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.excitation(x)
