"""Published parameter counts of the backbones, and the table ``python -m selab.models`` prints.

Counts are taken on the ``meta`` device (no memory, no initialisation cost, no forward pass).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ._registry import build_backbone


@dataclass(frozen=True)
class Reference:
    """A backbone as its paper counts it: ``kwargs`` for the builder, and the published numbers.

    ``params`` / ``se_params`` are as printed (millions, rounded to the digits shown, so they are
    matched to within one unit of their last digit); ``None`` where nothing was published.
    """

    name: str
    params: str | None
    source: str
    kwargs: dict = field(default_factory=dict)
    se_params: str | None = None


REFERENCES = (
    Reference("resnet20", "0.27", "He et al. 2016, Table 6", {"num_classes": 10}),
    Reference("resnet56", "0.85", "He et al. 2016, Table 6", {"num_classes": 10}),
    Reference("resnet110", "1.7", "He et al. 2016, Table 6", {"num_classes": 10}),
    Reference("resnet164", "1.7", "He et al. 2016b (Identity mappings)", {"num_classes": 10}),
    Reference(
        "resnet18",
        "11.69",
        "torchvision resnet18 (exact: 11,689,512)",
        {"num_classes": 1000, "stem": "imagenet"},
    ),
    Reference(
        "resnet34",
        "21.80",
        "torchvision resnet34 (exact: 21,797,672)",
        {"num_classes": 1000, "stem": "imagenet"},
    ),
    Reference(
        "resnet50",
        "25.56",
        "torchvision resnet50 (exact: 25,557,032); SE: Hu et al. 2018",
        {"num_classes": 1000, "stem": "imagenet"},
        se_params="28.09",
    ),
    Reference("wrn16_8", "11.0", "Zagoruyko & Komodakis 2016", {"num_classes": 10}),
    Reference("wrn28_10", "36.5", "Zagoruyko & Komodakis 2016", {"num_classes": 10}),
    Reference("mobilenetv1", "4.2", "Howard et al. 2017, Table 8", {"num_classes": 1000}),
    Reference(
        "mobilenetv1",
        "1.3",
        "Howard et al. 2017, Table 6 (alpha 0.5)",
        {"num_classes": 1000, "alpha": 0.5},
    ),
    Reference("vgg_small", "2.633418", "VGG study note's code (exact)", {"num_classes": 10}),
    Reference(
        "vgg_small",
        "2.800522",
        "VGG study note's code (exact)",
        {"num_classes": 10, "connection": "skip"},
    ),
    Reference(
        "vgg_small",
        "2.674602",
        "VGG study note's code (exact)",
        {"num_classes": 10, "connection": "dense"},
    ),
    Reference(
        "vgg_small",
        "2.641738",
        "VGG study note's code (exact)",
        {"num_classes": 10, "attention": "ca_conv"},
    ),
    Reference(
        "mobilenetv1",
        "4.095678",
        "STL10 study note's code with SE (exact)",
        {
            "num_classes": 10,
            "stem": "seed",
            "attention": {"name": "se", "options": {"min_hidden": 1}},
        },
    ),
    Reference(
        "shake_shake26_2x32d",
        "2.922714",
        "Shake-Shake note's code (exact)",
        {"num_classes": 10, "variant": "seed"},
    ),
    Reference("shake_shake26_2x32d", "2.9", "Gastaldi 2017", {"num_classes": 10}),
    Reference("shake_shake26_2x64d", "11.7", "Gastaldi 2017", {"num_classes": 10}),
    Reference("shake_shake26_2x96d", "26.2", "Gastaldi 2017", {"num_classes": 10}),
    Reference(
        "resnext29_2x64d",
        None,
        "Xie et al. 2017 (cardinality study; no count published)",
        {"num_classes": 10},
    ),
    Reference(
        "resnext29_4x64d",
        None,
        "Xie et al. 2017 (cardinality study; no count published)",
        {"num_classes": 10},
    ),
    Reference("resnext29_8x64d", "34.4", "Xie et al. 2017, Table 7", {"num_classes": 10}),
    Reference("resnext29_16x64d", "68.1", "Xie et al. 2017, Table 7", {"num_classes": 10}),
)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_backbone(name: str, **kwargs) -> int:
    """Parameters of ``build_backbone(name, **kwargs)``, built on the meta device."""
    with torch.device("meta"):
        return count_parameters(build_backbone(name, **kwargs))


def tolerance(published: str) -> float:
    """One unit of the last printed digit, in parameters: "1.7" (millions) -> 100,000."""
    decimals = len(published.partition(".")[2])
    return 10.0 ** (6 - decimals)


def describe(reference: Reference) -> str:
    options = {k: v for k, v in reference.kwargs.items() if k not in ("num_classes", "attention")}
    spec = reference.kwargs.get("attention")
    if spec is not None:
        options["attention"] = spec if isinstance(spec, str) else spec["name"]
    extra = ", ".join(f"{k}={v}" for k, v in options.items())
    return f"{reference.name}({extra})" if extra else reference.name


def parameter_table(attention: str = "se", reduction: int = 16) -> str:
    """Markdown table: backbone, classes, parameters without / with ``attention``, published."""
    rows = [
        "| backbone | classes | params | with SE (r = 16) | published | source |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for ref in REFERENCES:
        base = count_backbone(ref.name, **ref.kwargs)
        if "attention" in ref.kwargs:  # the reference network has its own attention
            with_attn = "—"
        else:
            spec = {"name": attention, "reduction": reduction}
            with_attn = f"{count_backbone(ref.name, **ref.kwargs, attention=spec):,}"
        if ref.params is None:
            published = "—"
        elif tolerance(ref.params) < 1.5:  # an exact count
            published = f"{round(float(ref.params) * 1e6):,}"
        else:
            published = f"{ref.params}M"
        if ref.se_params is not None:
            published += f" / SE {ref.se_params}M"
        rows.append(
            f"| {describe(ref)} | {ref.kwargs.get('num_classes', '')} | {base:,} | "
            f"{with_attn} | {published} | {ref.source} |"
        )
    return "\n".join(rows)
