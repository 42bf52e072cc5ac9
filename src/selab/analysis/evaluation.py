"""Test-split evaluation: top-1/top-5, per-class accuracy, confusion, gates and ablations."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .checkpoints import example_input, pick_device
from .gates import GateHooks, GateStats, attention_blocks, without_attention


@dataclass
class Evaluation:
    """Predictions of a classifier on a labelled split, and what follows from them."""

    probs: torch.Tensor  # (N, K) softmax
    targets: torch.Tensor  # (N,)
    class_names: list[str]
    gates: GateStats | None = None
    seconds: float = 0.0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def predictions(self) -> torch.Tensor:
        return self.probs.argmax(1)

    def topk(self, k: int) -> float:
        k = min(k, self.num_classes)
        hits = (self.probs.topk(k, dim=1).indices == self.targets[:, None]).any(1)
        return float(hits.double().mean())

    @property
    def top1(self) -> float:
        return self.topk(1)

    @property
    def top5(self) -> float:
        return self.topk(5)

    @property
    def confusion(self) -> torch.Tensor:
        """(K, K) counts: row = true class, column = predicted class."""
        k = self.num_classes
        flat = self.targets * k + self.predictions
        return torch.bincount(flat, minlength=k * k).view(k, k)

    @property
    def per_class(self) -> dict[str, float]:
        confusion = self.confusion.double()
        totals = confusion.sum(1)
        accuracy = confusion.diagonal() / totals.clamp(min=1)
        return {
            name: float(acc) if total else math.nan
            for name, acc, total in zip(self.class_names, accuracy, totals, strict=True)
        }

    def per_class_table(self):
        """Images and accuracy per class, as a DataFrame."""
        import pandas as pd

        counts = self.confusion.sum(1).tolist()
        return pd.DataFrame(
            {
                "class": list(self.per_class),
                "images": counts,
                "accuracy": list(self.per_class.values()),
            }
        )

    def summary(self):
        """Images, top-1 and top-5, as a one-row DataFrame."""
        import pandas as pd

        return pd.DataFrame([{"images": len(self.targets), "top-1": self.top1, "top-5": self.top5}])

    def most_confused_table(self, k: int = 5):
        """:meth:`most_confused` as a DataFrame (true, predicted, images)."""
        import pandas as pd

        return pd.DataFrame(self.most_confused(k), columns=["true", "predicted", "images"])

    def most_confused(self, k: int = 5) -> list[tuple[str, str, int]]:
        """The ``k`` largest off-diagonal confusion counts as (true, predicted, count)."""
        return most_confused(self.confusion, self.class_names, k)

    def examples(self, true: str | int, predicted: str | int, n: int = 4) -> list[int]:
        """Indices of up to ``n`` images of class ``true`` predicted as ``predicted``, the most
        confident mistakes first."""
        t, p = (self.class_names.index(c) if isinstance(c, str) else c for c in (true, predicted))
        mask = (self.targets == t) & (self.predictions == p)
        indices = mask.nonzero().flatten()
        order = self.probs[indices, p].argsort(descending=True)
        return indices[order][:n].tolist()


def most_confused(
    confusion: torch.Tensor, class_names: Sequence[str], k: int = 5
) -> list[tuple[str, str, int]]:
    """The ``k`` largest off-diagonal entries of a (true x predicted) confusion matrix, largest
    first (ties: the order of the classes); zero counts are left out."""
    confusion = torch.as_tensor(confusion).clone()
    confusion.fill_diagonal_(0)
    n = confusion.shape[1]
    flat = confusion.flatten()
    order = sorted(range(flat.numel()), key=lambda i: (-int(flat[i]), i))
    pairs = []
    for index in order[:k]:
        count = int(flat[index])
        if count == 0:
            break
        pairs.append((class_names[index // n], class_names[index % n], count))
    return pairs


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    class_names: Sequence[str] | None = None,
    device: str | torch.device | None = "auto",
    gates: bool | GateStats = False,
) -> Evaluation:
    """Run ``model`` (eval mode) over a labelled loader.

    ``gates=True`` also collects attention gate statistics on the same pass (per-class profiles for
    every block and a 50-bin histogram over [0, 1]); pass a :class:`GateStats` to choose.
    """
    device = pick_device(device)
    class_names = list(class_names or getattr(model, "class_names", None) or [])
    training = model.training
    model.eval().to(device)
    probs, targets = [], []
    stats: GateStats | None = None
    hooks = None
    start = time.perf_counter()
    try:
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            if gates is not False and hooks is None:
                blocks = attention_blocks(model, images[:1])
                if isinstance(gates, GateStats):
                    stats = gates
                else:
                    n = len(class_names) or int(getattr(model, "num_classes", 0))
                    stats = GateStats(blocks, n, class_names, bins=50)
                hooks = GateHooks(stats.blocks, stats.update).__enter__()
            if stats is not None:
                stats.targets = labels
            probs.append(model(images).float().softmax(1).cpu())
            targets.append(labels.cpu())
    finally:
        if hooks is not None:
            hooks.__exit__(None, None, None)
        if stats is not None:
            stats.targets = None
        model.train(training)
    seconds = time.perf_counter() - start
    probs_t = torch.cat(probs)
    if not class_names:
        class_names = [str(i) for i in range(probs_t.shape[1])]
    return Evaluation(probs_t, torch.cat(targets), class_names, stats, seconds)


def stage_ablation(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    stages: Iterable[int] | str | None = None,
    device: str | torch.device | None = "auto",
):
    """Accuracy with all attention, then with the attention of some stages replaced by identity.

    ``stages``: None for the last stage only (the SE paper's ablation), ``"all"`` for each stage in
    turn plus every stage at once, or a list of 1-based stages. Each row is a pass over ``loader``.
    Returns a DataFrame (``attention removed``, ``blocks removed``, ``top-1``, ``top-5``, ``Δ top-1``).
    """
    import pandas as pd

    example = example_input(loader)
    blocks = attention_blocks(model, example)
    if not blocks:
        raise ValueError("the model has no attention blocks to remove")
    present = sorted({b.stage for b in blocks})
    if stages is None:
        variants = [[present[-1]]]
    elif stages == "all":
        variants = [[s] for s in present] + [present]
    else:
        variants = [[int(s)] for s in stages]  # type: ignore[union-attr]
    full = evaluate(model, loader, device=device)
    rows = [{"attention removed": "none", "blocks removed": 0, "top-1": full.top1, "top-5": full.top5, "Δ top-1": 0.0}]  # fmt: skip
    for removed in variants:
        names = [b.name for b in blocks if b.stage in removed]
        with without_attention(model, names):
            result = evaluate(model, loader, device=device)
        label = "all stages" if len(removed) > 1 else f"stage {removed[0]}"
        rows.append(
            {
                "attention removed": label,
                "blocks removed": len(names),
                "top-1": result.top1,
                "top-5": result.top5,
                "Δ top-1": result.top1 - full.top1,
            }
        )
    table = pd.DataFrame(rows)
    table.attrs["formats"] = {"Δ top-1": "{:+.4f}"}
    return table
