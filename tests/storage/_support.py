"""Helpers shared by the storage tests: a settable clock and direct looks at the file."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from storage import OutboxEntry, SqliteStore

START = 1_700_000_000.0


class FakeClock:
    """A clock the test moves by hand, so nothing sleeps."""

    def __init__(self, start: float = START) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def query(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run SQL on the file through a separate plain sqlite3 connection (an outside view)."""
    conn = sqlite3.connect(path, isolation_level=None)  # autocommit: each write sticks
    try:
        return list(conn.execute(sql, params).fetchall())
    finally:
        conn.close()


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def count_rows(path: Path, table: str) -> int:
    # Table names are test constants, never input.
    return int(query(path, f"SELECT COUNT(*) FROM {table}")[0][0])  # noqa: S608


async def enqueue(
    store: SqliteStore,
    key: str,
    *,
    location_id: str = "loc-1",
    contact_id: str = "contact-a",
    next_attempt_at: float | None = None,
    thread_id: int | None = None,
    message_type: str = "SMS",
    slack_ts: str | None = None,
) -> OutboxEntry:
    entry, created = await store.enqueue(
        idempotency_key=key,
        team_id="T1",
        channel_id="C1",
        slack_user_id="U1",
        location_id=location_id,
        contact_id=contact_id,
        message_type=message_type,
        payload={"type": message_type, "contactId": contact_id, "message": f"text {key}"},
        thread_id=thread_id,
        slack_ts=slack_ts,
        next_attempt_at=next_attempt_at,
    )
    assert created, f"{key} was already queued"
    return entry
