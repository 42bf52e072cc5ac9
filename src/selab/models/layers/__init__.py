"""Channel-attention layers; importing a variant's module registers it."""

from .ca_conv import ConvChannelAttention
from .cbam import Cbam, CbamChannelAttention, CbamSpatialAttention
from .create_attn import (
    attention_classes,
    create_attention,
    get_attention,
    list_attention,
    register_attention,
    variant_options,
)
from .eca import EfficientChannelAttention, eca_kernel_size
from .se_pooling import (
    SqueezeExciteAvgMaxAdd,
    SqueezeExciteAvgMaxMul,
    SqueezeExciteDualAdd,
    SqueezeExciteDualMul,
    SqueezeExciteMax,
)
from .spec import AttentionSpec, parse_attention
from .squeeze_excite import GATES, SqueezeExcite, hidden_channels

__all__ = [
    "GATES",
    "AttentionSpec",
    "Cbam",
    "CbamChannelAttention",
    "CbamSpatialAttention",
    "ConvChannelAttention",
    "EfficientChannelAttention",
    "SqueezeExcite",
    "SqueezeExciteAvgMaxAdd",
    "SqueezeExciteAvgMaxMul",
    "SqueezeExciteDualAdd",
    "SqueezeExciteDualMul",
    "SqueezeExciteMax",
    "attention_classes",
    "create_attention",
    "eca_kernel_size",
    "get_attention",
    "hidden_channels",
    "list_attention",
    "parse_attention",
    "register_attention",
    "variant_options",
]
