"""The small VGG of the course study on CIFAR-10 (plain / skip / dense connections, channel attention).

Six 3x3 convs (padding 1, each followed by ReLU) in three stages of two, each stage ending with
2x2 average pooling::

    stage 1: 3 -> 16 -> 32      32 px -> pool -> 16 px
    stage 2: 32 -> 64 -> 64     16 px -> pool ->  8 px
    stage 3: 64 -> 128 -> 256    8 px -> pool ->  4 px

then FC 4096 -> 512 -> 256 -> 10 (ReLU between). The study lists the widths as
"3->16->32 | 32->64 | 64->128->256" with pooling "after each pair": six convs in three pairs means
stage 2 is 32->64->64, and three poolings take 32 px to 4 px, so the FC input is
256 * 4 * 4 = 4096 as the study states.

``connection`` (applied at the end of every stage, before its pooling):

* ``plain``: nothing.
* ``skip``: a 3x3 conv projection of the stage's input is added to the stage's output.
* ``dense``: the stage's input is concatenated to its output, so the widths grow to
  32 + 3 = 35, 64 + 35 = 99 and 256 + 99 = 355 channels, the next stage's first conv takes that
  many, and the FC input becomes 355 * 4 * 4 = 5680.

Attention follows the stages listed in ``attention_stages`` (1-based; default: after the second
stage, where the study put it), on the pooled map. For SE-like channel attention that is the same
as before the pooling (2x2 averaging keeps the channel means and commutes with a per-channel gate).

The study does not mention batch normalisation, so there is none by default (``batch_norm: true``
adds BN after every conv). ``image_size`` sets the FC input for inputs other than 32 px.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from ._registry import register_backbone
from ._stages import attention_options
from .layers import create_attention
from .layers.placement import stage_attention

# (mid, out) channels of the three stages; the input of each is the previous stage's output.
STAGES = ((16, 32), (64, 64), (128, 256))
CONNECTIONS = ("plain", "skip", "dense")


class VGGStage(nn.Module):
    """conv-ReLU, conv-ReLU, connection, 2x2 average pool, attention."""

    def __init__(
        self,
        in_channels: int,
        mid_channels: int,
        out_channels: int,
        connection: str = "plain",
        batch_norm: bool = False,
        attention: str = "none",
        attention_kwargs: dict | None = None,
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
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=not batch_norm)
            if connection == "skip"
            else None
        )
        self.out_channels = out_channels + (in_channels if connection == "dense" else 0)
        self.pool = nn.AvgPool2d(2)
        self.attention = create_attention(attention, self.out_channels, **(attention_kwargs or {}))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.convs(x)
        if self.connection == "skip":
            out = out + self.projection(x)
        elif self.connection == "dense":
            out = torch.cat([out, x], dim=1)
        return self.attention(self.pool(out))


class VGGSmall(nn.Module):
    def __init__(
        self,
        num_classes: int = 10,
        connection: Literal["plain", "skip", "dense"] = "plain",
        batch_norm: bool = False,
        dropout: float = 0.0,
        attention: str = "none",
        reduction: int = 16,
        attention_kwargs: dict | None = None,
        attention_stages: Sequence[int] | None = (2,),
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
        attn_kwargs = attention_options(attention, reduction, attention_kwargs)
        stages, channels = [], in_channels
        for index, (mid, out) in enumerate(STAGES):
            stage = VGGStage(
                channels,
                mid,
                out,
                connection,
                batch_norm,
                stage_attention(attention, index + 1, attention_stages),
                attn_kwargs,
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
        # He initialisation keeps activations at scale through the ReLUs (there is no BN).
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))


@register_backbone
def vgg_small(**kwargs) -> VGGSmall:
    """The course study's 6-conv VGG for CIFAR-10; ``connection`` plain / skip / dense."""
    return VGGSmall(**kwargs)
