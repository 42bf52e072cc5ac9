"""ResNets for CIFAR, as in He, Zhang, Ren, Sun: "Deep Residual Learning for Image Recognition",
CVPR 2016, section 4.2: a 3x3 stem, three stages of ``n`` basic blocks at 16/32/64 channels
(feature maps 32/16/8), global average pooling and one FC layer, depth ``6n + 2``.

Downsampling shortcuts are the paper's option A (subsample and zero-pad the new channels, no
parameters), which is what its parameter counts (0.27M for ResNet-20, ...) assume; option B
(1x1 conv + BN projection) is available as ``shortcut="B"``.

Attention (an :class:`~selab.models.layers.AttentionSpec` or a variant's name) sits at the end of
the residual branch, before the addition, as in the SE paper's SE-ResNet module; the spec's
``position`` moves it (pre / post / identity) and its ``stages`` limit it to some of the three
stages (the paper's integration and stage ablations).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._init import he_init_
from ._registry import register_backbone
from ._stages import stack_stages
from .layers import AttentionSpec, parse_attention
from .layers.placement import attach_attention, residual_forward


class PadShortcut(nn.Module):
    """Option A: stride-2 subsampling plus zero channels, parameter-free."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra = out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        half = self.extra // 2
        return F.pad(x, (0, 0, 0, 0, half, self.extra - half))


def make_shortcut(in_channels: int, out_channels: int, stride: int, kind: str) -> nn.Module:
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    if kind == "A":
        return PadShortcut(in_channels, out_channels, stride)
    if kind == "B":
        return nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
            nn.BatchNorm2d(out_channels),
        )
    raise ValueError(f"unknown shortcut {kind!r}; choose 'A' (zero-pad) or 'B' (1x1 projection)")


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN (+ attention) + shortcut, ReLU."""

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        shortcut: str = "A",
        attention: AttentionSpec | str = "none",
        stage: int | None = None,
    ) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        attach_attention(self, parse_attention(attention), stage, in_channels, out_channels)
        self.shortcut = make_shortcut(in_channels, out_channels, stride, shortcut)
        self.relu = nn.ReLU(inplace=True)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return residual_forward(
            x, self.branch, self.shortcut, self.attention, self.attention_position, self.relu
        )


class CifarResNet(nn.Module):
    """Generic CIFAR ResNet: ``depth = 6n + 2`` for basic blocks."""

    def __init__(
        self,
        depth: int = 20,
        num_classes: int = 10,
        widths: tuple[int, int, int] = (16, 32, 64),
        shortcut: str = "A",
        attention: AttentionSpec | str = "none",
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(
                f"CIFAR ResNet depth must be 6n + 2 with n >= 1 (20, 32, ...), got {depth}"
            )
        blocks_per_stage = (depth - 2) // 6
        block = BasicBlock
        spec = parse_attention(attention)
        spec.check_stages(len(widths), "CifarResNet")

        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        self.stages, channels = stack_stages(
            widths[0],
            [w * block.expansion for w in widths],
            blocks_per_stage,
            lambda cin, stage, stride: block(cin, widths[stage - 1], stride, shortcut, spec, stage),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        self.num_features = channels

        he_init_(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.forward_features(x)), 1))


def _cifar_resnet(depth: int, **kwargs) -> CifarResNet:
    return CifarResNet(depth=depth, **kwargs)


@register_backbone
def resnet20(**kwargs) -> CifarResNet:
    """ResNet-20 for CIFAR (0.27M parameters)."""
    return _cifar_resnet(20, **kwargs)


@register_backbone
def resnet32(**kwargs) -> CifarResNet:
    """ResNet-32 for CIFAR (0.46M parameters)."""
    return _cifar_resnet(32, **kwargs)


@register_backbone
def resnet44(**kwargs) -> CifarResNet:
    """ResNet-44 for CIFAR (0.66M parameters)."""
    return _cifar_resnet(44, **kwargs)


@register_backbone
def resnet56(**kwargs) -> CifarResNet:
    """ResNet-56 for CIFAR (0.85M parameters)."""
    return _cifar_resnet(56, **kwargs)


@register_backbone
def resnet110(**kwargs) -> CifarResNet:
    """ResNet-110 for CIFAR (1.7M parameters)."""
    return _cifar_resnet(110, **kwargs)
