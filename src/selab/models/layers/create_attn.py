"""Channel-attention registry: ``create_attention("se", channels)`` builds a variant by name.

Modelled on timm's ``layers/create_attn.py``: each variant lives in its own small file and
registers itself under a name, so adding one is a new file plus one import in ``layers/__init__``.
Backbones do not call this directly: they take an :class:`~selab.models.layers.AttentionSpec`.
"""

from __future__ import annotations

import inspect
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


def attention_classes() -> dict[str, type[nn.Module]]:
    """Every registered variant by name (``"none"`` excluded)."""
    return dict(_ATTENTION)


def variant_options(cls: Callable[..., nn.Module]) -> set[str] | None:
    """Keyword options ``cls(channels, ...)`` accepts (``None``: any, it takes ``**kwargs``)."""
    params = list(inspect.signature(cls).parameters.values())[1:]  # the first is channels
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params}


def create_attention(name: str | None, channels: int, **kwargs) -> nn.Module:
    """Build the attention module ``name`` for a ``channels``-wide feature map.

    ``None`` and ``"none"`` give ``nn.Identity`` (options ignored). An option the variant does not
    take (``reduction`` for ``eca``, say) is an error, never silently ignored.
    """
    cls = get_attention(name or "none")
    if cls is None:
        return nn.Identity()
    options = variant_options(cls)
    if options is not None:
        unknown = sorted(set(kwargs) - options)
        if unknown:
            raise ValueError(
                f"attention {name!r} has no option {', '.join(map(repr, unknown))}; "
                f"it takes {', '.join(sorted(options)) or 'none'}"
            )
    return cls(channels, **kwargs)
