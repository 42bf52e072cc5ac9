"""The small VGG of the course study on CIFAR-10, with its skip, dense and channel-attention variants.

Built as in the study's code (study note 003): six 3x3 convs (padding 1, bias, each followed
by ReLU) in three stages of two, each stage ending with 2x2 average pooling::

    stage 1:  3 -> 16 -> 32      32 px -> pool -> 16 px
    stage 2: 32 -> 32 -> 64      16 px -> pool ->  8 px
    stage 3: 64 -> 128 -> 256     8 px -> pool ->  4 px

then FC 4096 -> 512 -> 256 -> 10 with ReLU between: 2,633,418 parameters.

``connection`` (at the end of a stage, before its pooling):

* ``plain``: nothing.
* ``skip``: ``relu(conv3x3(stage input))`` is added to the stage's output (the study's
  ``conv_skip1..3``; the ReLU is on the projection, none follows the addition): 2,800,522.
* ``dense``: the stage's input is concatenated in front of its output after stages 1 and 2 only
  (the study comments out the third concatenation), so stage 2 takes 32 + 3 = 35 channels, stage 3
  takes 64 + 35 = 99 and the FC input stays 256 x 4 x 4 = 4096: 2,674,602.

Attention follows the connection of the spec's ``stages`` (1-based; stage 2 when the spec names
none, where the study put it), before the pooling. The study's channel attention is ``ca_conv``
(pooling, 1x1 conv 64 -> 64, ReLU, 1x1 conv 64 -> 64, sigmoid): 2,641,738 with plain connections.

``init``: ``default`` keeps PyTorch's own initialisation (what the study's code does);
``kaiming_in`` draws He-normal (fan_in) weights and zero biases, which trains this BN-free net
faster.
``batch_norm: true`` adds BN after every conv (the study has none).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import torch
from torch import nn

from ._init import init_weights
from ._registry import register_backbone
from .layers import AttentionSpec, parse_attention

# (mid, out) channels of the three stages; the input of each is the previous stage's output.
STAGES = ((16, 32), (32, 64), (128, 256))
CONNECTIONS = ("plain", "skip", "dense")
# Stages whose output gets the connection, as in the study's code.
CONNECTION_STAGES = {"plain": (), "skip": (1, 2, 3), "dense": (1, 2)}


class VGGStage(nn.Module):
    """conv-ReLU, conv-ReLU, connection, attention, 2x2 average pool."""

    def __init__(
        self,
        in_channels: int,
        mid_channels: int,
        out_channels: int,
        connection: str = "plain",
        batch_norm: bool = False,
        attention: AttentionSpec | str = "none",
        stage: int | None = None,
    ) -> None:
        super().__init__()
        self.connection = connection

        def conv(cin: int, cout: int) -> list[nn.Module]:
            layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=not batch_norm)]
            if batch_norm:
                layers.append(nn.BatchNorm2d(cout))
            return [*layers, nn.ReLU(inplace=True)]

        self.convs = nn.Sequential(
            *conv(in_channels, mid_channels), *conv(mid_channels, out_channels)
        )
        self.projection = (
            nn.Sequential(*conv(in_channels, out_channels)) if connection == "skip" else None
        )
        self.out_channels = out_channels + (in_channels if connection == "dense" else 0)
        self.attention = parse_attention(attention).create(self.out_channels, stage)
        self.pool = nn.AvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.convs(x)
        if self.connection == "skip":
            out = out + self.projection(x)
        elif self.connection == "dense":
            out = torch.cat([x, out], dim=1)
        return self.pool(self.attention(out))


class VGGSmall(nn.Module):
    def __init__(
        self,
        num_classes: int = 10,
        connection: Literal["plain", "skip", "dense"] = "plain",
        batch_norm: bool = False,
        dropout: float = 0.0,
        init: Literal["default", "kaiming", "kaiming_in", "torchvision"] = "default",
        attention: AttentionSpec | str = "none",
        image_size: int = 32,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if connection not in CONNECTIONS:
            raise ValueError(
                f"unknown connection {connection!r}; choose one of {', '.join(CONNECTIONS)}"
            )
        if image_size % 8:
            raise ValueError(
                f"image_size must be a multiple of 8 (three 2x2 poolings), got {image_size}"
            )
        spec = parse_attention(attention)
        if spec.stages is None:
            spec = replace(spec, stages=(2,))
        spec.require_position("standard", backbone="VGGSmall")
        spec.check_stages(len(STAGES), "VGGSmall")
        stages, channels = [], in_channels
        for index, (mid, out) in enumerate(STAGES):
            stage = VGGStage(
                channels,
                mid,
                out,
                connection if index + 1 in CONNECTION_STAGES[connection] else "plain",
                batch_norm,
                spec,
                index + 1,
            )
            stages.append(stage)
            channels = stage.out_channels
        self.stages = nn.Sequential(*stages)
        side = image_size // 8
        self.num_features = channels * side * side
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(self.num_features, 512),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
            nn.Linear(512, 256),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
            nn.Linear(256, num_classes),
        )
        init_weights(self, init)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))


@register_backbone
def vgg_small(**kwargs) -> VGGSmall:
    """The course study's 6-conv VGG for CIFAR-10; ``connection`` plain / skip / dense."""
    return VGGSmall(**kwargs)
