"""Weight initialisation shared by the backbones."""

from __future__ import annotations

from torch import nn


def he_init_(model: nn.Module, zero_linear_bias: bool = False) -> None:
    """He-normal convolutions (fan_out, ReLU gain) and identity BatchNorm, as in He et al. 2015 and
    torchvision's ResNet; optionally zero the classifier's bias (the CIFAR papers' reference code)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif zero_linear_bias and isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)
