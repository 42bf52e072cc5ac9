"""``ca_conv``: channel attention with 1x1 convolutions and no reduction.

The variant of the course study on the small VGG: global average pooling, a 1x1 conv C->C, ReLU, a
1x1 conv C->C and a sigmoid, rescaling the input channel by channel. It is SE (Hu et al.,
arXiv:1709.01507) with the bottleneck removed (hidden width C, 2 C^2 + 2 C parameters with biases),
so it reuses :class:`SqueezeExcite` and takes no ``reduction``.
"""

from __future__ import annotations

from .create_attn import register_attention
from .squeeze_excite import SqueezeExcite


@register_attention("ca_conv")
class ConvChannelAttention(SqueezeExcite):
    """Global average pool -> 1x1 conv C->C -> ReLU -> 1x1 conv C->C -> gate -> rescale."""

    def __init__(self, channels: int, gate: str = "sigmoid", bias: bool = True) -> None:
        super().__init__(channels, reduction=1, min_hidden=1, gate=gate, bias=bias)
