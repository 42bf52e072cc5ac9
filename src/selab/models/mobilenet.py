"""MobileNetV1: Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile
Vision Applications", 2017 (arXiv:1704.04861), Table 1.

A 3x3/2 conv to 32 channels, then 13 depthwise-separable blocks (3x3 depthwise conv-BN-ReLU,
1x1 pointwise conv-BN-ReLU) at 64, 128, 128, 256, 256, 512 (x6), 1024, 1024 channels with five
stride-2 depthwise convs, global average pooling and one FC layer: 4.2M parameters at
``alpha = 1`` for 1000 classes (the paper's 4.2M, BN included). ``alpha`` is the width multiplier
(every layer's channels times ``alpha``, rounded down, as in the paper's Table 6).

Attention (SE, ...) follows the pointwise conv-BN-ReLU of each depthwise-separable block, as in
the STL10 study; ``attention_stages`` lists the 1-based blocks (of 13) that get it (all when None).

``stem`` picks the input size: ``imagenet`` (stride-2 stem: 224 px in, 7 px at the end) or
``stl`` (stride-1 stem for native 96 px STL10 images: 6 px at the end instead of 3, the same
network otherwise).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ._init import he_init_
from ._registry import register_backbone
from ._stages import attention_options
from .layers import create_attention
from .layers.placement import stage_attention

# (output channels, depthwise stride) of the 13 depthwise-separable blocks.
CONFIG = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)


def conv_bn_relu(in_channels: int, out_channels: int, kernel: int, stride: int, groups: int = 1):
    return nn.Sequential(
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel,
            stride=stride,
            padding=kernel // 2,
            groups=groups,
            bias=False,
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class DepthwiseSeparable(nn.Module):
    """3x3 depthwise conv-BN-ReLU, 1x1 pointwise conv-BN-ReLU, then attention."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        attention: str = "none",
        attention_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        self.depthwise = conv_bn_relu(in_channels, in_channels, 3, stride, groups=in_channels)
        self.pointwise = conv_bn_relu(in_channels, out_channels, 1, 1)
        self.attention = create_attention(attention, out_channels, **(attention_kwargs or {}))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(self.pointwise(self.depthwise(x)))


class MobileNetV1(nn.Module):
    def __init__(
        self,
        num_classes: int = 1000,
        alpha: float = 1.0,
        stem: Literal["imagenet", "stl"] = "imagenet",
        dropout: float = 0.0,
        attention: str = "none",
        reduction: int = 16,
        attention_kwargs: dict | None = None,
        attention_stages: list[int] | None = None,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        if stem not in ("imagenet", "stl"):
            raise ValueError(f"unknown stem {stem!r}; choose 'imagenet' (224 px) or 'stl' (96 px)")
        attn_kwargs = attention_options(attention, reduction, attention_kwargs)

        def width(channels: int) -> int:
            return max(1, int(channels * alpha))

        channels = width(32)
        self.stem = conv_bn_relu(in_channels, channels, 3, 2 if stem == "imagenet" else 1)
        blocks = []
        for index, (out, stride) in enumerate(CONFIG):
            block_attn = stage_attention(attention, index + 1, attention_stages)
            blocks.append(DepthwiseSeparable(channels, width(out), stride, block_attn, attn_kwargs))
            channels = width(out)
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(channels, num_classes)
        self.num_features = channels

        he_init_(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.pool(self.forward_features(x)), 1)))


@register_backbone
def mobilenetv1(**kwargs) -> MobileNetV1:
    """MobileNetV1 (4.2M parameters at ``alpha=1`` and 1000 classes); SE after each pointwise."""
    return MobileNetV1(**kwargs)
