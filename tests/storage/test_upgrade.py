"""A database made by an earlier release migrates forward and keeps every row (both backends;
PostgreSQL has steps of its own for version 3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage import LATEST_VERSION, MIGRATIONS
from tests.storage._support import START, Backend, FakeClock, Rejected, SqliteBackend, enqueue

V2 = MIGRATIONS[:2]
INBOUND_V2_COLUMNS = (
    "id, source, event_type, conversation_key, payload, state, attempts, last_error,"
    " next_attempt_at, received_at, updated_at"
)
# (conversation, state, received_at) of the events a version 2 database holds, in id order.
V2_EVENTS = (
    ("conv-a", "done", START - 40),
    ("conv-a", "pending", START - 30),
    ("conv-b", "failed", START - 25),
    ("conv-a", "pending", START - 20),
    ("conv-b", "pending", START - 10),
)


def _insert_v2_event(backend: Backend, name: str, conversation: str, state: str, at: float) -> int:
    # As release 2 stored them: no sort_at, and due when received; ids from the database.
    rows = backend.query(
        f"INSERT INTO inbound_events ({INBOUND_V2_COLUMNS.removeprefix('id, ')})"  # noqa: S608 - a test constant
        " VALUES ('webhook', 'InboundMessage', ?, ?, ?, ?, NULL, ?, ?, ?) RETURNING id",
        (conversation, f'{{"name": "{name}"}}', state, 0 if state == "pending" else 1, at, at, at),
    )
    return int(rows[0][0])


async def _version_2_database(backend: Backend, clock: FakeClock) -> tuple[int, list[int]]:
    """Fill a version 2 database; the id of its one pending send and of its events."""
    async with backend.new_store(clock, migrations=V2) as old:
        assert await old.schema_version() == 2
        await old.kv_set("cursor", "abc")
        sent = await enqueue(old, "sent-1")
        waiting = await enqueue(old, "waiting-1")
    backend.query("UPDATE outbox SET state = 'sent' WHERE id = ?", (sent.id,))
    events = [
        _insert_v2_event(backend, f"e{number}", *event)
        for number, event in enumerate(V2_EVENTS, start=1)
    ]
    return waiting.id, events


async def test_a_version_2_database_migrates_forward(backend: Backend, clock: FakeClock) -> None:
    waiting_id, events = await _version_2_database(backend, clock)
    select_v2 = f"SELECT {INBOUND_V2_COLUMNS} FROM inbound_events ORDER BY id"  # noqa: S608
    before = backend.query(select_v2)

    async with backend.new_store(clock) as new:
        assert await new.schema_version() == LATEST_VERSION
        assert await new.kv_get("cursor") == "abc"
        claimed_send = await new.claim_next()
        assert claimed_send is not None and claimed_send.id == waiting_id
        # Existing events keep their data and are ordered by when they were received.
        assert backend.query(select_v2) == before
        assert backend.query("SELECT id, sort_at FROM inbound_events ORDER BY id") == [
            (event_id, event[2]) for event_id, event in zip(events, V2_EVENTS, strict=True)
        ]
        # A new message of conv-a, sent before the pending ones, goes first.
        early = await new.enqueue_inbound(
            source="poll",
            event_type="InboundMessage",
            conversation_key="conv-a",
            payload={"name": "early"},
            dedupe_keys=["message:early"],
            ttl_seconds=60,
            sort_at=START - 35,
        )
        assert early is not None and early.id == events[-1] + 1  # the ids go on
        names = []
        while (event := await new.claim_inbound()) is not None:
            names.append(event.payload["name"])
            await new.finish_inbound(event.id)
        assert names == ["e5", "early", "e2", "e4"]  # conv-b was due first

    # sort_at has no default: an insert that forgets it is refused, not silently sorted.
    with pytest.raises(Rejected, match="sort_at"):
        _insert_v2_event(backend, "forgetful", "conv-c", "pending", START)
    indexes = backend.index_names()
    assert {
        "inbound_events_due",
        "inbound_events_order",
        "inbound_events_source",
        "outbox_due",
    } <= indexes
    assert "inbound_events_conversation" not in indexes


async def test_a_version_2_file_migrates_to_a_sound_file(db_path: Path, clock: FakeClock) -> None:
    backend = SqliteBackend(db_path)
    await _version_2_database(backend, clock)
    async with backend.new_store(clock) as new:
        assert await new.schema_version() == LATEST_VERSION
    columns = {row[1]: row for row in backend.query("PRAGMA table_info(inbound_events)")}
    assert columns["sort_at"][2:5] == ("REAL", 1, None)  # type, NOT NULL, no default
    assert backend.query("PRAGMA integrity_check") == [("ok",)]
    assert backend.query("PRAGMA foreign_key_check") == []
