"""Parameters and MACs (``torch.utils.flop_counter``; MACs = FLOPs / 2)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .gates import attention_name, find_attention, without_attention


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def _flop_counter(model: nn.Module, example: torch.Tensor) -> FlopCounterMode:
    training = model.training
    counter = FlopCounterMode(display=False)
    param = next(model.parameters(), None)
    example = example.to(param.device) if param is not None else example
    try:
        model.eval()
        with counter:
            model(example)
    finally:
        model.train(training)
    return counter


def count_macs(model: nn.Module, example: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass on ``example`` (pass one image for per-image).

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` (convolutions, matrix products,
    attention), which reports FLOPs = 2 x MACs; element-wise work (ReLU, pooling, the sigmoid
    and the channel rescaling of SE) is not counted, as in the papers' tables.
    """
    return _flop_counter(model, example).get_total_flops() // 2


def complexity(model: nn.Module, example: torch.Tensor, macs: int | None = None):
    """Parameters and MACs per image with and without the attention blocks, and the attention's
    share, as a DataFrame (``macs``: the model's count if already known, to save a pass).

    Rows ``with attention``, ``without attention``, ``attention`` (the difference); columns
    ``params``, ``MACs`` and ``params %`` / ``MACs %`` of the whole model.
    """
    import pandas as pd

    example = example[:1]
    params = count_params(model)
    macs = count_macs(model, example) if macs is None else macs
    attention_params = sum(count_params(m) for _, m in find_attention(model))
    with without_attention(model):
        base_macs = count_macs(model, example)
    rows = [
        ("with attention", params, macs),
        ("without attention", params - attention_params, base_macs),
        ("attention", attention_params, macs - base_macs),
    ]
    table = pd.DataFrame(rows, columns=["model", "params", "MACs"])
    table["params %"] = 100 * table["params"] / max(params, 1)
    table["MACs %"] = 100 * table["MACs"] / max(macs, 1)
    table.attrs["formats"] = {"params %": "{:.2f}", "MACs %": "{:.2f}"}
    return table


def module_table(model: nn.Module, example: torch.Tensor):
    """Parameters and MACs per image of each top-level part of ``model``, attention summed apart,
    as a DataFrame (columns ``module``, ``type``, ``params``, ``MACs``).

    The part rows include their attention blocks; the attention row repeats that share. The last
    row, ``total``, is the whole model: ``table["MACs"].iloc[-1]`` is its MACs per image.
    """
    import pandas as pd

    example = example[:1]
    counter = _flop_counter(model, example)
    counts = counter.get_flop_counts()
    root = type(model).__name__

    def macs(path: str) -> int:
        return sum(counts.get(f"{root}.{path}", {}).values()) // 2

    rows = [
        {"module": name, "type": type(child).__name__, "params": count_params(child), "MACs": macs(name)}
        for name, child in model.named_children()
    ]  # fmt: skip
    attention = find_attention(model)
    if attention:
        rows.append(
            {
                "module": f"attention ({len(attention)} blocks)",
                "type": ", ".join(sorted({attention_name(m) for _, m in attention})),
                "params": sum(count_params(m) for _, m in attention),
                "MACs": sum(macs(name) for name, _ in attention),
            }
        )
    total = counter.get_total_flops() // 2
    rows.append({"module": "total", "type": root, "params": count_params(model), "MACs": total})
    return pd.DataFrame(rows, columns=["module", "type", "params", "MACs"])
