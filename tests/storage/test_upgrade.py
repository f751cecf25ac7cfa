"""A database made by an earlier release migrates forward and keeps every row."""

from __future__ import annotations

from pathlib import Path

from storage import LATEST_VERSION, MIGRATIONS, SqliteStore
from tests.storage._support import START, FakeClock, enqueue, query

V2 = MIGRATIONS[:2]
INBOUND_V2_COLUMNS = (
    "id, source, event_type, conversation_key, payload, state, attempts, last_error,"
    " next_attempt_at, received_at, updated_at"
)


def _insert_v2_event(
    path: Path, event_id: int, conversation: str, state: str, received_at: float
) -> None:
    # As release 2 stored them: no sort_at, and due when received.
    query(
        path,
        f"INSERT INTO inbound_events ({INBOUND_V2_COLUMNS})"  # noqa: S608 - a test constant
        " VALUES (?, 'webhook', 'InboundMessage', ?, ?, ?, ?, NULL, ?, ?, ?)",
        (
            event_id,
            conversation,
            f'{{"name": "e{event_id}"}}',
            state,
            0 if state == "pending" else 1,
            received_at,
            received_at,
            received_at,
        ),
    )


async def test_a_version_2_database_migrates_forward(db_path: Path, clock: FakeClock) -> None:
    async with SqliteStore(db_path, clock=clock, migrations=V2) as old:
        assert await old.schema_version() == 2
        await old.kv_set("cursor", "abc")
        sent = await enqueue(old, "sent-1")
        waiting = await enqueue(old, "waiting-1")
    query(db_path, "UPDATE outbox SET state = 'sent' WHERE id = ?", (sent.id,))
    _insert_v2_event(db_path, 1, "conv-a", "done", START - 40)
    _insert_v2_event(db_path, 2, "conv-a", "pending", START - 30)
    _insert_v2_event(db_path, 3, "conv-b", "failed", START - 25)
    _insert_v2_event(db_path, 4, "conv-a", "pending", START - 20)
    _insert_v2_event(db_path, 5, "conv-b", "pending", START - 10)
    before = query(db_path, f"SELECT {INBOUND_V2_COLUMNS} FROM inbound_events ORDER BY id")  # noqa: S608

    async with SqliteStore(db_path, clock=clock) as new:
        assert await new.schema_version() == LATEST_VERSION
        assert await new.kv_get("cursor") == "abc"
        claimed_send = await new.claim_next()
        assert claimed_send is not None and claimed_send.id == waiting.id
        # Existing events keep their data and are ordered by when they were received.
        after = query(db_path, f"SELECT {INBOUND_V2_COLUMNS} FROM inbound_events ORDER BY id")  # noqa: S608
        assert after == before
        assert query(db_path, "SELECT id, sort_at FROM inbound_events ORDER BY id") == [
            (1, START - 40),
            (2, START - 30),
            (3, START - 25),
            (4, START - 20),
            (5, START - 10),
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
        assert early is not None and early.id == 6
        names = []
        while (event := await new.claim_inbound()) is not None:
            names.append(event.payload["name"])
            await new.finish_inbound(event.id)
        assert names == ["e5", "early", "e2", "e4"]  # conv-b was due first

    columns = {row[1]: row for row in query(db_path, "PRAGMA table_info(inbound_events)")}
    assert columns["sort_at"][2:5] == ("REAL", 1, None)  # type, NOT NULL, no default
    indexes = {
        row[0] for row in query(db_path, "SELECT name FROM sqlite_master WHERE type = 'index'")
    }
    assert {
        "inbound_events_due",
        "inbound_events_order",
        "inbound_events_source",
        "outbox_due",
    } <= indexes
    assert "inbound_events_conversation" not in indexes
    assert query(db_path, "PRAGMA integrity_check") == [("ok",)]
    assert query(db_path, "PRAGMA foreign_key_check") == []
