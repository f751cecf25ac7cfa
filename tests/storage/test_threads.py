"""Thread map: one Slack thread per contact per channel, and one contact per Slack thread."""

from __future__ import annotations

import asyncio

import pytest

from storage import (
    ConflictError,
    MessageDirection,
    NotFoundError,
    Store,
    ThreadRecord,
)
from tests.storage._support import START, UNIQUE, Backend, FakeClock, Rejected, enqueue


async def upsert(
    store: Store,
    contact_id: str = "contact-a",
    *,
    channel_id: str = "C1",
    thread_ts: str | None = None,
    conversation_id: str | None = None,
    contact_label: str | None = None,
) -> ThreadRecord:
    return await store.upsert_thread(
        team_id="T1",
        channel_id=channel_id,
        location_id="loc-1",
        contact_id=contact_id,
        thread_ts=thread_ts,
        conversation_id=conversation_id,
        contact_label=contact_label,
    )


async def test_upsert_creates_then_returns_the_same_thread(
    store: Store, backend: Backend, clock: FakeClock
) -> None:
    created = await store.upsert_thread(
        team_id="T1",
        channel_id="C1",
        location_id="loc-1",
        contact_id="contact-a",
        thread_ts="1700000000.000100",
        conversation_id="conv-a",
        channel_type="SMS",
        email_thread_id=None,
        subject=None,
        contact_label="+15550001111",
    )
    assert created.id > 0
    assert (created.team_id, created.channel_id, created.thread_ts) == (
        "T1",
        "C1",
        "1700000000.000100",
    )
    assert (created.location_id, created.contact_id, created.conversation_id) == (
        "loc-1",
        "contact-a",
        "conv-a",
    )
    assert (created.channel_type, created.contact_label) == ("SMS", "+15550001111")
    assert created.created_at == created.updated_at == START

    clock.advance(10)
    again = await upsert(store, thread_ts="1700000099.000100", conversation_id="conv-other")
    assert again == created  # set columns are never overwritten by upsert
    assert backend.count_rows("slack_threads") == 1


async def test_upsert_fills_columns_that_are_still_null(store: Store, clock: FakeClock) -> None:
    reserved = await upsert(store)
    assert reserved.thread_ts is None and reserved.conversation_id is None
    clock.advance(5)
    filled = await upsert(store, thread_ts="111.1", conversation_id="conv-a", contact_label="Ann")
    assert filled.id == reserved.id
    assert (filled.thread_ts, filled.conversation_id, filled.contact_label) == (
        "111.1",
        "conv-a",
        "Ann",
    )
    assert filled.updated_at == START + 5
    assert filled.created_at == START


async def test_one_thread_per_contact_per_channel(store: Store) -> None:
    first = await upsert(store, "contact-a", channel_id="C1")
    other_channel = await upsert(store, "contact-a", channel_id="C2")
    other_contact = await upsert(store, "contact-b", channel_id="C1")
    assert len({first.id, other_channel.id, other_contact.id}) == 3
    other_location = await store.upsert_thread(
        team_id="T1", channel_id="C1", location_id="loc-2", contact_id="contact-a"
    )
    assert other_location.id not in {first.id, other_channel.id, other_contact.id}


async def test_a_slack_thread_maps_to_one_contact(store: Store) -> None:
    await upsert(store, "contact-a", thread_ts="111.1")
    with pytest.raises(ConflictError, match=UNIQUE):
        await upsert(store, "contact-b", thread_ts="111.1")
    # The same ts in another channel is another thread.
    other = await upsert(store, "contact-b", channel_id="C2", thread_ts="111.1")
    assert other.thread_ts == "111.1"


async def test_many_reserved_threads_may_share_a_null_thread_ts(store: Store) -> None:
    reserved = [await upsert(store, f"contact-{n}") for n in range(3)]
    assert all(t.thread_ts is None for t in reserved)
    assert len({t.id for t in reserved}) == 3


async def test_both_uniques_are_in_the_schema(store: Store, backend: Backend) -> None:
    await upsert(store, "contact-a", thread_ts="111.1")
    insert = (
        "INSERT INTO slack_threads (team_id, channel_id, thread_ts, location_id, contact_id,"
        " created_at, updated_at) VALUES ('T1', 'C1', ?, 'loc-1', ?, 0, 0)"
    )
    with pytest.raises(Rejected, match="thread_ts"):
        backend.query(insert, ("111.1", "contact-b"))
    with pytest.raises(Rejected, match="contact_id"):
        backend.query(insert, ("222.2", "contact-a"))


async def test_concurrent_first_sends_get_one_thread(store: Store, backend: Backend) -> None:
    threads = await asyncio.gather(*(upsert(store, "contact-a") for _ in range(30)))
    assert len({t.id for t in threads}) == 1
    assert backend.count_rows("slack_threads") == 1


async def test_concurrent_first_sends_from_two_stores_get_one_thread(
    store: Store, backend: Backend, clock: FakeClock
) -> None:
    async with backend.new_store(clock) as other:
        threads = await asyncio.gather(
            *(upsert(s, "contact-a") for _ in range(15) for s in (store, other))
        )
    assert len({t.id for t in threads}) == 1
    assert backend.count_rows("slack_threads") == 1


async def test_lookups(store: Store) -> None:
    thread = await upsert(store, thread_ts="111.1")
    assert await store.get_thread(thread.id) == thread
    assert await store.get_thread(thread.id + 1) is None
    assert await store.get_thread_by_slack("T1", "C1", "111.1") == thread
    assert await store.get_thread_by_slack("T1", "C2", "111.1") is None
    assert await store.get_thread_by_slack("T2", "C1", "111.1") is None
    assert await store.find_thread_for_contact("T1", "C1", "loc-1", "contact-a") == thread
    assert await store.find_thread_for_contact("T1", "C1", "loc-1", "contact-b") is None
    assert await store.find_thread_for_contact("T1", "C1", "loc-2", "contact-a") is None


async def test_find_threads_for_conversation_newest_first(store: Store, clock: FakeClock) -> None:
    in_c1 = await upsert(store, channel_id="C1", conversation_id="conv-a")
    clock.advance(1)
    in_c2 = await upsert(store, channel_id="C2", conversation_id="conv-a")
    await upsert(store, "contact-b", conversation_id="conv-b")
    found = await store.find_threads_for_conversation("loc-1", "conv-a")
    assert [t.id for t in found] == [in_c2.id, in_c1.id]
    clock.advance(1)
    await store.update_thread(in_c1.id, channel_type="Email")  # activity moves it to the front
    found = await store.find_threads_for_conversation("loc-1", "conv-a")
    assert [t.id for t in found] == [in_c1.id, in_c2.id]
    assert await store.find_threads_for_conversation("loc-2", "conv-a") == []


async def test_find_threads_for_contact(store: Store, clock: FakeClock) -> None:
    first = await upsert(store, channel_id="C1")
    clock.advance(1)
    second = await upsert(store, channel_id="C2")
    await upsert(store, "contact-b")
    found = await store.find_threads_for_contact("loc-1", "contact-a")
    assert [t.id for t in found] == [second.id, first.id]


async def test_update_thread_changes_only_given_columns(store: Store, clock: FakeClock) -> None:
    thread = await store.upsert_thread(
        team_id="T1",
        channel_id="C1",
        location_id="loc-1",
        contact_id="contact-a",
        thread_ts="111.1",
        channel_type="SMS",
        subject="Hello",
        contact_label="Ann",
    )
    clock.advance(3)
    updated = await store.update_thread(
        thread.id, conversation_id="conv-a", email_thread_id="email-thread-1"
    )
    assert (updated.conversation_id, updated.email_thread_id) == ("conv-a", "email-thread-1")
    assert (updated.channel_type, updated.subject, updated.contact_label) == ("SMS", "Hello", "Ann")
    assert updated.thread_ts == "111.1"
    assert updated.updated_at == START + 3

    cleared = await store.update_thread(thread.id, subject=None, channel_type="Email")
    assert (cleared.subject, cleared.channel_type) == (None, "Email")
    assert cleared.conversation_id == "conv-a"
    assert await store.get_thread(thread.id) == cleared

    with pytest.raises(NotFoundError):
        await store.update_thread(thread.id + 100, subject="x")


async def test_set_thread_ts_first_root_wins(store: Store) -> None:
    reserved = await upsert(store)
    posted = await store.set_thread_ts(reserved.id, "111.1")
    assert posted.thread_ts == "111.1"
    assert await store.get_thread_by_slack("T1", "C1", "111.1") == posted

    late = await store.set_thread_ts(reserved.id, "222.2")
    assert late.thread_ts == "111.1"  # the loser learns it lost by comparing
    assert await store.get_thread_by_slack("T1", "C1", "222.2") is None

    replaced = await store.set_thread_ts(reserved.id, "333.3", replace=True)
    assert replaced.thread_ts == "333.3"

    other = await upsert(store, "contact-b")
    with pytest.raises(ConflictError):
        await store.set_thread_ts(other.id, "333.3")
    with pytest.raises(NotFoundError):
        await store.set_thread_ts(other.id + 100, "444.4")


async def test_delete_thread_unlinks_messages_and_outbox(store: Store) -> None:
    thread = await upsert(store, thread_ts="111.1")
    message, _ = await store.record_message(
        direction=MessageDirection.INBOUND, thread_id=thread.id, ghl_message_id="m-1"
    )
    entry = await enqueue(store, "key-1", thread_id=thread.id)
    assert await store.delete_thread(thread.id) is True
    assert await store.delete_thread(thread.id) is False
    assert await store.get_thread(thread.id) is None
    kept_message = await store.get_message(message.id)
    kept_entry = await store.get_outbox(entry.id)
    assert kept_message is not None and kept_message.thread_id is None
    assert kept_entry is not None and kept_entry.thread_id is None
