"""Backbones and channel-attention layers, each registered by name."""

from ._registry import build_backbone, list_backbones, register_backbone
from .cifar_resnet import CifarResNet, resnet20, resnet32, resnet44, resnet56, resnet110
from .inject import inject_attention, torchvision_backbone
from .layers import (
    AttentionSpec,
    Cbam,
    CbamChannelAttention,
    ConvChannelAttention,
    EfficientChannelAttention,
    SqueezeExcite,
    SqueezeExciteAvgMaxAdd,
    SqueezeExciteAvgMaxMul,
    SqueezeExciteDualAdd,
    SqueezeExciteDualMul,
    SqueezeExciteMax,
    create_attention,
    eca_kernel_size,
    get_attention,
    hidden_channels,
    list_attention,
    register_attention,
)
from .mobilenet import MobileNetV1, mobilenetv1
from .preact_resnet import PreActResNet, resnet164
from .resnet import ResNet, resnet18, resnet34, resnet50
from .resnext import (
    CifarResNeXt,
    resnext29_2x64d,
    resnext29_4x64d,
    resnext29_8x64d,
    resnext29_16x64d,
)
from .shake_shake import (
    ShakeShakeNet,
    shake_shake26_2x32d,
    shake_shake26_2x64d,
    shake_shake26_2x96d,
)
from .speedrun import SpeedrunNet, speedrun_net  # noqa: F401
from .vgg_small import VGGSmall, vgg_small
from .wrn import WideResNet, wrn16_8, wrn28_10

__all__ = [
    "AttentionSpec",
    "Cbam",
    "CbamChannelAttention",
    "CifarResNeXt",
    "CifarResNet",
    "ConvChannelAttention",
    "EfficientChannelAttention",
    "MobileNetV1",
    "PreActResNet",
    "ResNet",
    "ShakeShakeNet",
    "SqueezeExcite",
    "SqueezeExciteAvgMaxAdd",
    "SqueezeExciteAvgMaxMul",
    "SqueezeExciteDualAdd",
    "SqueezeExciteDualMul",
    "SqueezeExciteMax",
    "VGGSmall",
    "WideResNet",
    "build_backbone",
    "create_attention",
    "eca_kernel_size",
    "get_attention",
    "hidden_channels",
    "inject_attention",
    "list_attention",
    "list_backbones",
    "mobilenetv1",
    "register_attention",
    "register_backbone",
    "resnet18",
    "resnet20",
    "resnet32",
    "resnet34",
    "resnet44",
    "resnet50",
    "resnet56",
    "resnet110",
    "resnet164",
    "resnext29_2x64d",
    "resnext29_4x64d",
    "resnext29_8x64d",
    "resnext29_16x64d",
    "shake_shake26_2x32d",
    "shake_shake26_2x64d",
    "shake_shake26_2x96d",
    "torchvision_backbone",
    "vgg_small",
    "wrn16_8",
    "wrn28_10",
]
