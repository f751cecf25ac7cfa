"""What a run measured: the table (one column per database set-up, each figure judged against its
target) and everything behind it, written to results.json."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bench._config import BenchConfig, Column

NOT_MEASURED = "-"


@dataclass(frozen=True, slots=True)
class Cell:
    """One figure of one column and how it stands against its row's target.

    ``factor``: how far a missed figure is from its target (1.5: half as much again as allowed,
    or two thirds of what was required); None when the miss is not a matter of degree.
    """

    value: str
    passed: bool | None = None  # None: reported, no target
    factor: float | None = None

    @property
    def verdict(self) -> str:
        if self.passed is None:
            return ""
        if self.passed:
            return "met"
        if self.factor is None or math.isnan(self.factor):
            return "missed"
        return "missed x" + ("inf" if math.isinf(self.factor) else f"{self.factor:.2f}")

    @property
    def text(self) -> str:
        return f"{self.value}  {self.verdict}" if self.verdict else self.value


def at_most(value: float, limit: float, shown: str, *, also: bool = True) -> Cell:
    """``value`` must not exceed ``limit`` (and ``also`` must hold)."""
    within = value <= limit
    return Cell(shown, within and also, None if within else _ratio(value, limit))


def at_least(value: float, minimum: float, shown: str, *, also: bool = True) -> Cell:
    """``value`` must reach ``minimum`` (and ``also`` must hold)."""
    reached = value >= minimum
    return Cell(shown, reached and also, None if reached else _ratio(minimum, value))


def holds(condition: bool, shown: str) -> Cell:
    """A target met or not, with no degree (nothing lost, no 429)."""
    return Cell(shown, condition)


def reported(shown: str) -> Cell:
    return Cell(shown)


def _ratio(high: float, low: float) -> float:
    if math.isnan(high) or math.isnan(low):
        return math.nan
    return high / low if low > 0 else math.inf


@dataclass(slots=True)
class Row:
    """One line of the table: what was measured, its target, and a cell per column."""

    metric: str
    target: str
    cells: dict[str, Cell] = field(default_factory=dict)  # column key -> its figure

    @property
    def missed(self) -> bool:
        return any(cell.passed is False for cell in self.cells.values())


@dataclass
class Report:
    """A run: its columns, the table's rows, the data behind them, and whether it is valid."""

    config: BenchConfig
    columns: list[Column] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    # Why the run's figures are not valid (the load generator fell behind): exit 2, not judged.
    invalid: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # printed under the table

    def add(self, column: Column, metric: str, target: str, cell: Cell) -> None:
        """Put ``cell`` in ``column`` of the row ``metric`` (made, at the end, if new)."""
        for row in self.rows:
            if row.metric == metric:
                row.cells[column.key] = cell
                return
        self.rows.append(Row(metric, target, {column.key: cell}))

    def of(self, column: Column) -> dict[str, Any]:
        """The data of one column (results.json: columns.<key>)."""
        columns: dict[str, dict[str, Any]] = self.data.setdefault("columns", {})
        return columns.setdefault(
            column.key,
            {"title": column.title, "backend": column.backend, "instances": column.instances},
        )

    @property
    def missed(self) -> bool:
        return any(row.missed for row in self.rows)

    def to_json(self) -> str:
        return json.dumps(
            {
                "config": asdict(self.config),
                "table": [
                    {
                        "metric": row.metric,
                        "target": row.target,
                        "cells": {
                            key: {**asdict(cell), "verdict": cell.verdict}
                            for key, cell in row.cells.items()
                        },
                    }
                    for row in self.rows
                ],
                "invalid": self.invalid,
                "notes": self.notes,
                **self.data,
            },
            indent=2,
        )


def render_table(rows: Sequence[Row], columns: Sequence[Column]) -> str:
    """metric | target | one column per set-up: each cell its figure and met / missed xN."""
    headers = ("metric", "target", *(column.title for column in columns))
    cells = [
        headers,
        *(
            (
                row.metric,
                row.target,
                *(
                    row.cells[column.key].text if column.key in row.cells else NOT_MEASURED
                    for column in columns
                ),
            )
            for row in rows
        ),
    ]
    widths = [max(len(line[index]) for line in cells) for index in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(value.ljust(width) for value, width in zip(values, widths, strict=True))

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(headers), rule, *(line(values).rstrip() for values in cells[1:])])
