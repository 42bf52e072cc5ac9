"""Figures for the notebooks and TensorBoard (matplotlib, imported when a plot is made)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .evaluation import Evaluation
from .gates import GateStats, default_class_blocks
from .runs import Run

# Figures are built with ``matplotlib.figure.Figure`` (no pyplot): no global state, no GUI backend,
# nothing to close. Jupyter shows a figure that ends a cell; TensorBoard takes it via add_figure.


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def plot_confusion(confusion: torch.Tensor, class_names: Sequence[str], normalize: bool = True):
    """Confusion matrix (rows true, columns predicted) with class names on both axes; colours are
    row-normalised when ``normalize``, cells show counts."""
    confusion = torch.as_tensor(confusion).cpu()
    k = len(class_names)
    colours = confusion.double()
    if normalize:
        colours = colours / colours.sum(1, keepdim=True).clamp(min=1)
    size = max(4.0, 0.45 * k + 2)
    fig = _figure(size + 1.2, size)
    ax = fig.subplots()
    image = ax.imshow(colours.numpy(), cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, label="fraction of the true class" if normalize else "images")
    ax.set_xticks(range(k), class_names, rotation=90 if k > 5 else 0)
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 30:
        threshold = float(colours.max()) / 2
        for i in range(k):
            for j in range(k):
                colour = "white" if colours[i, j] > threshold else "black"
                ax.text(
                    j, i, int(confusion[i, j]), ha="center", va="center", fontsize=7, color=colour
                )
    ax.set_title("confusion matrix")
    return fig


def plot_per_class(per_class: dict[str, float], title: str = "per-class accuracy"):
    names = list(per_class)
    values = [0.0 if math.isnan(v) else v for v in per_class.values()]
    fig = _figure(max(4.0, 0.4 * len(names) + 2), 3.5)
    ax = fig.subplots()
    ax.bar(range(len(names)), values, color="tab:blue")
    ax.set_xticks(range(len(names)), names, rotation=90 if len(names) > 5 else 0)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    return fig


def _unnormalize(image: torch.Tensor, mean, std) -> torch.Tensor:
    mean = torch.as_tensor(mean).view(-1, 1, 1)
    std = torch.as_tensor(std).view(-1, 1, 1)
    return (image.float().cpu() * std + mean).clamp(0, 1)


def plot_confused_examples(
    evaluation: Evaluation, dataset, mean, std, pairs: int = 3, per_pair: int = 4
):
    """For the most-confused (true, predicted) pairs, the most confident wrong images
    (``dataset[i][0]`` normalised with ``mean``/``std``, as the data module gives them)."""
    confused = evaluation.most_confused(pairs)
    if not confused:
        return None
    fig = _figure(1.8 * per_pair + 1.5, 2.0 * len(confused) + 0.4)
    axes = fig.subplots(len(confused), per_pair, squeeze=False)
    for row, (true, predicted, count) in enumerate(confused):
        indices = evaluation.examples(true, predicted, per_pair)
        p = evaluation.class_names.index(predicted)
        for col in range(per_pair):
            ax = axes[row][col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col < len(indices):
                image = _unnormalize(dataset[indices[col]][0], mean, std)
                ax.imshow(image.permute(1, 2, 0).numpy())
                ax.set_title(f"p={float(evaluation.probs[indices[col], p]):.2f}", fontsize=8)
            else:
                ax.set_axis_off()
        axes[row][0].set_ylabel(f"{true} → {predicted}\n({count})", fontsize=9)
    fig.suptitle("most-confused pairs, true → predicted (count): the most confident mistakes")
    return fig


def plot_gate_distributions(stats: GateStats):
    """Per stage (columns): the distribution of every gate value of each block (top, when
    ``stats`` has histograms) and box plots of the per-channel mean gates (bottom)."""
    stages = stats.stages()
    if not stages:
        return None
    rows = 2 if stats.bins else 1
    fig = _figure(4.2 * len(stages), 3.2 * rows)
    axes = fig.subplots(rows, len(stages), squeeze=False)
    for col, (stage, blocks) in enumerate(stages.items()):
        if stats.bins:
            ax = axes[0][col]
            low, high = stats.value_range
            edges = torch.linspace(low, high, stats.bins + 1)
            centres = ((edges[1:] + edges[:-1]) / 2).numpy()
            for block in blocks:
                hist = stats.histogram(block.name)
                ax.plot(centres, (hist / hist.sum().clamp(min=1)).numpy(), label=block.short_name)
            ax.set_xlabel("gate value (all images and channels)")
            ax.set_ylabel("fraction")
            ax.set_title(f"stage {stage}")
            ax.legend(fontsize=6)
        ax = axes[-1][col]
        ax.boxplot([stats.mean(b.name).numpy() for b in blocks])
        ax.set_xticks(
            range(1, len(blocks) + 1), [b.short_name for b in blocks], rotation=45, fontsize=7
        )
        ax.set_ylabel("mean gate per channel")
        if not stats.bins:
            ax.set_title(f"stage {stage}")
    return fig


def plot_class_gates(
    stats: GateStats,
    blocks: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
    max_classes: int = 10,
):
    """Mean gate per channel for each class, one panel per block, as in the SE paper's Fig. 6
    (black: the mean over all images). Blocks default to the last of each stage."""
    if blocks is None:
        blocks = [n for n in default_class_blocks(stats.blocks) if n in stats.class_sums]
    names = [stats.block(n).name for n in blocks]
    if not names:
        return None
    classes = list(classes) if classes is not None else stats.class_names[:max_classes]
    fig = _figure(3.6 * len(names) + 1.2, 3.2)
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, names, strict=True):
        block = stats.block(name)
        per_class = stats.class_mean(name)
        for cls in classes:
            ax.plot(per_class[stats.class_names.index(cls)].numpy(), lw=0.9, label=cls)
        ax.plot(stats.mean(name).numpy(), color="black", lw=1.6, label="all")
        ax.set_title(f"{block.short_name} (stage {block.stage})", fontsize=9)
        ax.set_xlabel("channel")
    axes[0].set_ylabel("mean gate")
    axes[-1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig


def plot_learning_curves(
    runs: Sequence[Run], tags: Sequence[str] = ("train/loss", "val/loss", "val/acc_top1")
):
    """One panel per tag, one line per run, against the global step."""
    fig = _figure(4.5 * len(tags), 3.8)
    axes = fig.subplots(1, len(tags), squeeze=False)[0]
    for ax, tag in zip(axes, tags, strict=True):
        plotted = False
        for run in runs:
            values = run.series(tag)
            if len(values):
                marker = "." if len(values) < 20 else None
                ax.plot(values.index, values.to_numpy(), label=run.name, marker=marker)
                plotted = True
        if not plotted:  # e.g. train/loss of a run older than the per-epoch logging interval
            ax.text(
                0.5, 0.5, f"no run logged {tag}", ha="center", va="center", transform=ax.transAxes
            )
        ax.set_title(tag)
        ax.set_xlabel("step")
    if any(ax.get_legend_handles_labels()[0] for ax in axes):
        axes[-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig
