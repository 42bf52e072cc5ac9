"""Shake-Shake: Gastaldi, "Shake-Shake regularization", 2017 (arXiv:1705.07485), CIFAR models.

Shake-Shake 26 2x``w``d: a 3x3 conv stem to 16 channels + BN, three stages of 4 residual blocks
(depth 2 + 3 * 4 * 2 = 26) at ``w`` / 2w / 4w channels and 32/16/8 px, then ReLU, global average
pooling and FC. Each block has two residual branches ReLU-conv3x3-BN-ReLU-conv3x3-BN whose outputs
are mixed as ``alpha * b1 + (1 - alpha) * b2`` with a random ``alpha ~ U(0, 1)`` per image in the
forward pass, while the backward pass scales the two gradients by an independent ``beta`` and
``1 - beta`` (:class:`ShakeShake`, a custom autograd Function). At evaluation ``alpha = 0.5``.
Where width or resolution changes, the shortcut is ReLU, then two paths of 1x1 average pooling
with the block's stride and a 1x1 conv to half the output channels, the second path's input shifted
by one pixel (so it samples the pixels the first skips), concatenated and batch-normalised.
2x32d has 2.9M parameters and 2x96d 26.2M, as in the paper's Table 1.

``shake_forward`` (``shake`` | ``even``), ``shake_backward`` (``shake`` | ``even`` | ``keep``,
where keep reuses the forward ``alpha``) and ``shake_level`` (``image`` | ``batch``) are the
paper's variants; the defaults are its best CIFAR-10 model, Shake-Shake-Image.

``variant: seed`` builds the network of the Shake-Shake study's code (study note 004,
``ShakeResNet``) instead of the paper's: the stem is conv-BN-ReLU; the projection shortcut
(``SkippingBranch``) has no BatchNorm; nothing follows the last stage before the pooling (no
ReLU); the classifier keeps PyTorch's default initialisation. The study's branches start with an
in-place ReLU, which also rectifies the block input that its shortcut carries, so every shortcut
sees ``relu(x)``; selab computes that forward without the in-place op (the printed code fails to
backpropagate in current PyTorch: "modified by an inplace operation"). 2x32d: 2,922,714
parameters. Its ``SkippingBranch`` maps C to 2C channels (two C -> C 1x1 convs), which only fits
2x32d (16 -> 32 -> 64 -> 128); for wider models each path maps to half the output channels, as in
the paper.

Attention is applied to the mixed residual, before the addition (the spec's ``position`` and
``stages`` as in :class:`~selab.models.layers.AttentionSpec`).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ._init import he_init_
from ._registry import register_backbone
from ._stages import stack_stages
from .layers import AttentionSpec, parse_attention
from .layers.placement import attach_attention, residual_forward

VARIANTS = ("paper", "seed")


class ShakeShake(torch.autograd.Function):
    """``alpha * x1 + (1 - alpha) * x2`` forward; gradients ``beta * g`` and ``(1 - beta) * g``."""

    @staticmethod
    def forward(ctx, x1, x2, alpha, beta):
        ctx.save_for_backward(beta)
        return alpha * x1 + (1 - alpha) * x2

    @staticmethod
    def backward(ctx, grad_output):
        (beta,) = ctx.saved_tensors
        return beta * grad_output, (1 - beta) * grad_output, None, None


def shake(
    x1: torch.Tensor,
    x2: torch.Tensor,
    training: bool,
    forward: str = "shake",
    backward: str = "shake",
    level: str = "image",
) -> torch.Tensor:
    """Mix two branch outputs: random per image (or per batch) in training, the mean otherwise."""
    if not training:
        return 0.5 * (x1 + x2)
    shape = (x1.shape[0] if level == "image" else 1,) + (1,) * (x1.dim() - 1)

    def coefficient(mode: str) -> torch.Tensor:
        if mode == "shake":
            return torch.rand(shape, dtype=x1.dtype, device=x1.device)
        return torch.full(shape, 0.5, dtype=x1.dtype, device=x1.device)

    alpha = coefficient(forward)
    beta = alpha if backward == "keep" else coefficient(backward)
    return ShakeShake.apply(x1, x2, alpha, beta)


class ShakeShortcut(nn.Module):
    """ReLU, two shifted 1x1-average-pooled 1x1-conv paths (half the channels each), concat, BN
    (no BN with ``batch_norm=False``, the study's ``SkippingBranch``)."""

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, batch_norm: bool = True
    ) -> None:
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(in_channels, out_channels // 2, 1, bias=False)
        self.conv2 = nn.Conv2d(in_channels, out_channels - out_channels // 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels) if batch_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        path1 = F.avg_pool2d(x, 1, self.stride)
        shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        path2 = F.avg_pool2d(shifted, 1, self.stride)
        return self.bn(torch.cat([self.conv1(path1), self.conv2(path2)], dim=1))


def _branch(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ReLU(inplace=False),  # the block input is shared with the other branch and shortcut
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
    )


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


class ShakeBlock(nn.Module):
    """Two shaken residual branches and a shortcut; ``rectified_shortcut`` gives the shortcut
    ``relu(x)`` (the study's code) instead of ``x``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        attention: AttentionSpec | str = "none",
        stage: int | None = None,
        shake_forward: str = "shake",
        shake_backward: str = "shake",
        shake_level: str = "image",
        rectified_shortcut: bool = False,
        shortcut_batch_norm: bool = True,
    ) -> None:
        super().__init__()
        self.branch1 = _branch(in_channels, out_channels, stride)
        self.branch2 = _branch(in_channels, out_channels, stride)
        self.shortcut = (
            ShakeShortcut(in_channels, out_channels, stride, shortcut_batch_norm)
            if stride != 1 or in_channels != out_channels
            else None
        )
        self.rectified_shortcut = rectified_shortcut
        self.shake_modes = (shake_forward, shake_backward, shake_level)
        attach_attention(self, parse_attention(attention), stage, in_channels, out_channels)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        return shake(self.branch1(x), self.branch2(x), self.training, *self.shake_modes)

    def skip(self, x: torch.Tensor) -> torch.Tensor:
        if self.shortcut is not None:
            return self.shortcut(x)  # starts with its own ReLU
        return F.relu(x) if self.rectified_shortcut else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return residual_forward(x, self.branch, self.skip, self.attention, self.attention_position)


class ShakeShakeNet(nn.Module):
    """Shake-Shake ``depth`` 2x``width``d for CIFAR; ``depth = 6n + 2``."""

    def __init__(
        self,
        depth: int = 26,
        width: int = 32,
        num_classes: int = 10,
        shake_forward: Literal["shake", "even"] = "shake",
        shake_backward: Literal["shake", "even", "keep"] = "shake",
        shake_level: Literal["image", "batch"] = "image",
        variant: Literal["paper", "seed"] = "paper",
        attention: AttentionSpec | str = "none",
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"Shake-Shake depth must be 6n + 2 (26, ...), got {depth}")
        for name, value, allowed in (
            ("shake_forward", shake_forward, ("shake", "even")),
            ("shake_backward", shake_backward, ("shake", "even", "keep")),
            ("shake_level", shake_level, ("image", "batch")),
            ("variant", variant, VARIANTS),
        ):
            if value not in allowed:
                raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(allowed)}")
        blocks_per_stage = (depth - 2) // 6
        spec = parse_attention(attention)
        spec.check_stages(3, "ShakeShakeNet")
        seed = variant == "seed"
        self.variant = variant
        stem: list[nn.Module] = [nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)]
        stem += [nn.BatchNorm2d(16), nn.ReLU(inplace=True)] if seed else [nn.BatchNorm2d(16)]
        self.stem = nn.Sequential(*stem)
        widths = (width, 2 * width, 4 * width)
        self.stages, channels = stack_stages(
            16,
            widths,
            blocks_per_stage,
            lambda cin, stage, stride: ShakeBlock(
                cin,
                widths[stage - 1],
                stride,
                spec,
                stage,
                shake_forward,
                shake_backward,
                shake_level,
                rectified_shortcut=seed,
                shortcut_batch_norm=not seed,
            ),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        self.num_features = channels

        he_init_(self, zero_linear_bias=not seed)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        features = self.stages(self.stem(x))
        return features if self.variant == "seed" else F.relu(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.forward_features(x)), 1))


@register_backbone
def shake_shake26_2x32d(**kwargs) -> ShakeShakeNet:
    """Shake-Shake 26 2x32d (2.9M parameters; 3.55% CIFAR-10 error in the paper)."""
    return ShakeShakeNet(depth=26, width=32, **kwargs)


@register_backbone
def shake_shake26_2x64d(**kwargs) -> ShakeShakeNet:
    """Shake-Shake 26 2x64d (11.7M parameters; 2.98% CIFAR-10 error in the paper)."""
    return ShakeShakeNet(depth=26, width=64, **kwargs)


@register_backbone
def shake_shake26_2x96d(**kwargs) -> ShakeShakeNet:
    """Shake-Shake 26 2x96d (26.2M parameters; 2.86% CIFAR-10 error in the paper)."""
    return ShakeShakeNet(depth=26, width=96, **kwargs)
