"""ResNet-18/34/50 (He, Zhang, Ren, Sun, CVPR 2016) in torchvision's layout, with a choice of stem.

Blocks, names and initialisation follow ``torchvision.models.resnet`` (v1.5: the bottleneck strides
in its 3x3 conv; downsampling shortcuts are 1x1 conv + BN projections), so with
``stem="imagenet"`` and ``num_classes=1000`` the parameter counts equal torchvision's resnet18/34/50
exactly and a torchvision ``state_dict`` loads into these models unchanged.

``stem`` adapts the network to the input size, leaving the four stages as they are:

* ``imagenet``: 7x7/2 conv + 3x3/2 max-pool (224 px in, 56 px at stage 1, 7 px at the end).
* ``cifar``: one 3x3/1 conv and no max-pool (32 px in, 32/16/8/4 px through the stages), the
  common CIFAR variant of ResNet-18.
* ``stl``: a 3x3/1 conv followed by the 3x3/2 max-pool, i.e. a stride-2 stem for STL10's 96 px
  images. Stage 1 then sees 48 px and the last stage 6 px, close to the 56 and 7 px that the
  ImageNet stem gives on 224 px images, so each stage works at the resolution it was designed
  for; the ImageNet stem would shrink 96 px to 24 px before stage 1 (3 px at the end) and the
  CIFAR stem would run stage 1 at the full 96 px (9x the CIFAR cost for little gain).

SE and the other attention modules sit at the end of each residual branch, after the last BN and
before the addition (the SE paper's SE-ResNet module); the spec's ``position`` and ``stages``
(1-based, of 4) follow :class:`~selab.models.layers.AttentionSpec`.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ._init import he_init_
from ._registry import register_backbone
from .layers import AttentionSpec, parse_attention
from .layers.placement import attach_attention, residual_forward

STEMS = ("imagenet", "cifar", "stl")


def _projection(in_channels: int, out_channels: int, stride: int) -> nn.Module | None:
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class BasicForward:
    """Forward of a torchvision-layout basic block (conv1/bn1/conv2/bn2/downsample) with
    ``self.attention`` at ``self.attention_position``; shared with :mod:`.inject`."""

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.downsample is None else self.downsample(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return residual_forward(
            x, self.branch, self.shortcut, self.attention, self.attention_position, self.relu
        )


class BottleneckForward:
    """Forward of a torchvision-layout bottleneck (conv1..3/bn1..3/downsample) with attention."""

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.downsample is None else self.downsample(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return residual_forward(
            x, self.branch, self.shortcut, self.attention, self.attention_position, self.relu
        )


class BasicBlock(BasicForward, nn.Module):
    """3x3 conv-BN-ReLU, 3x3 conv-BN (+ attention), + shortcut, ReLU."""

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        attention: AttentionSpec | str = "none",
        stage: int | None = None,
    ) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = _projection(in_channels, out_channels, stride)
        attach_attention(self, parse_attention(attention), stage, in_channels, out_channels)


class Bottleneck(BottleneckForward, nn.Module):
    """1x1 reduce, 3x3 (strided, as in torchvision's v1.5), 1x1 expand x4, each with BN."""

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        attention: AttentionSpec | str = "none",
        stage: int | None = None,
    ) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _projection(in_channels, out_channels, stride)
        attach_attention(self, parse_attention(attention), stage, in_channels, out_channels)


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(nn.Module):
    """Four stages of ``layers[i]`` blocks at 64/128/256/512 planes (x ``expansion``).

    Module names match torchvision's (``conv1``, ``bn1``, ``layer1``..``layer4``, ``fc``); the
    ``cifar`` and ``stl`` stems have a 3x3 ``conv1`` instead of the 7x7 one (and ``cifar`` no
    ``maxpool``).
    """

    def __init__(
        self,
        block: Literal["basic", "bottleneck"] = "basic",
        layers: tuple[int, int, int, int] = (2, 2, 2, 2),
        num_classes: int = 1000,
        stem: Literal["imagenet", "cifar", "stl"] = "imagenet",
        attention: AttentionSpec | str = "none",
        in_channels: int = 3,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"unknown block {block!r}; choose one of {', '.join(BLOCKS)}")
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}; choose one of {', '.join(STEMS)}")
        if len(layers) != 4:
            raise ValueError(f"layers gives the blocks of the 4 stages, got {layers}")
        block_cls = BLOCKS[block]
        spec = parse_attention(attention)
        spec.check_stages(4, "ResNet")
        self.stem_type = stem
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if stem == "cifar" else nn.MaxPool2d(3, stride=2, padding=1)

        channels = 64
        for stage, (planes, count) in enumerate(zip((64, 128, 256, 512), layers, strict=True), 1):
            blocks = []
            for i in range(count):
                stride = 2 if stage > 1 and i == 0 else 1
                blocks.append(block_cls(channels, planes, stride, spec, stage))
                channels = planes * block_cls.expansion
            self.add_module(f"layer{stage}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        self.num_features = channels

        he_init_(self)
        if zero_init_residual:  # torchvision's option: each block starts as the identity
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.forward_features(x)), 1))


@register_backbone
def resnet18(**kwargs) -> ResNet:
    """ResNet-18 (11.7M parameters with the ImageNet stem and 1000 classes)."""
    return ResNet(block="basic", layers=(2, 2, 2, 2), **kwargs)


@register_backbone
def resnet34(**kwargs) -> ResNet:
    """ResNet-34 (21.8M parameters with the ImageNet stem and 1000 classes)."""
    return ResNet(block="basic", layers=(3, 4, 6, 3), **kwargs)


@register_backbone
def resnet50(**kwargs) -> ResNet:
    """ResNet-50 (25.6M parameters; SE-ResNet-50 28.1M with ``attention="se"``, r = 16)."""
    return ResNet(block="bottleneck", layers=(3, 4, 6, 3), **kwargs)
