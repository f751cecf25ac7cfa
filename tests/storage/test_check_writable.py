"""`check_writable`: the health probe is a real, committed write (issue 11, item 7)."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage import SqliteStore, Store, StoreError
from tests._real_failures import unwritable
from tests.storage._support import Backend, FakeClock


def probe_row(backend: Backend) -> tuple[str, float] | None:
    rows = backend.query("SELECT value, updated_at FROM kv_store WHERE key = 'health:last_write'")
    return None if not rows else (str(rows[0][0]), float(rows[0][1]))


async def test_a_writable_database_takes_the_probe_and_another_connection_sees_it(
    store: Store, backend: Backend, clock: FakeClock
) -> None:
    await store.check_writable()
    first = probe_row(backend)
    clock.advance(5)
    await store.check_writable()
    second = probe_row(backend)
    assert first is not None and second is not None
    assert second[1] == first[1] + 5  # committed each time, one row rewritten


async def test_a_read_only_database_file_fails_the_probe(db_path: Path) -> None:
    async with SqliteStore(db_path):
        pass
    with unwritable(db_path):
        # SQLite opens a file it may not write read-only, silently: reads still work.
        async with SqliteStore(db_path) as store:
            await store.ping()
            with pytest.raises(StoreError, match="readonly"):
                await store.check_writable()
