"""CBAM: Convolutional Block Attention Module.

Woo, Park, Lee, Kweon: "CBAM: Convolutional Block Attention Module", ECCV 2018 (arXiv:1807.06521).

- ``cbam_channel`` (section 3.1): average- and max-pooled descriptors through one shared MLP, the
  two outputs *summed before* a single sigmoid: ``x * sigmoid(fc(avg) + fc(max))``. The MLP is
  SE's bottleneck (same width rule, options and 1x1-conv weights); with biases, as in the authors'
  code, each of the two MLP passes adds its biases.
- ``cbam`` (section 3.2, sequential channel-then-spatial order): the channel attention followed by
  the spatial attention ``x * sigmoid(bn(conv7x7([mean_c(x); max_c(x)])))``, where the two maps are
  the mean and max over channels. The authors' code (and timm) follow the bias-free 7x7 conv with a
  BatchNorm, which the paper's formula omits; we keep it so results match the released models.
  ``gate`` applies to the channel attention only; the spatial gate is always a sigmoid.
"""

from __future__ import annotations

import torch
from torch import nn

from .create_attn import register_attention
from .squeeze_excite import SqueezeExcite, avg_pool, max_pool


@register_attention("cbam_channel")
class CbamChannelAttention(SqueezeExcite):
    """CBAM's channel attention: ``gate(fc(avg) + fc(max))``."""

    def excitation(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(self.bottleneck(avg_pool(x)) + self.bottleneck(max_pool(x)))


class CbamSpatialAttention(nn.Module):
    """CBAM's spatial attention: a k x k conv (+ BN) over the channel-mean and channel-max maps."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"spatial_kernel must be odd and >= 1, got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1)

    def excitation(self, x: torch.Tensor) -> torch.Tensor:
        """The per-position gate, shape (N, 1, H, W)."""
        maps = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        return torch.sigmoid(self.bn(self.conv(maps)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.excitation(x)


@register_attention("cbam")
class Cbam(CbamChannelAttention):
    """CBAM: channel attention, then spatial attention with a ``spatial_kernel`` conv (7 in the paper)."""

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        min_hidden: int = 8,
        gate: str = "sigmoid",
        bias: bool = True,
        spatial_kernel: int = 7,
    ) -> None:
        super().__init__(channels, reduction, min_hidden, gate, bias)
        self.spatial = CbamSpatialAttention(spatial_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(x * self.excitation(x))
