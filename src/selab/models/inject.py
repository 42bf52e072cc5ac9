"""Attention in torchvision models: :func:`inject_attention` and the :func:`torchvision_backbone` builder.

``inject_attention(model, "se")`` adds an attention module to every residual block of a torchvision
ResNet, ResNeXt or Wide ResNet (``BasicBlock`` / ``Bottleneck``) and MobileNetV2
(``InvertedResidual``), in place, at the SE paper's standard position: after the last BN of the
residual branch, before the addition, so a block computes ``relu(attn(bn_last(...)) + identity)``
(MobileNetV2: ``x + attn(bn_last(...))``, or ``attn(bn_last(...))`` in blocks without a
shortcut). Each block keeps its module and parameter names (the attention is a new ``attention``
sub-module), so pretrained torchvision weights load before or after injection; the block's
class is swapped for a subclass whose forward runs through
:func:`selab.models.layers.placement.residual_forward`, so ResNet-family blocks also take the
``pre`` / ``post`` / ``identity`` positions and ``attention_stages`` (1-based ``layer1``..``layer4``).

From YAML::

    backbone:
      class_path: selab.models.torchvision_backbone
      init_args: {name: resnet50, attention: se}
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
import torchvision
from torch import nn
from torchvision.models.mobilenetv2 import InvertedResidual
from torchvision.models.resnet import BasicBlock, Bottleneck

from ._registry import register_backbone
from .layers import create_attention
from .layers.placement import attention_channels, check_position
from .resnet import BasicForward, BottleneckForward

# What inject_attention supports, named in its error messages.
SUPPORTED = (
    "torchvision ResNet (resnet18/34/50/101/152), ResNeXt (resnext50_32x4d, resnext101_32x8d, "
    "resnext101_64x4d) and Wide ResNet (wide_resnet50_2, wide_resnet101_2) models, whose blocks "
    "are torchvision.models.resnet.BasicBlock / Bottleneck, and MobileNetV2 (mobilenet_v2, "
    "torchvision.models.mobilenetv2.InvertedResidual blocks)"
)


class AttentiveBasicBlock(BasicForward, BasicBlock):
    """torchvision's BasicBlock with ``self.attention`` at ``self.attention_position``."""

    attention: nn.Module
    attention_position: str


class AttentiveBottleneck(BottleneckForward, Bottleneck):
    """torchvision's Bottleneck (also ResNeXt's and Wide ResNet's) with ``self.attention``."""

    attention: nn.Module
    attention_position: str


class AttentiveInvertedResidual(InvertedResidual):
    """MobileNetV2's block with ``self.attention`` after its last (linear pointwise) BN."""

    attention: nn.Module
    attention_position: str = "standard"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.attention(self.conv(x))
        return x + out if self.use_res_connect else out


ATTENTIVE = {
    BasicBlock: AttentiveBasicBlock,
    Bottleneck: AttentiveBottleneck,
    InvertedResidual: AttentiveInvertedResidual,
}


def _block_widths(block: nn.Module) -> tuple[int, int]:
    """(input, output) channels of a supported block."""
    if isinstance(block, InvertedResidual):
        return block.conv[0][0].in_channels, block.out_channels
    last_bn = block.bn3 if isinstance(block, Bottleneck) else block.bn2
    return block.conv1.in_channels, last_bn.num_features


def _stage(name: str) -> int | None:
    match = re.search(r"(?:^|\.)layer(\d+)\.\d+$", name)
    return int(match.group(1)) if match else None


def inject_attention(
    model: nn.Module,
    attention: str = "se",
    reduction: int = 16,
    attention_kwargs: dict | None = None,
    attention_position: str = "standard",
    attention_stages: Sequence[int] | None = None,
) -> nn.Module:
    """Add ``attention`` to every residual block of a torchvision model, in place; returns it.

    ``attention="none"`` leaves the model as it is. Raises ``TypeError`` for models without
    supported blocks (the message lists what is supported) and ``ValueError`` for a model that
    already has attention injected.
    """
    check_position(attention_position)
    blocks = [(n, m) for n, m in model.named_modules() if type(m) in ATTENTIVE]
    if any(isinstance(m, tuple(ATTENTIVE.values())) for m in model.modules()):
        raise ValueError("this model already has attention injected; inject into a fresh model")
    if not blocks:
        raise TypeError(
            f"inject_attention does not support {type(model).__name__}: it supports {SUPPORTED}"
        )
    if attention == "none":
        return model
    if any(isinstance(m, InvertedResidual) for _, m in blocks) and (
        attention_position != "standard" or attention_stages is not None
    ):
        raise ValueError(
            "MobileNetV2 takes attention only at the standard position (after the last BN of "
            "each inverted residual block) and in every block: attention_position must be "
            "'standard' and attention_stages None"
        )
    kwargs = {"reduction": reduction, **(attention_kwargs or {})}
    for name, block in blocks:
        if attention_stages is not None:
            stage = _stage(name)
            if stage is None:
                raise ValueError(f"cannot tell the stage of block {name!r} for attention_stages")
            if stage not in attention_stages:
                continue
        width = attention_channels(attention_position, *_block_widths(block))
        reference = next(block.parameters())
        module = create_attention(attention, width, **kwargs)
        block.__class__ = ATTENTIVE[type(block)]
        block.attention = module.to(device=reference.device, dtype=reference.dtype)
        block.attention_position = attention_position
    return model


def _replace_head(model: nn.Module, num_classes: int) -> None:
    """Swap the final Linear layer of a pretrained model for a fresh one with ``num_classes``."""
    if isinstance(getattr(model, "fc", None), nn.Linear):
        if model.fc.out_features != num_classes:
            model.fc = nn.Linear(model.fc.in_features, num_classes)
        return
    classifier = getattr(model, "classifier", None)
    if isinstance(classifier, nn.Sequential) and isinstance(classifier[-1], nn.Linear):
        if classifier[-1].out_features != num_classes:
            classifier[-1] = nn.Linear(classifier[-1].in_features, num_classes)
        return
    raise ValueError(
        f"cannot find the classification head of {type(model).__name__} (a Linear 'fc' or "
        "'classifier[-1]') to resize to num_classes"
    )


@register_backbone
def torchvision_backbone(
    name: str = "resnet50",
    num_classes: int = 1000,
    weights: str | None = None,
    attention: str = "none",
    reduction: int = 16,
    attention_kwargs: dict | None = None,
    attention_position: str = "standard",
    attention_stages: list[int] | None = None,
    model_kwargs: dict | None = None,
) -> nn.Module:
    """Any torchvision classification model by ``name``, with attention injected.

    ``weights`` (e.g. ``DEFAULT``) loads torchvision's pretrained weights (downloaded on first use)
    and then replaces the classifier head when ``num_classes`` differs from it. ``model_kwargs``
    go to the torchvision builder (e.g. ``{zero_init_residual: true}``). Attention other than
    ``none`` needs a model :func:`inject_attention` supports.
    """
    available = torchvision.models.list_models(module=torchvision.models)
    if name not in available:
        raise ValueError(
            f"unknown torchvision classification model {name!r}; choose one of "
            f"{', '.join(available)}"
        )
    kwargs = dict(model_kwargs or {})
    if weights is None:
        model = torchvision.models.get_model(name, num_classes=num_classes, **kwargs)
    else:
        model = torchvision.models.get_model(name, weights=weights, **kwargs)
        _replace_head(model, num_classes)
    if attention == "none":  # any torchvision model, as it is
        return model
    return inject_attention(
        model, attention, reduction, attention_kwargs, attention_position, attention_stages
    )
