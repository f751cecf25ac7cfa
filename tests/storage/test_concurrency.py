"""Many concurrent writers: nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio
from pathlib import Path

from storage import MessageDirection, SqliteStore
from tests.storage._support import FakeClock, count_rows, enqueue, query


async def test_100_concurrent_enqueues_all_land(store: SqliteStore, db_path: Path) -> None:
    entries = await asyncio.gather(
        *(enqueue(store, f"req-{n}", contact_id=f"contact-{n % 7}") for n in range(100))
    )
    assert len({e.id for e in entries}) == 100
    assert count_rows(db_path, "outbox") == 100
    keys = {row[0] for row in query(db_path, "SELECT idempotency_key FROM outbox")}
    assert keys == {f"req-{n}" for n in range(100)}


async def test_100_concurrent_record_messages_all_land(store: SqliteStore, db_path: Path) -> None:
    results = await asyncio.gather(
        *(
            store.record_message(
                direction=MessageDirection.INBOUND,
                ghl_message_id=f"m-{n}",
                slack_channel_id="C1",
                slack_ts=f"1700000000.{n:06d}",
            )
            for n in range(100)
        )
    )
    assert all(created for _, created in results)
    assert count_rows(db_path, "messages") == 100
    assert query(db_path, "SELECT COUNT(DISTINCT ghl_message_id) FROM messages") == [(100,)]


async def test_100_concurrent_enqueues_of_one_key_make_one_entry(
    store: SqliteStore, db_path: Path
) -> None:
    async def double_click() -> tuple[int, bool]:
        entry, created = await store.enqueue(
            idempotency_key="same-click",
            team_id="T1",
            channel_id="C1",
            slack_user_id="U1",
            location_id="loc-1",
            contact_id="contact-a",
            message_type="SMS",
            payload={"message": "hello"},
        )
        return entry.id, created

    results = await asyncio.gather(*(double_click() for _ in range(100)))
    assert len({entry_id for entry_id, _ in results}) == 1
    assert [created for _, created in results].count(True) == 1
    assert count_rows(db_path, "outbox") == 1


async def test_100_concurrent_records_of_one_message_make_one_row(
    store: SqliteStore, db_path: Path
) -> None:
    results = await asyncio.gather(
        *(
            store.record_message(direction=MessageDirection.INBOUND, ghl_message_id="m-1")
            for _ in range(100)
        )
    )
    assert [created for _, created in results].count(True) == 1
    assert len({message.id for message, _ in results}) == 1
    assert count_rows(db_path, "messages") == 1


async def test_writers_through_two_stores_on_one_file(
    store: SqliteStore, db_path: Path, clock: FakeClock
) -> None:
    async with SqliteStore(db_path, clock=clock) as second:
        same_key = [
            s.enqueue(
                idempotency_key="shared",
                team_id="T1",
                channel_id="C1",
                slack_user_id="U1",
                location_id="loc-1",
                contact_id="contact-a",
                message_type="SMS",
                payload={},
            )
            for s in (store, second)
            for _ in range(10)
        ]
        distinct = [
            enqueue(s, f"{label}-{n}")
            for s, label in ((store, "first"), (second, "second"))
            for n in range(50)
        ]
        await asyncio.gather(*same_key, *distinct)
    assert count_rows(db_path, "outbox") == 101
    assert query(db_path, "SELECT COUNT(*) FROM outbox WHERE idempotency_key = 'shared'") == [(1,)]
