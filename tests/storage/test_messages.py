"""Messages: idempotent recording, look-ups, status, Slack links."""

from __future__ import annotations

import pytest

from storage import ConflictError, MessageDirection, NotFoundError, OutboxState, Store
from tests.storage._support import CHECK, START, UNIQUE, Backend, FakeClock, Rejected, enqueue

INBOUND = MessageDirection.INBOUND
OUTBOUND = MessageDirection.OUTBOUND


async def new_thread_id(store: Store, contact_id: str = "contact-a") -> int:
    thread = await store.upsert_thread(
        team_id="T1", channel_id="C1", location_id="loc-1", contact_id=contact_id
    )
    return thread.id


async def test_record_message_is_idempotent_on_ghl_id(
    store: Store, backend: Backend, clock: FakeClock
) -> None:
    thread_id = await new_thread_id(store)
    message, created = await store.record_message(
        direction=INBOUND,
        thread_id=thread_id,
        ghl_message_id="m-1",
        ghl_email_message_id="em-1",
        email_thread_id="et-1",
        message_type="Email",
        status="delivered",
        slack_channel_id="C1",
        slack_ts="111.1",
        slack_user_id=None,
    )
    assert created is True
    assert (message.thread_id, message.ghl_message_id, message.ghl_email_message_id) == (
        thread_id,
        "m-1",
        "em-1",
    )
    assert (message.email_thread_id, message.direction, message.message_type) == (
        "et-1",
        INBOUND,
        "Email",
    )
    assert (message.status, message.slack_channel_id, message.slack_ts) == (
        "delivered",
        "C1",
        "111.1",
    )
    assert message.created_at == START

    clock.advance(1)
    again, created_again = await store.record_message(
        direction=INBOUND, thread_id=thread_id, ghl_message_id="m-1", status="read"
    )
    assert created_again is False
    assert again == message  # returned unchanged
    assert backend.count_rows("messages") == 1


async def test_record_message_without_ghl_id_is_idempotent_on_slack_post(
    store: Store, backend: Backend
) -> None:
    first, created = await store.record_message(
        direction=OUTBOUND, slack_channel_id="C1", slack_ts="111.1", slack_user_id="U1"
    )
    again, created_again = await store.record_message(
        direction=OUTBOUND, slack_channel_id="C1", slack_ts="111.1"
    )
    assert (created, created_again) == (True, False)
    assert again.id == first.id
    # Without any key every call is a new row.
    await store.record_message(direction=INBOUND)
    await store.record_message(direction=INBOUND)
    assert backend.count_rows("messages") == 3


async def test_slack_post_recorded_under_another_ghl_id_conflicts(store: Store) -> None:
    await store.record_message(
        direction=INBOUND, ghl_message_id="m-1", slack_channel_id="C1", slack_ts="111.1"
    )
    with pytest.raises(ConflictError, match=UNIQUE):
        await store.record_message(
            direction=INBOUND, ghl_message_id="m-2", slack_channel_id="C1", slack_ts="111.1"
        )
    assert await store.get_message_by_ghl_id("m-2") is None


async def test_slack_channel_and_ts_go_together(store: Store) -> None:
    with pytest.raises(ValueError, match="together"):
        await store.record_message(direction=INBOUND, slack_channel_id="C1")


async def test_message_uniques_are_in_the_schema(store: Store, backend: Backend) -> None:
    insert = (
        "INSERT INTO messages (ghl_message_id, slack_channel_id, slack_ts, direction,"
        " created_at, updated_at) VALUES (?, ?, ?, 'inbound', 0, 0)"
    )
    backend.query(insert, ("m-1", "C1", "111.1"))
    with pytest.raises(Rejected, match="ghl_message_id"):
        backend.query(insert, ("m-1", None, None))
    with pytest.raises(Rejected, match="slack_ts"):
        backend.query(insert, ("m-2", "C1", "111.1"))
    # NULLs never collide.
    backend.query(insert, (None, None, None))
    backend.query(insert, (None, None, None))
    with pytest.raises(Rejected, match=CHECK):
        backend.query(insert.replace("'inbound'", "'sideways'"), ("m-9", None, None))
    assert backend.count_rows("messages") == 3


async def test_lookups(store: Store) -> None:
    message, _ = await store.record_message(
        direction=INBOUND, ghl_message_id="m-1", slack_channel_id="C1", slack_ts="111.1"
    )
    assert await store.get_message(message.id) == message
    assert await store.get_message(message.id + 1) is None
    assert await store.get_message_by_ghl_id("m-1") == message
    assert await store.get_message_by_ghl_id("m-2") is None
    assert await store.get_message_by_slack("C1", "111.1") == message
    assert await store.get_message_by_slack("C2", "111.1") is None


async def test_update_message_status(store: Store, clock: FakeClock) -> None:
    message, _ = await store.record_message(
        direction=OUTBOUND, ghl_message_id="m-1", status="pending"
    )
    clock.advance(2)
    updated = await store.update_message_status("m-1", "delivered")
    assert updated is not None
    assert (updated.id, updated.status, updated.updated_at) == (message.id, "delivered", START + 2)
    assert await store.update_message_status("unknown-id", "read") is None


async def test_a_sends_status_update_brings_its_outbox_entry(
    store: Store, clock: FakeClock
) -> None:
    entry = await enqueue(store, "k1")
    await store.claim_next()
    await store.mark_sent(entry.id, conversation_id="conv-1", ghl_message_id="m-1")
    await store.record_message(direction=INBOUND, ghl_message_id="m-in")  # no send made it
    clock.advance(3)
    sent = await store.update_status_of_send("m-1", "delivered")
    assert sent is not None and (sent.id, sent.state) == (entry.id, OutboxState.SENT)
    message = await store.get_message_by_ghl_id("m-1")
    assert message is not None and (message.status, message.updated_at) == ("delivered", START + 3)
    assert await store.update_status_of_send("m-in", "read") is None
    assert (await store.get_message_by_ghl_id("m-in")).status == "read"  # type: ignore[union-attr]
    assert await store.update_status_of_send("unknown-id", "read") is None


async def test_latest_message_filters(store: Store, clock: FakeClock) -> None:
    thread_id = await new_thread_id(store)
    other_thread = await new_thread_id(store, "contact-b")
    sms_in, _ = await store.record_message(
        direction=INBOUND, thread_id=thread_id, ghl_message_id="m-1", message_type="SMS"
    )
    clock.advance(1)
    email_in, _ = await store.record_message(
        direction=INBOUND, thread_id=thread_id, ghl_message_id="m-2", message_type="Email"
    )
    clock.advance(1)
    sms_out, _ = await store.record_message(
        direction=OUTBOUND, thread_id=thread_id, ghl_message_id="m-3", message_type="SMS"
    )
    clock.advance(1)
    await store.record_message(
        direction=INBOUND, thread_id=other_thread, ghl_message_id="m-4", message_type="SMS"
    )

    assert await store.latest_message(thread_id) == sms_out
    assert await store.latest_message(thread_id, direction=INBOUND) == email_in
    assert await store.latest_message(thread_id, message_type="SMS") == sms_out
    assert await store.latest_message(thread_id, direction=INBOUND, message_type="SMS") == sms_in
    assert await store.latest_message(thread_id, message_type="WhatsApp") is None
    assert await store.latest_message(other_thread + 1) is None


async def test_latest_message_same_second_uses_insert_order(store: Store) -> None:
    thread_id = await new_thread_id(store)
    await store.record_message(direction=INBOUND, thread_id=thread_id, ghl_message_id="m-1")
    second, _ = await store.record_message(
        direction=INBOUND, thread_id=thread_id, ghl_message_id="m-2"
    )
    assert await store.latest_message(thread_id) == second


async def test_attach_slack_ts_first_post_wins(store: Store) -> None:
    message, _ = await store.record_message(direction=INBOUND, ghl_message_id="m-1")
    attached = await store.attach_slack_ts(message.id, slack_channel_id="C1", slack_ts="111.1")
    assert (attached.slack_channel_id, attached.slack_ts) == ("C1", "111.1")
    assert await store.get_message_by_slack("C1", "111.1") == attached

    late = await store.attach_slack_ts(message.id, slack_channel_id="C1", slack_ts="222.2")
    assert late.slack_ts == "111.1"
    moved = await store.attach_slack_ts(
        message.id, slack_channel_id="C2", slack_ts="333.3", replace=True
    )
    assert (moved.slack_channel_id, moved.slack_ts) == ("C2", "333.3")

    other, _ = await store.record_message(direction=INBOUND, ghl_message_id="m-2")
    with pytest.raises(ConflictError):
        await store.attach_slack_ts(other.id, slack_channel_id="C2", slack_ts="333.3")
    with pytest.raises(NotFoundError):
        await store.attach_slack_ts(other.id + 100, slack_channel_id="C1", slack_ts="1.1")
