"""``selab study report``: every cell's metrics into pandas, statistics per arm, tables and a figure.

Writes into the study folder, each file to a temporary name and then renamed over the old one:

- ``cells.csv``: one row per (arm, seed): status, epochs, each reported number, the arguments the
  cell added to the study file (``--set`` values and arguments after ``--``: a smoke cell shows
  them), epochs spent at chance level, flags (never left chance, diverged, shorter than the
  recipe, trained in another precision than its arguments ask: a bf16 recipe on a CPU without
  native bf16), training time, commit, hardware and folder.
- ``results.csv``: one row per (number, arm): n, mean, std, 95% t-interval, min, max, the paired
  difference to the baseline with its interval, the published number and the difference to it.
- ``results.md``: the same as Markdown tables, then every cell's learning curve (the metric
  after each epoch) when it was logged for more than one epoch.
- ``results.png``: per arm every seed's value with the mean and its 95% interval (published
  numbers as crosses), and the learning curves per arm.

Only finished cells (test results logged) count in the statistics; the others are listed with
their status and the values they have logged so far. A cell that trained fewer epochs than the
recipe (or on a limited share of the batches) is never set against the published number: the
difference is left out and the report says why. Cells are read from the study folder and from
any results folders given (:mod:`.evidence`); for each (arm, seed) the first finished copy counts.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from .. import runs
from ..tables import to_markdown
from . import cells as cellplan
from . import identity as cell_identity
from .evidence import cell_roots
from .spec import Study
from .stats import paired_difference, summarize

CHANCE_MARGIN = 0.01  # an epoch within 1 point of 1/classes is at chance level
NEVER_LEFT_CHANCE, DIVERGED, SHORT = "never left chance", "diverged", "short"
PRECISION = "precision"

CELLS_CSV, RESULTS_CSV, RESULTS_MD, RESULTS_PNG = (
    "cells.csv",
    "results.csv",
    "results.md",
    "results.png",
)


def cell_values(study: Study, metrics) -> dict[str, float | None]:
    """The numbers a study reports for one cell, in the study's units."""
    values: dict[str, float | None] = {}
    final = runs.final_value(metrics, study.metric)
    if study.last_epochs:
        per_epoch = runs.epoch_values(metrics, study.metric)
        k = study.last_epochs
        last_k = float(per_epoch.iloc[-k:].mean()) if len(per_epoch) >= k else None
        values[f"{study.metric} last {k} mean"] = last_k
        values[f"{study.metric} final"] = final
    else:
        values[study.metric] = final
    for name in study.other_metrics:
        values.setdefault(name, runs.final_value(metrics, name))
    return {k: None if v is None else v * study.scale_of(k) for k, v in values.items()}


def curve_metric(study: Study) -> str:
    """The per-epoch metric drawn as learning curves: the study's metric, or its ``val/``
    counterpart when it is a ``test/`` metric (logged once)."""
    if study.metric.startswith("test/"):
        return "val/" + study.metric.split("/", 1)[1]
    return study.metric


def chance_epochs(curve, classes: int | None) -> int | None:
    """Epochs whose accuracy (a fraction) is within ``CHANCE_MARGIN`` of ``1 / classes``."""
    if not classes or not len(curve):
        return None
    return int((curve <= 1 / classes + CHANCE_MARGIN).sum())


def _shortened(recipe: dict, folder: Path, epochs: int) -> str | None:
    """Why the cell trained less than its recipe (as recorded in its ``cell.json``), or None."""
    planned = recipe.get("max_epochs")
    if isinstance(planned, int) and planned > 0 and epochs < planned:
        return f"{epochs} of the recipe's {planned} epochs"
    limit = (runs.read_config(folder).get("trainer") or {}).get("limit_train_batches")
    if limit not in (None, 1.0, recipe.get("limit_train_batches")):
        return f"limit_train_batches {limit}"
    return None


def _pick(roots: list[Path], arm: str, seed: int) -> Path | None:
    """The cell's folder: the first finished copy among ``roots``, else the first one found."""
    found = [cellplan.cell_dir(root, arm, seed) for root in roots]
    found = [folder for folder in found if folder.is_dir()]
    for folder in found:
        if runs.has_test_results(folder):
            return folder
    return found[0] if found else None


def collect(study: Study, out: str | Path, results: list[str | Path] = ()):
    """One row per cell (see ``cells.csv`` in the module docstring) and each cell's learning
    curve: (cells DataFrame, {(arm, seed): Series by epoch}). Cells are looked for in ``out``
    and then in each of ``results``."""
    import pandas as pd

    roots = [root for folder in [out, *results] for root in cell_roots(folder)]
    rows, curves = [], {}
    for seed in study.seeds:
        for arm in study.arms:
            folder = _pick(roots, arm, seed)
            row = {"arm": arm, "seed": seed}
            if folder is None:
                row.update({"status": "missing", "epochs": 0, **dict.fromkeys(study.quantities)})
                rows.append(row)
                continue
            metrics = runs.read_metrics(folder)
            finished = runs.has_test_results(folder, metrics)
            row["status"] = runs.FINISHED if finished else runs.run_state(folder, metrics)
            row["epochs"] = runs.epochs_done(metrics)
            row.update(cell_values(study, metrics))  # shown for every cell, counted if finished
            fit = runs.read_status(folder).get("fit") or {}
            recorded = cell_identity.read(folder)
            row["arguments"] = recorded.differences_from_study() if recorded else None
            curve = runs.epoch_values(metrics, curve_metric(study))
            at_chance = chance_epochs(curve, fit.get("classes")) if "acc" in curve.name else None
            row["chance epochs"] = at_chance
            flags = []
            if at_chance is not None and at_chance == len(curve):
                flags.append(NEVER_LEFT_CHANCE)
            if runs.diverged(folder):
                flags.append(DIVERGED)
            short = _shortened(recorded.recipe if recorded else {}, folder, row["epochs"])
            if short:
                flags.append(f"{SHORT}: {short}")
            wanted = recorded.recipe.get("precision") if recorded else None
            trained = cellplan.trained_precision(folder)
            if wanted and trained and trained != wanted:
                flags.append(f"{PRECISION}: trained in {trained}, its arguments ask {wanted}")
            row["flags"] = "; ".join(flags)
            row["fit seconds"] = fit.get("seconds")
            row["commit"] = fit.get("commit")
            row["hardware"] = fit.get("hardware")
            if len(curve):
                curves[(arm, seed)] = curve * study.scale_of(str(curve.name))
            row["folder"] = str(folder)
            rows.append(row)
    cells = pd.DataFrame(rows)
    extra = ["arguments", "chance epochs", "flags", "fit seconds", "commit", "hardware", "folder"]
    for column in extra:
        if column not in cells:
            cells[column] = None
    # whole epochs stay integers in cells.csv when some cells are missing (nullable, not NaN)
    cells["chance epochs"] = cells["chance epochs"].astype("Int64")
    columns = ["arm", "seed", "status", "epochs", *study.quantities, *extra]
    return cells[columns], curves


def _short(flags) -> bool:
    return isinstance(flags, str) and SHORT + ":" in flags


def summarise(study: Study, cells):
    """Per number and arm: the statistics of the finished cells (see :mod:`selab.study.stats`)."""
    import pandas as pd

    rows = []
    finished = cells[cells["status"] == runs.FINISHED]
    flags = finished.set_index(["arm", "seed"])["flags"]
    seeds = list(dict.fromkeys(finished["seed"]))  # in the cells' order
    for quantity in study.quantities:
        # seeds x arms; a cell without this number is NaN
        table = finished.pivot(index="seed", columns="arm", values=quantity)
        table = table.reindex(index=seeds, columns=list(study.arms)).astype(float)
        base = table[study.baseline].dropna().to_dict()
        for arm in study.arms:
            per_seed = table[arm].dropna()
            stats = summarize(per_seed)
            row = {"quantity": quantity, "arm": arm, **stats}
            if arm == study.baseline:
                row.update(dict.fromkeys(["paired n", "diff", "diff ci_low", "diff ci_high"]))
            else:
                diff = paired_difference(per_seed.to_dict(), base)
                row.update({"paired n": diff["n"], "diff": diff["mean"],
                            "diff ci_low": diff["ci_low"], "diff ci_high": diff["ci_high"]})  # fmt: skip
            row["seeds"] = ", ".join(
                f"{int(seed)}: {value:.2f}" + ("*" if flags.get((arm, seed)) else "")
                for seed, value in per_seed.items()
            )
            mine = finished[finished["arm"] == arm]
            # a published number is the compared metric's, not its companions' (e.g. top-5)
            compared = quantity in study.metric_quantities
            published = study.arms[arm].published if compared else None
            row["published"] = published
            short = int(sum(_short(f) for f in mine["flags"]))
            row["short cells"] = short
            comparable = published is not None and stats["n"] and not short
            row["diff published"] = stats["mean"] - published if comparable else None
            rows.append(row)
    return pd.DataFrame(rows)


def _isnan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _interval(low, high) -> str | None:
    if low is None or _isnan(low):
        return None
    return f"[{low:.2f}, {high:.2f}]"


def _axis_unit(study: Study) -> str:
    return " (%)" if study.units == "percent" else ""


def _signed(value) -> str | None:
    return None if value is None or _isnan(value) else f"{value:+.2f}"


def markdown(study: Study, cells, summary, curves=None) -> str:
    """``results.md``: one table per reported number, then the cells and their curves."""
    import pandas as pd

    unit = "%" if study.units == "percent" else ""
    lines = [f"# Study {study.name}", ""]
    if study.description:
        lines += [study.description.strip(), ""]
    finished = int((cells["status"] == runs.FINISHED).sum())
    lines += [
        f"Arms: {', '.join(study.arms)}; seeds: {', '.join(map(str, study.seeds))}; "
        f"{finished} of {len(cells)} cells finished. Values in {study.units}"
        f"{' (accuracies x 100, losses as logged)' if unit else ''}; 95% intervals are Student t intervals over seeds; "
        f"Δ is paired with the baseline `{study.baseline}` on the seeds both have.",
        "",
    ]
    for quantity in study.quantities:
        part = summary[summary["quantity"] == quantity]
        table = pd.DataFrame(
            {
                "arm": part["arm"],
                "n": part["n"],
                "mean": part["mean"],
                "std": part["std"],
                "95% CI": [
                    _interval(a, b) for a, b in zip(part["ci_low"], part["ci_high"], strict=True)
                ],
                "min": part["min"],
                "max": part["max"],
                "per seed (* flagged)": part["seeds"],
                f"Δ vs {study.baseline}": [_signed(v) for v in part["diff"]],
                "95% CI of Δ": [
                    _interval(a, b)
                    for a, b in zip(part["diff ci_low"], part["diff ci_high"], strict=True)
                ],
                "paired seeds": part["paired n"],
                "published": part["published"],
                "Δ vs published": [_signed(v) for v in part["diff published"]],
            }
        )
        formats = {c: "{:.2f}" for c in ("mean", "std", "min", "max", "published")}
        formats.update({"n": "{:d}", "paired seeds": "{:.0f}"})
        lines += [f"## {quantity}", "", to_markdown(table, formats), ""]
    lines += _notes(study, cells, summary)
    shown = cells.drop(columns=["folder"]).copy()
    for column in ("commit", "hardware"):  # one line above the table when all cells agree
        values = shown[column].dropna().unique()
        if len(values) <= 1:
            shown = shown.drop(columns=[column])
            lines += [f"{column.capitalize()}: {values[0] if len(values) else 'not recorded'}.", ""]
    shown["fit seconds"] = [runs.duration_text(s) for s in shown["fit seconds"]]
    shown = shown.rename(columns={"fit seconds": "training time"})
    formats = {q: "{:.2f}" for q in study.quantities}
    formats.update({"seed": "{}", "chance epochs": "{:.0f}"})
    lines += ["## Cells", "", to_markdown(shown, formats), ""]
    lines += _curves_table(study, curves or {})
    return "\n".join(lines)


def _curves_table(study: Study, curves) -> list[str]:
    """The learning curves as a table, epoch by cell, when any has two epochs or more (a recipe
    that validates once has nothing to show here but the cells table)."""
    import pandas as pd

    if not any(len(curve) > 1 for curve in curves.values()):
        return []
    arms = list(study.arms)
    ordered = sorted(curves, key=lambda cell: (arms.index(cell[0]), cell[1]))
    table = pd.DataFrame({f"{arm} s{seed}": curves[(arm, seed)] for arm, seed in ordered})
    table.index = table.index + 1
    table = table.rename_axis("epoch").reset_index()
    formats = {column: "{:.2f}" for column in table.columns[1:]}
    return [
        f"## {curve_metric(study)} after every epoch{_axis_unit(study)}",
        "",
        to_markdown(table, formats),
        "",
    ]


def _notes(study: Study, cells, summary) -> list[str]:
    """Plain sentences on what the tables cannot show: flagged cells, cells shorter than the
    recipe (kept away from the published numbers), cells run with extra arguments."""
    import pandas as pd

    lines = []
    flagged = cells[[isinstance(f, str) and f != "" for f in cells["flags"]]]
    for _, row in flagged.iterrows():
        label = cellplan.cell_label(row["arm"], row["seed"])
        at_chance = row["chance epochs"]
        chance = (
            f", {int(at_chance)} of {row['epochs']} epochs at chance level"
            if not pd.isna(at_chance)
            else ""
        )
        lines.append(f"- `{label}` ({row['status']}): {row['flags']}{chance}.")
    part = summary[summary["quantity"] == study.quantities[0]]
    for _, row in part[part["short cells"] > 0].iterrows():
        if row["published"] is not None and not _isnan(row["published"]):
            lines.append(
                f"- `{row['arm']}` is not set against its published {row['published']:.2f}: "
                f"{int(row['short cells'])} of its finished cells trained less than the recipe."
            )
    changed = cells[[isinstance(a, str) and a != "" for a in cells["arguments"]]]
    for _, row in changed.iterrows():
        label = cellplan.cell_label(row["arm"], row["seed"])
        lines.append(f"- `{label}` ran with arguments beyond the study file: `{row['arguments']}`.")
    return (["## Notes", "", *lines, ""]) if lines else []


def figure(study: Study, cells, summary, curves):
    """Per-arm values of every seed with mean and 95% interval; learning curves per arm."""
    from matplotlib.figure import Figure

    quantity = study.quantities[0]
    arms = list(study.arms)
    fig = Figure(figsize=(5 + 0.6 * len(arms) + 5.5, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[1 + 0.15 * len(arms), 1.4])
    colours = [f"C{i % 10}" for i in range(len(arms))]
    part = summary[summary["quantity"] == quantity].set_index("arm")
    finished = cells[cells["status"] == runs.FINISHED]
    plotted = 0
    for x, (arm, colour) in enumerate(zip(arms, colours, strict=True)):
        mine = finished[finished["arm"] == arm]
        mine = mine.loc[[v is not None and not _isnan(v) for v in mine[quantity]]]
        values = [float(v) for v in mine[quantity]]
        offsets = [x + 0.08 * (i - (len(values) - 1) / 2) for i in range(len(values))]
        left.scatter(offsets, values, color=colour, alpha=0.6, s=18, zorder=3)
        plotted += len(values)
        for offset, value, (_, row) in zip(offsets, values, mine.iterrows(), strict=True):
            if row["flags"]:
                left.annotate(f"seed {row['seed']}: {row['flags']}", (offset, value), fontsize=6,
                              xytext=(4, -2), textcoords="offset points", color=colour)  # fmt: skip
        row = part.loc[arm]
        if row["n"]:
            low, high = row["ci_low"], row["ci_high"]
            error = None if _isnan(low) else [[row["mean"] - low], [high - row["mean"]]]
            left.errorbar(
                x + 0.25, row["mean"], yerr=error, fmt="o", color="black", capsize=4, zorder=4
            )
        if row["published"] is not None and not _isnan(row["published"]):
            left.scatter([x + 0.25], [row["published"]], marker="x", color="red", s=50, zorder=5)
    if not plotted:  # nothing but the published crosses, or nothing at all
        what = "no finished cells yet" if finished.empty else f"no finished cell has {quantity}"
        left.text(0.5, 0.5, what, transform=left.transAxes, ha="center", va="center")
    left.set_xticks(range(len(arms)), arms)
    left.set_xlim(-0.6, len(arms) - 0.3)
    left.set_ylabel(quantity + _axis_unit(study))
    left.set_title("seeds (dots), mean ± 95% CI (black), published (red x)", fontsize=9)
    for arm, colour in zip(arms, colours, strict=True):
        mine = [curve for (a, _), curve in curves.items() if a == arm]
        for curve in mine:
            right.plot(curve.index + 1, curve.to_numpy(), color=colour, alpha=0.3, lw=0.8)
        if mine:
            import pandas as pd

            mean = pd.concat(mine, axis=1).mean(axis=1)
            marker = "o" if len(mean) <= 30 else None
            right.plot(
                mean.index + 1, mean.to_numpy(), color=colour, lw=2, marker=marker, ms=3, label=arm
            )
    right.set_xlabel("epoch")
    right.set_ylabel(curve_metric(study) + _axis_unit(study))
    right.set_title("learning curves: each seed (thin), mean over seeds (thick)", fontsize=9)
    if right.get_legend_handles_labels()[0]:
        right.legend(fontsize=8)
    return fig


def _replace(path: Path, write) -> Path:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(temporary)
    os.replace(temporary, path)
    return path


def write_report(study: Study, out: str | Path, results: list[str | Path] = ()) -> dict[str, Path]:
    """Collect the cells under ``out`` (and ``results``), write cells.csv, results.csv,
    results.md and results.png into ``out``."""
    out = Path(out)
    cells, curves = collect(study, out, results)
    summary = summarise(study, cells)
    text = markdown(study, cells, summary, curves)
    fig = figure(study, cells, summary, curves)
    return {
        "cells": _replace(out / CELLS_CSV, lambda p: cells.to_csv(p, index=False)),
        "results": _replace(out / RESULTS_CSV, lambda p: summary.to_csv(p, index=False)),
        "markdown": _replace(out / RESULTS_MD, lambda p: p.write_text(text, encoding="utf-8")),
        "figure": _replace(out / RESULTS_PNG, lambda p: fig.savefig(p, format="png", dpi=120)),
    }
