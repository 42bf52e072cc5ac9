"""Result tables are pandas DataFrames; these helpers print them readably as Markdown.

``to_markdown`` is ``DataFrame.to_markdown`` (tabulate) after formatting each cell: integers with
thousands separators, floats with 4 decimals (or a per-column format), missing values as ``-``.
``show`` wraps it for Jupyter, where it renders as a table.
"""

from __future__ import annotations

import math
from typing import Any


def format_value(value: Any, fmt: str | None = None) -> str:
    """One cell as text: ``-`` for missing, ``fmt`` if given, ``1,234`` / ``0.1234`` otherwise."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return "-"
    except ImportError:  # pragma: no cover - pandas is a dependency
        pass
    if fmt is not None:
        return fmt.format(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if hasattr(value, "item") and not isinstance(value, str):  # numpy scalars
            return format_value(value.item(), fmt)
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4f}"


def formatted(table, formats: dict[str, str] | None = None):
    """A copy of ``table`` with every cell turned into its display text (see :func:`format_value`)."""
    formats = formats or {}
    text = table.astype(object).copy()
    for column in table.columns:
        fmt = formats.get(column)
        text[column] = [format_value(v, fmt) for v in table[column].tolist()]
    return text


def to_markdown(table, formats: dict[str, str] | None = None) -> str:
    """A DataFrame as a Markdown table (no index column), cells formatted by :func:`formatted`
    with ``formats`` (column -> format string) over those in ``table.attrs["formats"]``."""
    formats = {**table.attrs.get("formats", {}), **(formats or {})}
    text = formatted(table, formats).map(lambda s: s.replace("|", "\\|"))
    alignment = ["right" if _numeric(table[c]) else "left" for c in table.columns]
    return text.to_markdown(index=False, colalign=alignment or None, disable_numparse=True)


def _numeric(column) -> bool:
    import pandas as pd

    values = column.dropna()
    return bool(len(values)) and pd.api.types.is_numeric_dtype(values.infer_objects())


def show(table, formats: dict[str, str] | None = None):
    """A DataFrame rendered as a Markdown table in Jupyter (``IPython.display.Markdown``)."""
    from IPython.display import Markdown

    return Markdown(to_markdown(table, formats))


__all__ = ["format_value", "formatted", "show", "to_markdown"]
