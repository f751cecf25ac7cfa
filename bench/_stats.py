"""Percentiles and latency summaries, and the machine a run was taken on."""

from __future__ import annotations

import math
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench._loadgen import LoadResult


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


def latency_summary(*results: LoadResult) -> dict[str, Any]:
    """Latency percentiles over all timed requests of ``results`` (rounds of one measurement)."""
    latencies = [latency for result in results for latency in result.latencies]
    ok = sum(result.ok for result in results)
    return {
        "requests": len(latencies),
        "ok": ok,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies, default=0.0) * 1000,
        "per_second": len(latencies) / sum(result.wall_seconds for result in results),
        "non_2xx": len(latencies) - ok,
        "warmup_non_2xx": sum(
            1 for result in results for s in result.warmup_statuses if not 200 <= s < 300
        ),
        "load_generator_cpu_seconds": sum(result.cpu_seconds for result in results),
    }


def cpu_ms_per(cpu_seconds: float, count: int) -> float:
    return cpu_seconds * 1000 / count if count else math.nan


def spread(values: Sequence[float]) -> str:
    """``x0.93-4.07``: the lowest and highest of per-round ratios."""
    if not values:
        return "-"
    return f"x{min(values):.2f}-{max(values):.2f}"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"
