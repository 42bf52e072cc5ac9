"""Pre-activation ResNets for CIFAR: He, Zhang, Ren, Sun, "Identity Mappings in Deep Residual
Networks", ECCV 2016 (arXiv:1603.05027), the ResNet-164 of the SE paper's CIFAR table.

Each residual unit is BN-ReLU-conv ... with nothing after the addition. ResNet-164 stacks
``n = (164 - 2) / 9 = 18`` bottleneck units (1x1, 3x3, 1x1 convs at 16/32/64 planes, expanded x4
to 64/128/256 channels) in three stages at 32/16/8 px after a 3x3 conv stem, then BN-ReLU, global
average pooling and one FC layer: 1.70M parameters (the paper's 1.7M).

Where the channel count or resolution changes, the shortcut is a 1x1 conv projection. As in the
authors' code and Zagoruyko & Komodakis' WRNs, that unit's BN-ReLU is shared: the projection and
the residual branch both start from ``relu(bn1(x))``. A downsampling bottleneck strides in its
first 1x1 conv, as in the authors' code (KaimingHe/resnet-1k-layers, ``resnet-pre-act.lua``);
the basic unit (WRN) strides in its first 3x3 conv.

Attention sits at the end of the residual branch (after its last conv), before the addition; the
spec's ``position`` / ``stages`` follow :class:`~selab.models.layers.AttentionSpec` (``pre`` is the
start of the branch: after the shared pre-activation in projecting units, before BN in the
others).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ._init import he_init_
from ._registry import register_backbone
from ._stages import stack_stages
from .layers import AttentionSpec, parse_attention
from .layers.placement import attach_attention, residual_forward


class PreActBlock(nn.Module):
    """Common forward of pre-activation units: ``convs`` is the branch after ``relu(bn1(.))``."""

    bn1: nn.BatchNorm2d
    projection: nn.Module | None

    def convs(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def preact(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn1(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.projection is not None:  # shared pre-activation feeds both paths
            return residual_forward(
                self.preact(x), self.convs, self.projection, self.attention, self.attention_position
            )
        return residual_forward(
            x,
            lambda t: self.convs(self.preact(t)),
            _identity,
            self.attention,
            self.attention_position,
        )


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _projection(in_channels: int, out_channels: int, stride: int) -> nn.Module | None:
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class PreActBasicBlock(PreActBlock):
    """BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3; the WRN unit (``dropout`` between the convs)."""

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        attention: AttentionSpec | str = "none",
        stage: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(planes, out_channels, 3, padding=1, bias=False)
        self.projection = _projection(in_channels, out_channels, stride)
        attach_attention(self, parse_attention(attention), stage, in_channels, out_channels)

    def convs(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.dropout(torch.relu(self.bn2(self.conv1(x)))))


class PreActBottleneck(PreActBlock):
    """BN-ReLU-conv1x1 (strided), BN-ReLU-conv3x3, BN-ReLU-conv1x1 to ``4 * planes``."""

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        attention: AttentionSpec | str = "none",
        stage: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, planes, 1, stride=stride, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.projection = _projection(in_channels, out_channels, stride)
        attach_attention(self, parse_attention(attention), stage, in_channels, out_channels)

    def convs(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        out = self.conv2(torch.relu(self.bn2(out)))
        return self.conv3(self.dropout(torch.relu(self.bn3(out))))


class PreActResNet(nn.Module):
    """Three stages of pre-activation units after a 3x3 conv stem, then BN-ReLU-pool-FC.

    ``widths`` are the planes of the three stages (the units' outputs are ``expansion`` times
    wider); ``blocks_per_stage`` the units in each. Used by :func:`resnet164` and by the WRNs.
    """

    def __init__(
        self,
        block: Literal["basic", "bottleneck"] = "bottleneck",
        blocks_per_stage: int = 18,
        widths: tuple[int, int, int] = (16, 32, 64),
        num_classes: int = 10,
        stem_width: int = 16,
        dropout: float = 0.0,
        attention: AttentionSpec | str = "none",
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        blocks = {"basic": PreActBasicBlock, "bottleneck": PreActBottleneck}
        if block not in blocks:
            raise ValueError(f"unknown block {block!r}; choose one of {', '.join(blocks)}")
        if blocks_per_stage < 1:
            raise ValueError(f"blocks_per_stage must be >= 1, got {blocks_per_stage}")
        block_cls = blocks[block]
        spec = parse_attention(attention)
        spec.check_stages(len(widths), type(self).__name__)
        self.stem = nn.Conv2d(in_channels, stem_width, 3, padding=1, bias=False)
        self.stages, channels = stack_stages(
            stem_width,
            [w * block_cls.expansion for w in widths],
            blocks_per_stage,
            lambda cin, stage, stride: block_cls(
                cin, widths[stage - 1], stride, spec, stage, dropout
            ),
        )
        self.bn = nn.BatchNorm2d(channels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        self.num_features = channels

        he_init_(self, zero_linear_bias=True)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.stages(self.stem(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.forward_features(x)), 1))


@register_backbone
def resnet164(**kwargs) -> PreActResNet:
    """Pre-activation ResNet-164 for CIFAR (18 bottleneck units per stage; 1.7M parameters)."""
    return PreActResNet(block="bottleneck", blocks_per_stage=18, widths=(16, 32, 64), **kwargs)
