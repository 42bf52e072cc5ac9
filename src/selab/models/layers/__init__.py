"""Channel-attention layers; importing a variant's module registers it."""

from .create_attn import create_attention, get_attention, list_attention, register_attention
from .squeeze_excite import SqueezeExcite, hidden_channels

__all__ = [
    "SqueezeExcite",
    "create_attention",
    "get_attention",
    "hidden_channels",
    "list_attention",
    "register_attention",
]
