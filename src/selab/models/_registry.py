"""Backbone registry, after torchvision's ``list_models``/``get_model``.

Public builders (``resnet20(**kwargs)``) register themselves with ``@register_backbone``; YAML can
name either the builder (``class_path: selab.models.resnet20``) or the class it returns.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

_BACKBONES: dict[str, Callable[..., nn.Module]] = {}


def register_backbone(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    name = fn.__name__
    if name in _BACKBONES:
        raise ValueError(f"backbone {name!r} is already registered")
    _BACKBONES[name] = fn
    return fn


def list_backbones() -> list[str]:
    return sorted(_BACKBONES)


def build_backbone(name: str, **kwargs) -> nn.Module:
    """Build the registered backbone ``name`` with ``kwargs`` (``num_classes``, ``attention``, ...)."""
    try:
        builder = _BACKBONES[name]
    except KeyError:
        raise ValueError(
            f"unknown backbone {name!r}; choose one of {', '.join(list_backbones())}"
        ) from None
    return builder(**kwargs)
