"""Small result tables that render as Markdown in notebooks and text in TensorBoard."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any


class Table:
    """Rows of a small results table; prints as Markdown and renders as a table in notebooks."""

    def __init__(
        self, rows: Iterable[dict[str, Any]], formats: dict[str, str] | None = None
    ) -> None:
        self.rows = [dict(row) for row in rows]
        self.formats = dict(formats or {})
        self.columns: list[str] = []
        for row in self.rows:
            self.columns += [key for key in row if key not in self.columns]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.rows[index]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def column(self, name: str) -> list[Any]:
        return [row.get(name) for row in self.rows]

    def _cell(self, column: str, value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        if column in self.formats:
            return self.formats[column].format(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return str(value)
        if isinstance(value, int):
            return f"{value:,}"
        return f"{value:.4f}"

    def to_markdown(self) -> str:
        lines = ["| " + " | ".join(self.columns) + " |", "|" + " --- |" * len(self.columns)]
        for row in self.rows:
            cells = [self._cell(c, row.get(c)).replace("|", "\\|") for c in self.columns]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    __str__ = to_markdown

    def __repr__(self) -> str:
        return self.to_markdown()

    def _repr_markdown_(self) -> str:
        return self.to_markdown()
