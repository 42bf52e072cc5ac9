"""Wide Residual Networks: Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016
(arXiv:1605.07146).

WRN-d-k: a 3x3 conv stem to 16 channels, three stages of ``n = (d - 4) / 6`` pre-activation basic
units (BN-ReLU-conv3x3-BN-ReLU-[dropout]-conv3x3) at ``16k / 32k / 64k`` channels and 32/16/8 px,
1x1 conv projections where the width or resolution changes, then BN-ReLU, global average pooling
and FC. WRN-16-8 has 11.0M parameters (the paper's Table 1 and the SE paper's CIFAR table);
``dropout`` is the paper's dropout between the two convs of each unit (0.3 in its best models,
0 by default and in the SE paper).

The unit is :class:`selab.models.preact_resnet.PreActBasicBlock`, so attention placement works as
in every other residual backbone.
"""

from __future__ import annotations

from ._registry import register_backbone
from .preact_resnet import PreActResNet


class WideResNet(PreActResNet):
    """WRN-``depth``-``widen_factor``; ``depth = 6n + 4``."""

    def __init__(self, depth: int = 16, widen_factor: int = 8, **kwargs) -> None:
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n + 4 with n >= 1 (10, 16, 28, ...), got {depth}")
        if widen_factor < 1:
            raise ValueError(f"widen_factor must be >= 1, got {widen_factor}")
        k = widen_factor
        super().__init__(
            block="basic",
            blocks_per_stage=(depth - 4) // 6,
            widths=(16 * k, 32 * k, 64 * k),
            stem_width=16,
            **kwargs,
        )
        self.depth, self.widen_factor = depth, widen_factor


@register_backbone
def wrn16_8(**kwargs) -> WideResNet:
    """WRN-16-8 (11.0M parameters); ``dropout`` between the convs of each unit."""
    return WideResNet(depth=16, widen_factor=8, **kwargs)


@register_backbone
def wrn28_10(**kwargs) -> WideResNet:
    """WRN-28-10 (36.5M parameters), the WRN paper's best CIFAR model."""
    return WideResNet(depth=28, widen_factor=10, **kwargs)
