"""Attention in torchvision models: :func:`inject_attention` and the :func:`torchvision_backbone` builder.

``inject_attention(model, "se")`` adds an attention module to every block of a torchvision
ResNet, ResNeXt or Wide ResNet (``BasicBlock`` / ``Bottleneck``) or MobileNetV2
(``InvertedResidual``), in place:

* ResNet family: the SE paper's SE-ResNet module, after the last BN of the residual branch and
  before the addition, so a block computes ``relu(attn(bn_last(...)) + identity)``; the spec's
  ``position`` (pre / post / identity) and ``stages`` (``layer1`` .. ``layer4`` are stages 1-4)
  apply as in selab's own ResNets.
* MobileNetV2: where the SE paper's SE-MobileNet and MobileNetV3 (Howard et al. 2019, Fig. 4) put
  it: on the expanded features after the depthwise conv-BN-ReLU6, before the linear 1x1
  projection. MobileNetV3 squeezes to a quarter of the expanded width (``reduction: 4``) with a
  hard-sigmoid gate (``options: {gate: hard_sigmoid}``); both are the user's choice here. Stages
  count resolutions (each stride-2 block starts the next one, stages 1-5); only ``standard``
  position exists.

Each block keeps its module and parameter names (the attention is a new ``attention``
sub-module), so pretrained torchvision weights load before or after injection; the block's class
is swapped for a subclass whose forward applies the attention.

From YAML::

    backbone:
      class_path: selab.models.torchvision_backbone
      init_args: {name: resnet50, attention: se}
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torchvision
from torch import nn
from torchvision.models.mobilenetv2 import InvertedResidual
from torchvision.models.resnet import BasicBlock, Bottleneck

from ._registry import register_backbone
from .layers import AttentionSpec, parse_attention
from .layers.placement import attach_attention
from .resnet import BasicForward, BottleneckForward

# What inject_attention supports, named in its error messages.
SUPPORTED = (
    "torchvision ResNet (resnet18/34/50/101/152), ResNeXt (resnext50_32x4d, resnext101_32x8d, "
    "resnext101_64x4d) and Wide ResNet (wide_resnet50_2, wide_resnet101_2) models, whose blocks "
    "are torchvision.models.resnet.BasicBlock / Bottleneck in layer1..layer4, and MobileNetV2 "
    "(mobilenet_v2, torchvision.models.mobilenetv2.InvertedResidual blocks in features)"
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
    """MobileNetV2's block with ``self.attention`` between the depthwise conv-BN-ReLU6 and the
    linear pointwise projection."""

    attention: nn.Module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expanded = self.attention(self.conv[:-2](x))
        out = self.conv[-1](self.conv[-2](expanded))
        return x + out if self.use_res_connect else out


ATTENTIVE = {
    BasicBlock: AttentiveBasicBlock,
    Bottleneck: AttentiveBottleneck,
    InvertedResidual: AttentiveInvertedResidual,
}


def _staged_blocks(model: nn.Module) -> Iterator[tuple[int, nn.Module]]:
    """(1-based stage, block) for every supported block, read from the model's structure."""
    layers = [getattr(model, f"layer{i}", None) for i in range(1, 5)]
    if all(isinstance(layer, nn.Sequential) for layer in layers):
        for stage, layer in enumerate(layers, start=1):
            for block in layer:
                if type(block) in (BasicBlock, Bottleneck):
                    yield stage, block
        return
    features = getattr(model, "features", None)
    if isinstance(features, nn.Sequential):
        stage = 1
        for block in features:
            if type(block) is InvertedResidual:
                if block.stride == 2:
                    stage += 1
                yield stage, block


def inject_attention(model: nn.Module, attention: AttentionSpec | str = "se") -> nn.Module:
    """Add ``attention`` to every supported block of a torchvision model, in place; returns it.

    ``attention="none"`` leaves the model as it is. Raises ``TypeError`` for models without
    supported blocks (the message lists what is supported) and ``ValueError`` for a model that
    already has attention injected.
    """
    spec = parse_attention(attention)
    if any(isinstance(m, tuple(ATTENTIVE.values())) for m in model.modules()):
        raise ValueError("this model already has attention injected; inject into a fresh model")
    blocks = list(_staged_blocks(model))
    if not blocks:
        raise TypeError(
            f"inject_attention does not support {type(model).__name__}: it supports {SUPPORTED}"
        )
    if not spec.enabled:
        return model
    mobilenet = isinstance(blocks[0][1], InvertedResidual)
    if mobilenet:
        spec.require_position("standard", backbone="MobileNetV2")
    spec.check_stages(max(stage for stage, _ in blocks), type(model).__name__)
    for stage, block in blocks:
        reference = next(block.parameters())
        if mobilenet:
            block.attention = spec.create(block.conv[-2].in_channels, stage)
        else:
            last_bn = block.bn3 if isinstance(block, Bottleneck) else block.bn2
            attach_attention(block, spec, stage, block.conv1.in_channels, last_bn.num_features)
        block.attention.to(device=reference.device, dtype=reference.dtype)
        block.__class__ = ATTENTIVE[type(block)]
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
    attention: AttentionSpec | str = "none",
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
    if not parse_attention(attention).enabled:  # any torchvision model, as it is
        return model
    return inject_attention(model, attention)
