"""Weight initialisation shared by the backbones, by name (a backbone's ``init`` option)."""

from __future__ import annotations

from collections.abc import Callable

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


def _default(model: nn.Module) -> None:
    """PyTorch's own initialisation, as each layer's constructor left it."""


def _kaiming(model: nn.Module) -> None:
    """He-normal convolutions (fan_out, ReLU gain), zero conv biases, identity BN; linear layers
    keep PyTorch's default (He et al. 2015 as torchvision's ResNet applies it)."""
    he_init_(model)
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.bias is not None:
            nn.init.zeros_(m.bias)


def _kaiming_in(model: nn.Module) -> None:
    """He-normal (fan_in, ReLU gain) convolutions and linear layers with zero biases, identity BN:
    keeps the activations' scale through ReLUs in networks without normalisation."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _torchvision(model: nn.Module) -> None:
    """torchvision's VGG / MobileNetV2 scheme: He-normal (fan_out) convolutions, identity BN,
    N(0, 0.01) fully connected layers, zero biases. 1x1 convolutions on a pooled (N, C, 1, 1)
    descriptor are fully connected layers too (the attention MLPs), so they get N(0, 0.01)."""
    from .layers import attention_classes

    attention_types = tuple(attention_classes().values())
    fully_connected = {
        id(conv)
        for module in model.modules()
        if isinstance(module, attention_types)
        for conv in module.modules()
        if isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1)
    }
    for m in model.modules():
        if isinstance(m, nn.Linear) or id(m) in fully_connected:
            nn.init.normal_(m.weight, 0.0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


INIT_SCHEMES: dict[str, Callable[[nn.Module], None]] = {
    "default": _default,
    "kaiming": _kaiming,
    "kaiming_in": _kaiming_in,
    "torchvision": _torchvision,
}


def init_weights(model: nn.Module, scheme: str) -> None:
    """Initialise ``model`` in place with the named scheme (see ``INIT_SCHEMES``)."""
    try:
        INIT_SCHEMES[scheme](model)
    except KeyError:
        raise ValueError(
            f"unknown init {scheme!r}; choose one of {', '.join(INIT_SCHEMES)}"
        ) from None
