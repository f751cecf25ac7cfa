"""Percentiles, the machine a run was taken on, and the printed table."""

from __future__ import annotations

import math
import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` 0.99 = p99): a value that was actually observed."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def machine() -> dict[str, object]:
    """CPU model, cores, Python and the load average when this was called."""
    model = platform.processor() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text("utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "load_average": load_average(),
    }


def load_average() -> list[float]:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return []


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table: what was measured, its value, the target, and the verdict."""

    metric: str
    value: str
    target: str = ""
    passed: bool | None = None  # None: reported, no target

    @property
    def verdict(self) -> str:
        if self.passed is None:
            return ""
        return "pass" if self.passed else "MISS"


def render_table(rows: Sequence[Row]) -> str:
    headers = ("metric", "value", "target", "result")
    cells = [headers, *((row.metric, row.value, row.target, row.verdict) for row in rows)]
    widths = [max(len(line[column]) for line in cells) for column in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(value.ljust(width) for value, width in zip(values, widths, strict=True))

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(headers), rule, *(line(values).rstrip() for values in cells[1:])])


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"
