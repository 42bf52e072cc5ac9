"""Channel-attention registry: blocks take ``attention="se"`` and build it with ``create_attention``.

Modelled on timm's ``layers/create_attn.py``: each variant lives in its own small file and
registers itself under a name, so adding one is a new file plus one import in ``layers/__init__``.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

_ATTENTION: dict[str, Callable[..., nn.Module]] = {}


def register_attention(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator that makes a channel-attention module available as ``attention=name``."""

    def wrap(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _ATTENTION or name == "none":
            raise ValueError(f"attention {name!r} is already registered")
        _ATTENTION[name] = cls
        return cls

    return wrap


def list_attention() -> list[str]:
    """Every name ``create_attention`` accepts, ``"none"`` included."""
    return ["none", *sorted(_ATTENTION)]


def get_attention(name: str) -> Callable[..., nn.Module] | None:
    """The class registered as ``name`` (``None`` for ``"none"``); a clear error if unknown."""
    if name == "none":
        return None
    try:
        return _ATTENTION[name]
    except KeyError:
        raise ValueError(
            f"unknown attention {name!r}; choose one of {', '.join(list_attention())}"
        ) from None


def create_attention(name: str | None, channels: int, **kwargs) -> nn.Module:
    """Build the attention module ``name`` for a ``channels``-wide feature map.

    ``None`` and ``"none"`` give ``nn.Identity`` so a backbone runs with and without attention from
    the same config.
    """
    cls = get_attention(name or "none")
    if cls is None:
        return nn.Identity()
    return cls(channels, **kwargs)
