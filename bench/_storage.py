"""Thread look-ups with many mapped threads: the real schema, bulk-loaded, timed through the store.

The database is created by `storage.open_store` (so every migration and index is the real one),
then filled with sqlite3 ``executemany`` in large transactions; the three look-ups the bridge
makes on every send and every inbound message are then timed through `SqliteStore` itself
(aiosqlite, its lock and all), on random keys that exist.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._stats import percentile
from storage import SqliteStore, open_store

TEAM_ID = "T0BENCH"
LOCATION_ID = "benchLocation0000001"
CHANNELS = 500  # threads spread over this many channels
BATCH = 50_000


@dataclass(frozen=True, slots=True)
class LookupTiming:
    p50: float
    p99: float
    found: int  # look-ups that found their thread (all of them, or the bench is broken)
    samples: int


@dataclass(frozen=True, slots=True)
class StorageResult:
    threads: int
    load_seconds: float
    database_bytes: int
    lookups: dict[str, LookupTiming]
    query_plans: dict[str, str]


def _channel(index: int) -> str:
    return f"C{index % CHANNELS:08d}"


def _thread_ts(index: int) -> str:
    return f"{1_700_000_000 + index // 1000}.{index % 1000:06d}"


def _contact(index: int) -> str:
    return f"ct{index:018d}"


def _conversation(index: int) -> str:
    return f"cv{index:018d}"


def _rows(count: int, now: float) -> Iterator[tuple[Any, ...]]:
    for index in range(count):
        yield (
            TEAM_ID,
            _channel(index),
            _thread_ts(index),
            LOCATION_ID,
            _contact(index),
            _conversation(index),
            "SMS",
            f"Customer {index}",
            now - (count - index),
            now - (count - index),
        )


def bulk_load(path: Path, threads: int) -> float:
    """Insert ``threads`` rows into slack_threads; returns the seconds it took."""
    started = time.perf_counter()
    with sqlite3.connect(path, isolation_level=None) as db:
        db.execute("PRAGMA synchronous = OFF")  # loading fixture data, not serving
        rows = _rows(threads, time.time())
        while True:
            batch = [row for _, row in zip(range(BATCH), rows, strict=False)]
            if not batch:
                break
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO slack_threads (team_id, channel_id, thread_ts, location_id,"
                " contact_id, conversation_id, channel_type, contact_label, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                batch,
            )
            db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return time.perf_counter() - started


def _remove_database(workdir: Path) -> None:
    for part in workdir.glob("threads.sqlite3*"):
        part.unlink()


def _database_bytes(workdir: Path) -> int:
    return sum(part.stat().st_size for part in workdir.glob("threads.sqlite3*"))


def _plans(path: Path) -> dict[str, str]:
    """SQLite's plan for each look-up: proof that each one is an index search, not a scan."""
    queries = {
        "find_thread_for_contact": (
            "SELECT * FROM slack_threads WHERE team_id = ? AND channel_id = ?"
            " AND location_id = ? AND contact_id = ?",
            ("t", "c", "l", "x"),
        ),
        "get_thread_by_slack": (
            "SELECT * FROM slack_threads WHERE team_id = ? AND channel_id = ? AND thread_ts = ?",
            ("t", "c", "x"),
        ),
        "find_threads_for_conversation": (
            "SELECT * FROM slack_threads WHERE location_id = ? AND conversation_id = ?"
            " ORDER BY updated_at DESC, id DESC",
            ("l", "x"),
        ),
    }
    with sqlite3.connect(path) as db:
        return {
            name: "; ".join(str(row[3]) for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", args))
            for name, (sql, args) in queries.items()
        }


async def _time(
    samples: int, lookup: Callable[[int], Awaitable[bool]], threads: int, rng: random.Random
) -> LookupTiming:
    latencies: list[float] = []
    found = 0
    for _ in range(samples):
        index = rng.randrange(threads)
        started = time.perf_counter()
        hit = await lookup(index)
        latencies.append(time.perf_counter() - started)
        found += hit
    return LookupTiming(
        p50=percentile(latencies, 0.5),
        p99=percentile(latencies, 0.99),
        found=found,
        samples=samples,
    )


async def run_storage_bench(
    workdir: Path, *, threads: int, samples: int, seed: int = 1
) -> StorageResult:
    path = workdir / "threads.sqlite3"
    await asyncio.to_thread(_remove_database, workdir)
    store = await open_store(f"sqlite:///{path}")  # the real schema, every migration
    await store.close()
    load_seconds = await asyncio.to_thread(bulk_load, path, threads)
    rng = random.Random(seed)  # noqa: S311 - picks keys to look up, no secrecy involved
    async with SqliteStore(path) as opened:

        async def by_contact(index: int) -> bool:
            thread = await opened.find_thread_for_contact(
                TEAM_ID, _channel(index), LOCATION_ID, _contact(index)
            )
            return thread is not None

        async def by_slack(index: int) -> bool:
            thread = await opened.get_thread_by_slack(TEAM_ID, _channel(index), _thread_ts(index))
            return thread is not None

        async def by_conversation(index: int) -> bool:
            found = await opened.find_threads_for_conversation(LOCATION_ID, _conversation(index))
            return len(found) == 1

        for warm in (by_contact, by_slack, by_conversation):  # first-statement costs
            await warm(0)
        lookups = {
            "find_thread_for_contact": await _time(samples, by_contact, threads, rng),
            "get_thread_by_slack": await _time(samples, by_slack, threads, rng),
            "find_threads_for_conversation": await _time(samples, by_conversation, threads, rng),
        }
    size = await asyncio.to_thread(_database_bytes, workdir)
    return StorageResult(
        threads=threads,
        load_seconds=load_seconds,
        database_bytes=size,
        lookups=lookups,
        query_plans=_plans(path),
    )
