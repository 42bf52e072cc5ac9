"""MobileNetV1: Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile
Vision Applications", 2017 (arXiv:1704.04861), Table 1.

A 3x3/2 conv to 32 channels, then 13 depthwise-separable blocks (3x3 depthwise conv-BN-ReLU,
1x1 pointwise conv-BN-ReLU) at 64, 128, 128, 256, 256, 512 (x6), 1024, 1024 channels with four
stride-2 depthwise convs, global average pooling and one FC layer: 4.2M parameters at
``alpha = 1`` for 1000 classes (the paper's 4.2M, BN included). ``alpha`` is the width multiplier
(every layer's channels times ``alpha``, rounded down, as in the paper's Table 6).

Attention follows the pointwise conv-BN-ReLU of each depthwise-separable block, as in the STL10
study. Its ``stages`` count resolutions: stage 1 is the first block, stage 2 the 128-channel
blocks, then 256, 512 and 1024 (stages 1-5).

``stem`` picks the input layout:

* ``imagenet``: the paper's stride-2 stem, 224 px in, 7 px at the end.
* ``stl``: a stride-1 stem for native 96 px STL10 images (6 px at the end), otherwise the same.
* ``seed``: the network the STL10 study's code builds (study note 000): the stem is a
  3 -> 32 convolution with a 64x64 kernel (``BasicConv2d(3, 32, 64, stride=1)``, the kernel size
  in the slot meant for the width), stride 1, no padding, with bias, then BN and ReLU6; ReLU6 in
  every block; the last block strides 2 (224 px -> 161 -> 6 px at the end). With SE
  (``attention: {name: se, options: {min_hidden: 1}}``, the study's ``C // 16``) and 10 classes
  it has 4,095,678 parameters, as the study's code. Initialise it with ``init: torchvision``
  (He-normal fan_out convs, N(0, 0.01) linear layers, SE's included), as the study's code does.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ._init import init_weights
from ._registry import register_backbone
from .layers import AttentionSpec, parse_attention

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
STEMS = ("imagenet", "stl", "seed")


def conv_bn_act(
    in_channels: int,
    out_channels: int,
    kernel: int,
    stride: int,
    groups: int = 1,
    activation: type[nn.Module] = nn.ReLU,
    padding: int | None = None,
    bias: bool = False,
) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel,
            stride=stride,
            padding=kernel // 2 if padding is None else padding,
            groups=groups,
            bias=bias,
        ),
        nn.BatchNorm2d(out_channels),
        activation(inplace=True),
    )


class DepthwiseSeparable(nn.Module):
    """3x3 depthwise conv-BN-act, 1x1 pointwise conv-BN-act, then attention."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        attention: AttentionSpec | str = "none",
        stage: int | None = None,
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.depthwise = conv_bn_act(
            in_channels, in_channels, 3, stride, groups=in_channels, activation=activation
        )
        self.pointwise = conv_bn_act(in_channels, out_channels, 1, 1, activation=activation)
        self.attention = parse_attention(attention).create(out_channels, stage)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(self.pointwise(self.depthwise(x)))


class MobileNetV1(nn.Module):
    def __init__(
        self,
        num_classes: int = 1000,
        alpha: float = 1.0,
        stem: Literal["imagenet", "stl", "seed"] = "imagenet",
        dropout: float = 0.0,
        init: Literal["default", "kaiming", "torchvision"] = "kaiming",
        attention: AttentionSpec | str = "none",
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        if stem not in STEMS:
            raise ValueError(
                f"unknown stem {stem!r}; choose 'imagenet' (224 px), 'stl' (96 px) or 'seed' "
                "(the STL10 study's network)"
            )
        spec = parse_attention(attention)
        spec.require_position("standard", backbone="MobileNetV1")
        spec.check_stages(5, "MobileNetV1")

        def width(channels: int) -> int:
            return max(1, int(channels * alpha))

        activation = nn.ReLU6 if stem == "seed" else nn.ReLU
        channels = width(32)
        if stem == "seed":
            self.stem = conv_bn_act(
                in_channels, channels, width(64), 1, activation=activation, padding=0, bias=True
            )
        else:
            self.stem = conv_bn_act(in_channels, channels, 3, 2 if stem == "imagenet" else 1)
        blocks, stage = [], 1
        for index, (out, stride) in enumerate(CONFIG):
            if stem == "seed" and index == len(CONFIG) - 1:
                stride = 2
            if stride == 2 and index < len(CONFIG) - 1:
                stage += 1
            blocks.append(DepthwiseSeparable(channels, width(out), stride, spec, stage, activation))
            channels = width(out)
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(channels, num_classes)
        self.num_features = channels

        init_weights(self, init)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.pool(self.forward_features(x)), 1)))


@register_backbone
def mobilenetv1(**kwargs) -> MobileNetV1:
    """MobileNetV1 (4.2M parameters at ``alpha=1`` and 1000 classes); SE after each pointwise."""
    return MobileNetV1(**kwargs)
