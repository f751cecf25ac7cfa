"""SQLite operations run on the event loop's own connection: what that must not cost.

The loop's connection never checkpoints by itself (a checkpoint waits on the disk); the store
runs one on aiosqlite's thread every CHECKPOINT_EVERY commits, so the WAL stays bounded.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from storage import SqliteStore
from storage._sqlite_loop import CHECKPOINT_EVERY
from tests.storage._support import FakeClock

WRITES = 15 * CHECKPOINT_EVERY
VALUE = "x" * 3000  # a page of its own per row: each commit adds at least two WAL frames


def _wal_bytes(db_path: Path) -> int:
    wal = db_path.with_name(db_path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


async def test_the_wal_stays_bounded_under_a_stream_of_writes(
    db_path: Path, clock: FakeClock
) -> None:
    async with SqliteStore(db_path, clock=clock) as store:
        for n in range(WRITES):
            await store.kv_set(f"key{n % 100}", f"{n}:{VALUE}")
            await asyncio.sleep(0)  # as a server's writers do between operations
        # Without checkpoints the WAL would hold every commit: WRITES x 2 pages x 4 KiB at
        # least (24 MB); a checkpoint that reaches its end lets it start over.
        assert _wal_bytes(db_path) < WRITES * 2 * 4096 / 4
        assert store.runs == (store.runs[0], 0)  # all on the loop's connection
        assert (await store.kv_get("key99") or "").startswith(f"{WRITES - 1}:")
    with sqlite3.connect(db_path) as outside:
        assert outside.execute(
            "SELECT COUNT(*) FROM kv_store WHERE key LIKE 'key%'"
        ).fetchone() == (100,)


async def test_a_store_closed_during_a_checkpoint_closes_cleanly(
    db_path: Path, clock: FakeClock
) -> None:
    store = SqliteStore(db_path, clock=clock)
    await store.open()
    for n in range(CHECKPOINT_EVERY):
        await store.kv_set(f"k{n}", "v")  # the last one asks for a checkpoint
    await store.close()  # before the checkpoint could run: it is dropped, not waited for
    async with SqliteStore(db_path, clock=clock) as again:
        assert await again.kv_get(f"k{CHECKPOINT_EVERY - 1}") == "v"
