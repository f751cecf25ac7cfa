"""Outbox: idempotent enqueue, per-contact ordered claiming, transitions, crash recovery."""

from __future__ import annotations

import asyncio

import pytest

from storage import (
    MessageDirection,
    NotFoundError,
    OutboxEntry,
    OutboxState,
    OutboxStateError,
    Store,
)
from tests.storage._support import START, Backend, FakeClock, Rejected, enqueue


async def claim(store: Store, now: float | None = None) -> OutboxEntry:
    entry = await store.claim_next(now)
    assert entry is not None, "expected an entry to claim"
    return entry


# ---------------------------------------------------------------- enqueue


async def test_enqueue_stores_the_send(store: Store) -> None:
    entry, created = await store.enqueue(
        idempotency_key="slack-req-1",
        team_id="T1",
        channel_id="C1",
        slack_user_id="U1",
        location_id="loc-1",
        contact_id="contact-a",
        message_type="Email",
        payload={"type": "Email", "html": "<p>Grüße</p>", "subject": "Hi", "emailCc": ["a@b.c"]},
        thread_id=None,
        conversation_id="conv-a",
        slack_ts="111.1",
        scheduled_at=START + 3600,
    )
    assert created is True
    assert entry.state is OutboxState.PENDING
    assert (entry.attempts, entry.last_error, entry.next_attempt_at) == (0, None, START)
    assert entry.payload == {
        "type": "Email",
        "html": "<p>Grüße</p>",
        "subject": "Hi",
        "emailCc": ["a@b.c"],
    }
    assert (entry.team_id, entry.channel_id, entry.slack_user_id) == ("T1", "C1", "U1")
    assert (entry.location_id, entry.contact_id, entry.conversation_id) == (
        "loc-1",
        "contact-a",
        "conv-a",
    )
    assert (entry.message_type, entry.slack_ts, entry.scheduled_at) == (
        "Email",
        "111.1",
        START + 3600,
    )
    assert (entry.ghl_message_id, entry.ghl_email_message_id, entry.ghl_message_ids) == (
        None,
        None,
        (),
    )
    assert await store.get_outbox(entry.id) == entry


async def test_enqueue_same_key_returns_the_first_entry(
    store: Store, backend: Backend, clock: FakeClock
) -> None:
    first = await enqueue(store, "slack-req-1")
    clock.advance(1)
    again, created = await store.enqueue(
        idempotency_key="slack-req-1",
        team_id="T1",
        channel_id="C1",
        slack_user_id="U1",
        location_id="loc-1",
        contact_id="contact-a",
        message_type="SMS",
        payload={"message": "a different text"},
    )
    assert created is False
    assert again == first
    assert backend.count_rows("outbox") == 1


async def test_idempotency_key_is_unique_in_the_schema(store: Store, backend: Backend) -> None:
    await enqueue(store, "slack-req-1")
    with pytest.raises(Rejected, match="idempotency_key"):
        backend.query(
            "INSERT INTO outbox (idempotency_key, team_id, channel_id, slack_user_id,"
            " location_id, contact_id, message_type, payload, next_attempt_at, created_at,"
            " updated_at) VALUES ('slack-req-1', 'T', 'C', 'U', 'l', 'c', 'SMS', '{}', 0, 0, 0)",
        )


async def test_enqueue_rejects_empty_key_and_bad_payload(store: Store) -> None:
    with pytest.raises(ValueError, match="idempotency_key"):
        await enqueue(store, "")
    with pytest.raises(TypeError):
        await store.enqueue(
            idempotency_key="k",
            team_id="T1",
            channel_id="C1",
            slack_user_id="U1",
            location_id="loc-1",
            contact_id="contact-a",
            message_type="SMS",
            payload={"not json": object()},
        )
    assert await store.get_outbox_by_key("k") is None


# ---------------------------------------------------------------- claim_next


async def test_claim_next_moves_one_entry_to_sending(store: Store, clock: FakeClock) -> None:
    assert await store.claim_next() is None
    entry = await enqueue(store, "k1")
    clock.advance(2)
    claimed = await claim(store)
    assert claimed.id == entry.id
    assert (claimed.state, claimed.attempts, claimed.updated_at) == (
        OutboxState.SENDING,
        1,
        START + 2,
    )
    assert await store.claim_next() is None  # nothing else pending


async def test_claim_order_is_strict_per_contact_and_free_across_contacts(
    store: Store,
) -> None:
    a1 = await enqueue(store, "a1", contact_id="contact-a")
    a2 = await enqueue(store, "a2", contact_id="contact-a")
    b1 = await enqueue(store, "b1", contact_id="contact-b")
    other_location = await enqueue(store, "x1", location_id="loc-2", contact_id="contact-a")

    assert (await claim(store)).id == a1.id
    # a2 waits for a1; contact B and the same contact id in another location do not.
    assert (await claim(store)).id == b1.id
    assert (await claim(store)).id == other_location.id
    assert await store.claim_next() is None

    await store.mark_sent(a1.id, conversation_id="conv-a", ghl_message_id="m-a1")
    assert (await claim(store)).id == a2.id


async def test_claim_skips_entries_not_yet_due(store: Store) -> None:
    later = await enqueue(store, "later", next_attempt_at=START + 60)
    assert await store.claim_next(START) is None
    assert await store.claim_next(START + 59.9) is None
    assert (await claim(store, START + 60)).id == later.id


async def test_an_older_entry_waiting_for_retry_holds_back_its_contact(
    store: Store,
) -> None:
    a1 = await enqueue(store, "a1", contact_id="contact-a")
    a2 = await enqueue(store, "a2", contact_id="contact-a")
    b1 = await enqueue(store, "b1", contact_id="contact-b")
    assert (await claim(store)).id == a1.id
    await store.retry_later(a1.id, next_attempt_at=START + 30, error="HTTP 503")

    # a2 is due but must not overtake a1; b1 goes.
    assert (await claim(store, START + 1)).id == b1.id
    assert await store.claim_next(START + 1) is None
    assert (await claim(store, START + 30)).id == a1.id
    assert await store.claim_next(START + 30) is None
    await store.mark_failed(a1.id, "HTTP 400")
    assert (await claim(store, START + 30)).id == a2.id


async def test_concurrent_claimers_never_share_an_entry(
    store: Store, backend: Backend, clock: FakeClock
) -> None:
    queued = {(await enqueue(store, f"k{n}", contact_id=f"contact-{n}")).id for n in range(12)}
    async with backend.new_store(clock) as second:
        results = await asyncio.gather(
            *(s.claim_next() for _ in range(15) for s in (store, second))
        )
    claimed = [entry.id for entry in results if entry is not None]
    assert sorted(claimed) == sorted(queued)  # every entry exactly once, none twice
    rows = backend.query("SELECT state, attempts FROM outbox")
    assert rows == [("sending", 1)] * 12


async def test_concurrent_claimers_keep_one_contact_to_one_send(store: Store) -> None:
    for n in range(5):
        await enqueue(store, f"a{n}", contact_id="contact-a")
    results = await asyncio.gather(*(store.claim_next() for _ in range(10)))
    assert len([entry for entry in results if entry is not None]) == 1


# ---------------------------------------------------------------- transitions


async def test_mark_sent_records_everything_at_once(store: Store, clock: FakeClock) -> None:
    thread = await store.upsert_thread(
        team_id="T1",
        channel_id="C1",
        location_id="loc-1",
        contact_id="contact-a",
        thread_ts="100.1",
        channel_type="SMS",
    )
    entry = await enqueue(store, "k1", thread_id=thread.id, message_type="Email", slack_ts="111.1")
    await claim(store)
    clock.advance(1)
    sent = await store.mark_sent(
        entry.id,
        conversation_id="conv-a",
        ghl_message_id="m-1",
        ghl_email_message_id="em-1",
        ghl_message_ids=["m-1", "m-extra"],
    )
    assert sent.state is OutboxState.SENT
    assert (sent.conversation_id, sent.ghl_message_id, sent.ghl_email_message_id) == (
        "conv-a",
        "m-1",
        "em-1",
    )
    assert sent.ghl_message_ids == ("m-1", "m-extra")
    assert sent.updated_at == START + 1
    assert await store.get_outbox(entry.id) == sent

    # The echo of each returned id is recognisable; the Slack post belongs to the main one.
    main = await store.get_message_by_ghl_id("m-1")
    extra = await store.get_message_by_ghl_id("m-extra")
    assert main is not None and extra is not None
    assert (main.direction, main.outbox_id, main.thread_id) == (
        MessageDirection.OUTBOUND,
        entry.id,
        thread.id,
    )
    assert (main.slack_channel_id, main.slack_ts, main.slack_user_id) == ("C1", "111.1", "U1")
    assert (main.ghl_email_message_id, main.message_type) == ("em-1", "Email")
    assert (extra.slack_ts, extra.outbox_id) == (None, entry.id)

    updated_thread = await store.get_thread(thread.id)
    assert updated_thread is not None
    assert (updated_thread.conversation_id, updated_thread.channel_type) == ("conv-a", "Email")
    assert updated_thread.updated_at == START + 1


async def test_mark_sent_links_an_echo_that_arrived_first(store: Store) -> None:
    entry = await enqueue(store, "k1")
    await claim(store)
    echo, _ = await store.record_message(
        direction=MessageDirection.OUTBOUND, ghl_message_id="m-1", status="delivered"
    )
    await store.mark_sent(entry.id, conversation_id="conv-a", ghl_message_id="m-1")
    linked = await store.get_message_by_ghl_id("m-1")
    assert linked is not None
    assert (linked.id, linked.outbox_id, linked.status) == (echo.id, entry.id, "delivered")


async def test_mark_sent_without_any_message_id_still_records_the_send(
    store: Store, backend: Backend
) -> None:
    entry = await enqueue(store, "k1", slack_ts="111.1")
    await claim(store)
    sent = await store.mark_sent(entry.id, conversation_id=None, ghl_message_id=None)
    assert (sent.state, sent.conversation_id, sent.ghl_message_ids) == (OutboxState.SENT, None, ())
    assert backend.query("SELECT ghl_message_id, outbox_id, slack_ts FROM messages") == [
        (None, entry.id, "111.1")
    ]


async def test_mark_sent_only_after_a_send_started(store: Store) -> None:
    entry = await enqueue(store, "k1")
    with pytest.raises(OutboxStateError, match="'pending'; cannot mark_sent"):
        await store.mark_sent(entry.id, conversation_id="c", ghl_message_id="m")
    with pytest.raises(NotFoundError):
        await store.mark_sent(entry.id + 1, conversation_id="c", ghl_message_id="m")
    assert await store.get_message_by_ghl_id("m") is None
    await claim(store)
    await store.mark_sent(entry.id, conversation_id="c", ghl_message_id="m")
    with pytest.raises(OutboxStateError, match="'sent'"):
        await store.mark_sent(entry.id, conversation_id="c", ghl_message_id="m2")


async def test_failed_unknown_retry_and_cancel(store: Store, clock: FakeClock) -> None:
    entry = await enqueue(store, "k1")
    await claim(store)
    unknown = await store.mark_unknown(entry.id, "read timeout")
    assert (unknown.state, unknown.last_error) == (OutboxState.UNKNOWN, "read timeout")
    assert await store.claim_next(START + 3600) is None  # never resent by itself

    # Reconciliation found nothing at HighLevel: try again later.
    retry = await store.retry_later(entry.id, next_attempt_at=START + 10, error="not at HighLevel")
    assert (retry.state, retry.next_attempt_at, retry.attempts) == (
        OutboxState.PENDING,
        START + 10,
        1,
    )
    assert retry.last_error == "not at HighLevel"
    again = await claim(store, START + 10)
    assert again.attempts == 2

    failed = await store.mark_failed(entry.id, "HTTP 422: invalid phone")
    assert (failed.state, failed.last_error) == (OutboxState.FAILED, "HTTP 422: invalid phone")
    with pytest.raises(OutboxStateError):
        await store.mark_unknown(entry.id, "x")
    cancelled = await store.mark_cancelled(entry.id)
    assert cancelled.state is OutboxState.CANCELLED
    assert cancelled.last_error == "HTTP 422: invalid phone"  # kept for the record
    with pytest.raises(OutboxStateError):
        await store.retry_later(entry.id, next_attempt_at=START, error=None)


async def test_cannot_cancel_what_the_worker_is_sending(store: Store) -> None:
    entry = await enqueue(store, "k1")
    pending_too = await enqueue(store, "k2", contact_id="contact-b")
    await claim(store)
    with pytest.raises(OutboxStateError, match="'sending'; cannot mark_cancelled"):
        await store.mark_cancelled(entry.id)
    assert (await store.mark_cancelled(pending_too.id)).state is OutboxState.CANCELLED
    assert await store.claim_next() is None


async def test_set_outbox_slack_ts_before_and_after_sending(store: Store) -> None:
    before = await enqueue(store, "k1")
    after = await enqueue(store, "k2", contact_id="contact-b")
    assert (await store.set_outbox_slack_ts(before.id, "111.1")).slack_ts == "111.1"
    await claim(store)
    await claim(store)
    await store.mark_sent(before.id, conversation_id="c1", ghl_message_id="m-1")
    await store.mark_sent(after.id, conversation_id="c2", ghl_message_id="m-2")
    shown_before = await store.get_message_by_ghl_id("m-1")
    assert shown_before is not None and shown_before.slack_ts == "111.1"

    updated = await store.set_outbox_slack_ts(after.id, "222.2")
    assert updated.slack_ts == "222.2"
    shown_after = await store.get_message_by_slack("C1", "222.2")
    assert shown_after is not None and shown_after.ghl_message_id == "m-2"
    # A second post does not move the message's link.
    await store.set_outbox_slack_ts(after.id, "333.3")
    assert await store.get_message_by_slack("C1", "333.3") is None

    with pytest.raises(NotFoundError):
        await store.set_outbox_slack_ts(after.id + 100, "1.1")


async def test_lookups_listing_and_next_due(store: Store) -> None:
    assert await store.next_outbox_due_at() is None
    first = await enqueue(store, "k1", next_attempt_at=START + 50)
    second = await enqueue(store, "k2", contact_id="contact-b", next_attempt_at=START + 20)
    third = await enqueue(store, "k3", contact_id="contact-c")
    assert await store.next_outbox_due_at() == START
    assert await store.get_outbox_by_key("k2") == second
    assert await store.get_outbox_by_key("nope") is None
    assert await store.get_outbox(third.id + 1) is None

    await claim(store)  # takes k3
    assert await store.next_outbox_due_at() == START + 20
    assert [e.id for e in await store.list_outbox()] == [first.id, second.id, third.id]
    assert [e.id for e in await store.list_outbox(OutboxState.PENDING)] == [first.id, second.id]
    assert [e.id for e in await store.list_outbox(OutboxState.SENDING)] == [third.id]
    assert await store.list_outbox(OutboxState.SENT) == []
    assert [e.id for e in await store.list_outbox(limit=1)] == [first.id]


# ---------------------------------------------------------------- crash recovery


async def test_recover_after_crash_turns_sending_into_unknown(
    backend: Backend, clock: FakeClock
) -> None:
    async with backend.new_store(clock) as before_crash:
        in_flight_a = await enqueue(before_crash, "a1", contact_id="contact-a")
        in_flight_b = await enqueue(before_crash, "b1", contact_id="contact-b")
        waiting = await enqueue(
            before_crash, "c1", contact_id="contact-c", next_attempt_at=START + 99
        )
        await claim(before_crash)
        await claim(before_crash)
        # The process dies here: no mark_sent, no mark_failed.

    clock.advance(5)
    async with backend.new_store(clock) as after_restart:
        assert await after_restart.recover_after_crash() == 2
        assert await after_restart.recover_after_crash() == 0
        for entry_id in (in_flight_a.id, in_flight_b.id):
            entry = await after_restart.get_outbox(entry_id)
            assert entry is not None
            assert (entry.state, entry.attempts, entry.updated_at) == (
                OutboxState.UNKNOWN,
                1,
                START + 5,
            )
            assert entry.last_error is not None and "may have reached HighLevel" in entry.last_error
        untouched = await after_restart.get_outbox(waiting.id)
        assert untouched is not None and untouched.state is OutboxState.PENDING
        # Nothing is resent blindly, but reconciliation can still settle them.
        assert await after_restart.claim_next(START + 10) is None
        sent = await after_restart.mark_sent(
            in_flight_a.id, conversation_id="conv-a", ghl_message_id="m-a1"
        )
        assert sent.state is OutboxState.SENT


async def test_set_outbox_thread_links_the_entry(store: Store) -> None:
    thread = await store.upsert_thread(
        team_id="T1", channel_id="C1", location_id="loc", contact_id="contact-a"
    )
    entry, _ = await store.enqueue(
        idempotency_key="link-thread",
        team_id="T1",
        channel_id="C1",
        slack_user_id="U1",
        location_id="loc",
        contact_id="contact-a",
        message_type="SMS",
        payload={"request": {}},
    )
    assert entry.thread_id is None
    linked = await store.set_outbox_thread(entry.id, thread.id)
    assert linked.thread_id == thread.id
    assert (await store.get_outbox(entry.id)).thread_id == thread.id  # type: ignore[union-attr]
    with pytest.raises(NotFoundError):
        await store.set_outbox_thread(999_999, thread.id)


async def test_a_claim_that_takes_nothing_brings_the_next_due_time(store: Store) -> None:
    assert await store.claim_next_or_due() == (None, None)  # an empty queue
    first = await enqueue(store, "a1", contact_id="contact-a")
    await enqueue(store, "a2", contact_id="contact-a")
    later = await enqueue(store, "b1", contact_id="contact-b", next_attempt_at=START + 40)
    taken, due = await store.claim_next_or_due()
    assert taken is not None and taken.id == first.id and taken.state is OutboxState.SENDING
    assert due is None  # a claim that takes an entry does not look further
    # a2 waits behind a1 in flight; b1 is the next one due, as next_outbox_due_at says.
    assert await store.claim_next_or_due() == (None, START + 40)
    assert await store.next_outbox_due_at() == START + 40
    taken, due = await store.claim_next_or_due(START + 40)
    assert taken is not None and taken.id == later.id and due is None
    assert await store.claim_next_or_due(START + 40) == (None, None)


async def test_next_due_leaves_out_sends_held_behind_one_in_flight(store: Store) -> None:
    first = await enqueue(store, "a1", contact_id="contact-a")
    await enqueue(store, "a2", contact_id="contact-a")
    await enqueue(store, "b1", contact_id="contact-b", next_attempt_at=START + 40)
    assert (await claim(store)).id == first.id
    # a2 is due but cannot go before a1 ends; b1 can, at START + 40.
    assert await store.next_outbox_due_at() == START + 40
    await store.retry_later(first.id, next_attempt_at=START + 30, error="HTTP 503")
    assert await store.next_outbox_due_at() == START + 30  # a1 again, a2 still behind it
    assert (await claim(store, START + 30)).id == first.id
    await store.mark_sent(first.id, conversation_id="conv-a", ghl_message_id="m-a1")
    assert await store.next_outbox_due_at() == START
