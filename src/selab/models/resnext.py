"""ResNeXt for CIFAR: Xie, Girshick, Dollar, Tu, He, "Aggregated Residual Transformations for Deep
Neural Networks", CVPR 2017 (arXiv:1611.05431), section 5.3.

ResNeXt-29 ``C``x``d``d: a 3x3 conv stem to 64 channels + BN-ReLU, three stages of 3 bottleneck
blocks (depth 2 + 9 * 3 = 29) with outputs of 256 / 512 / 1024 channels at 32/16/8 px, global
average pooling and FC. Each block is 1x1 conv to ``C * d`` channels, a 3x3 grouped conv with
``C`` groups (the cardinality; strided in the first block of stages 2 and 3), 1x1 conv to the
output, each followed by BN (ReLU after the first two), plus the shortcut (1x1 conv + BN projection
where the shape changes), then ReLU. The width per group ``d`` doubles with each stage, as the
output width does. Parameters: 8x64d 34.4M and 16x64d 68.1M (the paper's Table 7); 2x64d and
4x64d are the smaller points of its cardinality comparison.

Attention sits after the last BN of the branch, before the addition (the spec's ``position`` and
``stages`` as in :class:`~selab.models.layers.AttentionSpec`).
"""

from __future__ import annotations

import torch
from torch import nn

from ._init import he_init_
from ._registry import register_backbone
from ._stages import stack_stages
from .layers import AttentionSpec, parse_attention
from .layers.placement import attach_attention, residual_forward


class ResNeXtBottleneck(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        cardinality: int,
        group_width: int,
        attention: AttentionSpec | str = "none",
        stage: int | None = None,
    ) -> None:
        super().__init__()
        inner = cardinality * group_width
        self.conv_reduce = nn.Conv2d(in_channels, inner, 1, bias=False)
        self.bn_reduce = nn.BatchNorm2d(inner)
        self.conv_group = nn.Conv2d(
            inner, inner, 3, stride=stride, padding=1, groups=cardinality, bias=False
        )
        self.bn_group = nn.BatchNorm2d(inner)
        self.conv_expand = nn.Conv2d(inner, out_channels, 1, bias=False)
        self.bn_expand = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.projection = (
            nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
            if stride != 1 or in_channels != out_channels
            else None
        )
        attach_attention(self, parse_attention(attention), stage, in_channels, out_channels)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn_reduce(self.conv_reduce(x)))
        out = self.relu(self.bn_group(self.conv_group(out)))
        return self.bn_expand(self.conv_expand(out))

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.projection is None else self.projection(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return residual_forward(
            x, self.branch, self.shortcut, self.attention, self.attention_position, self.relu
        )


class CifarResNeXt(nn.Module):
    """ResNeXt-``depth`` (``9n + 2``) with ``cardinality`` groups of ``base_width`` channels."""

    def __init__(
        self,
        depth: int = 29,
        cardinality: int = 8,
        base_width: int = 64,
        num_classes: int = 10,
        attention: AttentionSpec | str = "none",
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if depth < 11 or (depth - 2) % 9:
            raise ValueError(f"CIFAR ResNeXt depth must be 9n + 2 (29, ...), got {depth}")
        blocks_per_stage = (depth - 2) // 9
        spec = parse_attention(attention)
        spec.check_stages(3, "CifarResNeXt")
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 3, padding=1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
        )
        # Stage i: 256 * 2^i output channels, groups of base_width * 2^i (Xie et al., Table 7).
        self.stages, channels = stack_stages(
            64,
            [256 * 2**i for i in range(3)],
            blocks_per_stage,
            lambda cin, stage, stride: ResNeXtBottleneck(
                cin,
                256 * 2 ** (stage - 1),
                stride,
                cardinality,
                base_width * 2 ** (stage - 1),
                spec,
                stage,
            ),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        self.num_features = channels

        he_init_(self, zero_linear_bias=True)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.forward_features(x)), 1))


@register_backbone
def resnext29_2x64d(**kwargs) -> CifarResNeXt:
    """ResNeXt-29 2x64d (9.1M parameters)."""
    return CifarResNeXt(depth=29, cardinality=2, base_width=64, **kwargs)


@register_backbone
def resnext29_4x64d(**kwargs) -> CifarResNeXt:
    """ResNeXt-29 4x64d (17.6M parameters)."""
    return CifarResNeXt(depth=29, cardinality=4, base_width=64, **kwargs)


@register_backbone
def resnext29_8x64d(**kwargs) -> CifarResNeXt:
    """ResNeXt-29 8x64d (34.4M parameters, the paper's Table 7)."""
    return CifarResNeXt(depth=29, cardinality=8, base_width=64, **kwargs)


@register_backbone
def resnext29_16x64d(**kwargs) -> CifarResNeXt:
    """ResNeXt-29 16x64d (68.1M parameters, the paper's Table 7 and the SE paper's CIFAR table)."""
    return CifarResNeXt(depth=29, cardinality=16, base_width=64, **kwargs)
