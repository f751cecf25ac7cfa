"""One column of the table: the whole bench against one database set-up.

SQLite with one bridge (a new file), or PostgreSQL with one or several bridge processes on a
schema made for the column and dropped after it. Phases, in order: outbound at HighLevel's
ceiling (first, while the bridges' limiters still hold HighLevel's stricter default), outbound
with the ceiling lifted, ack latency against a bare Bolt app (its sends drain faster with the
ceiling lifted), inbound against the floor servers; memory before and after.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from bench._ack import ack_phase
from bench._config import RSS_MAX_MB, SQLITE, BenchConfig, Column, postgres_column
from bench._inbound import inbound_phase
from bench._outbound import capacity_phase, outbound_phase
from bench._postgres import fresh_schema, probe
from bench._procs import LoadGenerator, Placement
from bench._report import Report, at_most, holds, reported
from bench._sandbox import Sandbox, metered
from bench._stack_floor import stack_floor_phase
from storage import redact_url


async def choose_columns(
    config: BenchConfig, postgres_url: str | None
) -> tuple[list[Column], str | None]:
    """SQLite, then the PostgreSQL columns if the server answers; and why not, if it does not."""
    if postgres_url is None or not config.postgres_instances:
        return [SQLITE], None
    problem = await probe(postgres_url)
    if problem is not None:
        return [SQLITE], (
            f"!!! PostgreSQL at {redact_url(postgres_url)} does not answer ({problem}): "
            "SQLite column only; start it, or pass --postgres URL"
        )
    return [SQLITE, *(postgres_column(n) for n in config.postgres_instances)], None


@asynccontextmanager
async def column_database(
    column: Column, workdir: Path, postgres_url: str | None
) -> AsyncIterator[str]:
    """The DATABASE_URL of the column's bridges: a new SQLite file, or a fresh schema."""
    if column.backend == "sqlite":
        yield f"sqlite:///{workdir / 'bridge.sqlite3'}"
        return
    if postgres_url is None:
        raise ValueError("a PostgreSQL column needs the server's URL")
    async with fresh_schema(postgres_url, column.key) as url:
        yield url


async def run_column(
    config: BenchConfig,
    column: Column,
    report: Report,
    *,
    workdir: Path,
    loadgen: LoadGenerator,
    postgres_url: str | None,
    say: Callable[[str], None],
    profile_dir: Path | None = None,
    placement: Placement | None = None,
) -> None:
    """Every phase against ``column``'s bridges; its cells into ``report``."""
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    data = report.of(column)
    async with column_database(column, workdir, postgres_url) as database_url:
        data["database"] = redact_url(database_url)
        sandbox = Sandbox(
            config,
            column,
            database_url,
            workdir,
            loadgen,
            profile_dir=profile_dir,
            placement=placement,
        )
        await sandbox.start()
        try:
            bridges = await sandbox.start_bridges()
            cpu_before, settle_started = sandbox.bridge_cpu(), time.monotonic()
            await asyncio.sleep(config.settle_seconds)
            # What the bridges spend doing nothing (polls, lease renewals): part of every
            # figure per message below.
            idle_cpu = (sandbox.bridge_cpu() - cpu_before) / (time.monotonic() - settle_started)
            idle = [bridge.memory().rss_mb for bridge in bridges]
            say(
                f"{column.title}: bridge pid {', '.join(str(b.pid) for b in bridges)} idle: "
                + ", ".join(f"{mb:.1f}" for mb in idle)
                + " MB"
            )
            async with metered(sandbox, report, "outbound"):
                await outbound_phase(sandbox, report, say)
            async with metered(sandbox, report, "capacity"):
                await capacity_phase(sandbox, report, say)
            async with metered(sandbox, report, "ack"):
                await ack_phase(sandbox, report, say)
            async with metered(sandbox, report, "inbound"):
                await inbound_phase(sandbox, report, say)
            memory = [bridge.memory() for bridge in bridges]
            # The bridges are idle from here: the floor client's calls are its own.
            await stack_floor_phase(sandbox, report, say)
        finally:
            codes = await sandbox.stop()
    after, peak = [m.rss_mb for m in memory], [m.peak_mb for m in memory]
    data["memory_mb"] = {"idle": idle, "after_load": after, "peak": peak}
    data["idle_bridge_cpu_ms_per_second"] = idle_cpu * 1000
    data["bridge_exit_codes"] = codes
    report.add(
        column,
        "bridge CPU while idle, all bridges",
        "(reported)",
        reported(f"{idle_cpu * 1000:.1f} ms/s"),
    )
    report.add(
        column,
        "bridge RSS idle (the largest bridge)",
        f"<= {RSS_MAX_MB:.0f} MB each",
        at_most(max(idle), RSS_MAX_MB, f"{max(idle):.1f} MB"),
    )
    report.add(
        column,
        "bridge RSS after the load (peak)",
        f"<= {RSS_MAX_MB:.0f} MB each",
        at_most(max(after), RSS_MAX_MB, f"{max(after):.1f} MB ({max(peak):.1f} MB)"),
    )
    report.add(
        column,
        "bridge exit on SIGTERM after the load",
        "0",
        holds(all(code == 0 for code in codes), ", ".join(str(code) for code in codes)),
    )
