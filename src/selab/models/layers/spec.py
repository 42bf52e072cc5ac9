"""``AttentionSpec``: which channel attention a backbone uses, and where, as one value.

Every backbone takes ``attention: AttentionSpec | str`` and hands the spec to its blocks, which
call :meth:`AttentionSpec.create` with their width and their stage. In YAML either form works::

    attention: se                                   # the variant's defaults everywhere
    attention: {name: se, reduction: 8, stages: [2, 3], options: {min_hidden: 1}}

and an overlay config can change one field (``attention: {name: se_max}`` keeps the recipe's
``reduction`` and ``stages``).

The module a block gets knows its ``stage`` (1-based), so analysis code (gate statistics, the
excitation monitor, ablations) groups attention modules by stage without parsing module names.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from torch import nn

from .create_attn import create_attention, get_attention
from .placement import check_position


@dataclass(frozen=True)
class AttentionSpec:
    """A channel-attention choice for a whole backbone.

    Args:
        name: a registered variant (``se``, ``eca``, ...; ``selab.models.list_attention()``) or
            ``none``.
        reduction: the bottleneck's ratio r (hidden width C // r); None keeps the variant's
            default. Variants without a bottleneck (``eca``, ``ca_conv``) reject a value.
        position: where it sits in a residual block: ``standard`` (end of the residual branch),
            ``pre``, ``post`` or ``identity`` (the SE paper's integration study); backbones without
            residual blocks take only ``standard``.
        stages: the 1-based stages that get attention; None for all.
        options: the variant's other options (``min_hidden``, ``gate``, ``bias``, ``kernel_size``,
            ...); unknown ones are an error when the backbone is built.
    """

    name: str = "none"
    reduction: int | None = None
    position: str = "standard"
    stages: tuple[int, ...] | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        get_attention(self.name)  # an unknown name fails here, listing the known ones
        check_position(self.position)
        if self.reduction is not None and self.reduction < 1:
            raise ValueError(f"attention reduction must be >= 1, got {self.reduction}")
        if self.stages is not None:
            stages = tuple(int(s) for s in self.stages)
            if any(s < 1 for s in stages):
                raise ValueError(f"attention stages are 1-based, got {list(stages)}")
            object.__setattr__(self, "stages", stages)
        object.__setattr__(self, "options", dict(self.options or {}))

    @classmethod
    def parse(cls, value: AttentionSpec | str | dict | None) -> AttentionSpec:
        """A spec from a spec, a variant name, a dict of fields or None (no attention)."""
        if isinstance(value, AttentionSpec):
            return value
        if value is None:
            return cls()
        if isinstance(value, str):
            return cls(name=value)
        if isinstance(value, dict):
            unknown = set(value) - {"name", "reduction", "position", "stages", "options"}
            if unknown:
                raise ValueError(
                    f"attention has no field {', '.join(sorted(map(repr, unknown)))}; it takes "
                    "name, reduction, position, stages and options"
                )
            return cls(**value)
        raise TypeError(f"attention must be a name, a dict or an AttentionSpec, got {value!r}")

    @property
    def enabled(self) -> bool:
        return self.name != "none"

    def applies_to(self, stage: int | None) -> bool:
        """Whether blocks of 1-based ``stage`` get attention."""
        return self.enabled and (self.stages is None or stage is None or stage in self.stages)

    def with_name(self, name: str) -> AttentionSpec:
        return replace(self, name=name)

    def require_position(self, *positions: str, backbone: str) -> None:
        """Reject a position this backbone has no place for."""
        if self.enabled and self.position not in positions:
            raise ValueError(
                f"{backbone} takes attention position {' or '.join(map(repr, positions))}, "
                f"got {self.position!r}"
            )

    def check_stages(self, count: int, backbone: str) -> None:
        """Reject stages the backbone does not have (a typo would silently mean no attention)."""
        if self.enabled and self.stages is not None:
            missing = [s for s in self.stages if s > count]
            if missing:
                raise ValueError(
                    f"{backbone} has stages 1..{count}; attention stages {missing} do not exist"
                )

    def create(self, channels: int, stage: int | None = None) -> nn.Module:
        """The attention module for a ``channels``-wide map in ``stage`` (``nn.Identity`` when
        this stage gets none). The module's ``stage`` attribute records where it sits."""
        if not self.applies_to(stage):
            return nn.Identity()
        kwargs = dict(self.options)
        if self.reduction is not None:
            kwargs["reduction"] = self.reduction
        module = create_attention(self.name, channels, **kwargs)
        module.stage = stage
        return module


def parse_attention(value: AttentionSpec | str | dict | None) -> AttentionSpec:
    """Shorthand for :meth:`AttentionSpec.parse`, for backbone constructors."""
    return AttentionSpec.parse(value)
