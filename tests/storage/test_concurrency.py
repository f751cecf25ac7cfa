"""Many concurrent writers: nothing lost, nothing doubled (on each backend)."""

from __future__ import annotations

import asyncio

from storage import MessageDirection, Store
from tests.storage._support import Backend, FakeClock, enqueue


async def test_100_concurrent_enqueues_all_land(store: Store, backend: Backend) -> None:
    entries = await asyncio.gather(
        *(enqueue(store, f"req-{n}", contact_id=f"contact-{n % 7}") for n in range(100))
    )
    assert len({e.id for e in entries}) == 100
    assert backend.count_rows("outbox") == 100
    keys = {row[0] for row in backend.query("SELECT idempotency_key FROM outbox")}
    assert keys == {f"req-{n}" for n in range(100)}


async def test_100_concurrent_record_messages_all_land(store: Store, backend: Backend) -> None:
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
    assert backend.count_rows("messages") == 100
    assert backend.query("SELECT COUNT(DISTINCT ghl_message_id) FROM messages") == [(100,)]


async def test_100_concurrent_enqueues_of_one_key_make_one_entry(
    store: Store, backend: Backend
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
    assert backend.count_rows("outbox") == 1


async def test_100_concurrent_records_of_one_message_make_one_row(
    store: Store, backend: Backend
) -> None:
    results = await asyncio.gather(
        *(
            store.record_message(direction=MessageDirection.INBOUND, ghl_message_id="m-1")
            for _ in range(100)
        )
    )
    assert [created for _, created in results].count(True) == 1
    assert len({message.id for message, _ in results}) == 1
    assert backend.count_rows("messages") == 1


async def test_writers_through_two_stores_on_one_database(
    store: Store, backend: Backend, clock: FakeClock
) -> None:
    async with backend.new_store(clock) as second:
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
    assert backend.count_rows("outbox") == 101
    assert backend.query("SELECT COUNT(*) FROM outbox WHERE idempotency_key = 'shared'") == [(1,)]
