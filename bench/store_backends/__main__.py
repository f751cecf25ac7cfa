"""`python -m bench.store_backends`: the rounds run, the report, and the verdict."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import sqlalchemy as sa  # type: ignore[import-not-found, unused-ignore]

import storage
from bench.store_backends._common import LIMIT
from bench.store_backends._variants import COMPARISONS, Variant, variants
from bench.store_backends._workload import (
    Sample,
    _webhook,
    check_dedupe,
    ingest,
    outbound,
    timed_round,
)

# ------------------------------------------------------------------------------- report

PATHS = ("ingest", "outbound")


def _spread(values: Sequence[float]) -> str:
    return f"{statistics.median(values):,.0f} [{min(values):,.0f}-{max(values):,.0f}]"


def _percent(values: Sequence[float], sign: str = "") -> str:
    return (
        f"{statistics.median(values):{sign}.0%}"
        f" [{min(values):{sign}.0%} to {max(values):{sign}.0%}]"
    )


def report(samples: dict[tuple[str, str], list[Sample]], all_variants: Sequence[Variant]) -> bool:
    """Print both tables; True when the port as written stays within the limit everywhere."""
    print(
        f"\n{'path':9}{'variant':41}{'ops/s median [min-max]':>24}"
        f"{'CPU us/op median [min-max]':>30}"
    )
    for path in PATHS:
        for variant in all_variants:
            runs = samples[(path, variant.key)]
            print(
                f"{path:9}{variant.key:3}{variant.label:38}"
                f"{_spread([s.ops_per_second for s in runs]):>24}"
                f"{_spread([s.cpu_us_per_op for s in runs]):>30}"
            )
    print(
        "\nSQLAlchemy against hand-written code on the same backend, paired round by round,"
        " median [min to max]"
    )
    print(
        f"{'path':9}{'backend':12}{'pair':9}{'ops/s SA/raw':>22}{'throughput lost':>24}"
        f"{'CPU per op':>24}   verdict (limit {LIMIT:.0%} lost)"
    )
    within = True
    for path in PATHS:
        for backend, raw, port, decides in COMPARISONS:
            pairs = list(zip(samples[(path, raw)], samples[(path, port)], strict=True))
            ratios = [p.ops_per_second / r.ops_per_second for r, p in pairs]
            costs = [1 - ratio for ratio in ratios]
            cpu = [p.cpu_us_per_op / r.cpu_us_per_op - 1 for r, p in pairs]
            over = statistics.median(costs) > LIMIT
            verdict = "OVER" if over else "within"
            if min(costs) <= LIMIT < max(costs):
                verdict += ", rounds on both sides"
            if decides:
                within = within and not over
            else:
                verdict = f"({verdict}: tuned, does not decide)"
            ratio_text = f"{statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}]"
            print(
                f"{path:9}{backend:12}{port + '/' + raw:9}{ratio_text:>22}"
                f"{_percent(costs):>24}{_percent(cpu, '+'):>24}   {verdict}"
            )
    return within


async def compiled_cache_hits(variant: Variant, count: int) -> tuple[int, int]:
    """(cache hits, statements compiled by SQLAlchemy) over `count` more of each operation.

    Run after the timed rounds, since the listener that counts costs time of its own.
    """
    hits = compiled = 0

    def tally(*args: Any) -> None:
        nonlocal hits, compiled
        context = args[4]  # conn, cursor, statement, parameters, context, executemany
        if context is not None and context.compiled is not None:
            compiled += 1
            hits += context.cache_hit.name == "CACHE_HIT"

    sa.event.listen(variant.engine.sync_engine, "before_cursor_execute", tally)
    try:
        await ingest(variant.store, f"cache-{variant.key}", 0, count)
        await outbound(variant.store, f"cache-{variant.key}", 0, count, variant.threads)
    finally:
        sa.event.remove(variant.engine.sync_engine, "before_cursor_execute", tally)
    return hits, compiled


async def run(args: argparse.Namespace) -> bool:
    with tempfile.TemporaryDirectory(prefix="store-backends-") as tmp:
        async with variants(Path(tmp)) as all_variants:
            for variant in all_variants:  # warm-up: caches, prepared statements, pages
                tag = f"warm-{variant.key}"
                await ingest(variant.store, tag, 0, args.warmup)
                await check_dedupe(variant.store, tag)
                await outbound(variant.store, tag, 0, args.warmup, variant.threads)
            samples: dict[tuple[str, str], list[Sample]] = {
                (path, variant.key): [] for path in PATHS for variant in all_variants
            }
            for round_index in range(args.rounds):
                for path, total in (("ingest", args.events), ("outbound", args.sends)):
                    measured = await timed_round(
                        path, all_variants, round_index, total, args.slices
                    )
                    for key, sample in measured.items():
                        samples[(path, key)].append(sample)
                print(f"  round {round_index + 1}/{args.rounds} done", file=sys.stderr)
            within = report(samples, all_variants)
            checks = []
            for variant in all_variants:
                if variant.engine is not None:
                    hits, compiled = await compiled_cache_hits(variant, 20)
                    checks.append(f"{variant.key} {hits}/{compiled}")
            print(
                "CPU is this process's (aiosqlite's threads included, PostgreSQL's server not)."
                f" Compiled-cache hits over 20 more of each: {', '.join(checks)}"
            )
            return within


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.store_backends",
        description="SQLAlchemy Core (async) against the hand-written store; see the docstring.",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--events", type=int, default=800, help="webhooks per variant per round")
    parser.add_argument("--sends", type=int, default=240, help="sends per variant per round")
    parser.add_argument("--warmup", type=int, default=150, help="webhooks and sends, per variant")
    parser.add_argument("--slices", type=int, default=10, help="turns per variant per round")
    args = parser.parse_args()
    if min(args.rounds, args.events, args.sends, args.warmup, args.slices) < 1:
        parser.error("every count must be at least 1")
    print(
        f"sqlalchemy {version('sqlalchemy')}, asyncpg {version('asyncpg')},"
        f" aiosqlite {version('aiosqlite')}, SQLite {sqlite3.sqlite_version},"
        f" Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {_load()};"
        f" today's store from {Path(storage.__file__).parent}"
    )
    print(
        f"{args.rounds} rounds of {args.events} webhooks"
        f" ({len(json.dumps(_webhook('r0', 0)))} bytes of JSON, 2 dedupe keys)"
        f" and {args.sends} sends per variant, each in {args.slices} turns taken by the"
        f" variants in rotation, after {args.warmup} of each"
    )
    started = time.perf_counter()
    within = asyncio.run(run(args))
    print(
        f"\nBy the {LIMIT:.0%} rule: "
        + (
            "SQLAlchemy Core stays within it on both paths and backends: one implementation."
            if within
            else "SQLAlchemy Core costs more than that on a path: keep two backends."
        )
    )
    print(f"took {time.perf_counter() - started:.0f} s; load at the end {_load()}")


def _load() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


if __name__ == "__main__":
    main()
