"""Backbones and channel-attention layers, each registered by name."""

from ._registry import build_backbone, list_backbones, register_backbone
from .cifar_resnet import CifarResNet, resnet20, resnet32, resnet44, resnet56, resnet110
from .layers import (
    SqueezeExcite,
    create_attention,
    get_attention,
    list_attention,
    register_attention,
)

__all__ = [
    "CifarResNet",
    "SqueezeExcite",
    "build_backbone",
    "create_attention",
    "get_attention",
    "list_attention",
    "list_backbones",
    "register_attention",
    "register_backbone",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "resnet110",
]
