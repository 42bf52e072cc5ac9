"""SE with other squeeze operators: the pooling study.

``se_max`` is the squeeze-operator ablation of Hu et al., "Squeeze-and-Excitation Networks"
(arXiv:1709.01507): global max pooling instead of average pooling. The four others combine both
descriptors, after Woo et al.'s observation in CBAM (arXiv:1807.06521) that max pooling adds
information average pooling misses; they differ in *where* the two are combined:

- ``se_avgmax_mul``: ``gate(fc(avg * max))``  ("Avg * Max -> fc"),
- ``se_avgmax_add``: ``gate(fc(avg + max))``  ("Avg + Max -> fc"),
- ``se_dual_mul``:   ``gate(fc(avg)) * gate(fc(max))``  ("Avg, Max -> fc -> Avg * Max"),
- ``se_dual_add``:   ``gate(fc(avg)) + gate(fc(max))``  ("Avg, Max -> fc -> Avg + Max").

``fc`` is SE's bottleneck, one set of weights shared by both descriptors, so every variant has
exactly the parameters of ``se``. The dual gates are not renormalised: with the sigmoid gate
``se_dual_add`` rescales channels by a factor in (0, 2) (and (-2, 2) with ``gate="tanh"``), which is
part of what the study compares, so it is left unclamped on purpose.
"""

from __future__ import annotations

import torch

from .create_attn import register_attention
from .squeeze_excite import SqueezeExcite, avg_pool, max_pool


@register_attention("se_max")
class SqueezeExciteMax(SqueezeExcite):
    """SE squeezing with global max pooling."""

    def excitation(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(self.bottleneck(max_pool(x)))


@register_attention("se_avgmax_mul")
class SqueezeExciteAvgMaxMul(SqueezeExcite):
    """SE on the product of the average and max descriptors."""

    def excitation(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(self.bottleneck(avg_pool(x) * max_pool(x)))


@register_attention("se_avgmax_add")
class SqueezeExciteAvgMaxAdd(SqueezeExcite):
    """SE on the sum of the average and max descriptors."""

    def excitation(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(self.bottleneck(avg_pool(x) + max_pool(x)))


@register_attention("se_dual_mul")
class SqueezeExciteDualMul(SqueezeExcite):
    """Average and max descriptors each through the shared bottleneck and gate; gates multiplied."""

    def excitation(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(self.bottleneck(avg_pool(x))) * self.gate(self.bottleneck(max_pool(x)))


@register_attention("se_dual_add")
class SqueezeExciteDualAdd(SqueezeExcite):
    """Average and max descriptors each through the shared bottleneck and gate; gates added.

    The gate lies in (0, 2) with the default sigmoid: deliberately not clamped.
    """

    def excitation(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(self.bottleneck(avg_pool(x))) + self.gate(self.bottleneck(max_pool(x)))
