"""The inbound event queue: stored before the 2xx, deduped, processed in order per conversation."""

from __future__ import annotations

import asyncio

import pytest

from storage import InboundState, Store
from tests.storage._support import FakeClock

TTL = 7 * 86_400


async def _event(
    store: Store, keys: list[str], conversation: str = "conv-a", body: str = "hi"
) -> int | None:
    event = await store.enqueue_inbound(
        source="webhook",
        event_type="InboundMessage",
        conversation_key=conversation,
        payload={"body": body},
        dedupe_keys=keys,
        ttl_seconds=TTL,
    )
    return None if event is None else event.id


async def test_an_event_is_stored_once_per_webhook_id_or_message_id(store: Store) -> None:
    first = await _event(store, ["webhook:w1", "message:m1"])
    assert first is not None
    assert await _event(store, ["webhook:w1", "message:m1"]) is None  # same delivery again
    assert await _event(store, ["webhook:w2", "message:m1"]) is None  # same message, new id
    assert await _event(store, ["webhook:w1", "message:m2"]) is None  # replayed webhook id
    assert await _event(store, ["webhook:w3", "message:m3"]) is not None
    assert await store.count_inbound() == 2


async def test_keys_expire(store: Store, clock: FakeClock) -> None:
    assert await _event(store, ["webhook:old"]) is not None
    clock.advance(TTL + 1)
    assert await _event(store, ["webhook:old"]) is not None


async def test_claims_are_in_order_and_one_at_a_time_per_conversation(
    store: Store,
) -> None:
    a1 = await _event(store, ["a1"], "conv-a")
    a2 = await _event(store, ["a2"], "conv-a")
    b1 = await _event(store, ["b1"], "conv-b")
    first = await store.claim_inbound()
    second = await store.claim_inbound()
    assert (first and first.id, second and second.id) == (a1, b1)  # a2 waits behind a1
    assert await store.claim_inbound() is None
    assert first is not None
    await store.finish_inbound(first.id)
    third = await store.claim_inbound()
    assert third is not None and third.id == a2
    assert third.payload == {"body": "hi"}


async def test_retry_later_and_failure(store: Store, clock: FakeClock) -> None:
    event_id = await _event(store, ["r1"])
    assert event_id is not None
    claimed = await store.claim_inbound()
    assert claimed is not None and claimed.attempts == 1
    await store.retry_inbound(event_id, next_attempt_at=clock.now + 30, error="slack down")
    assert await store.claim_inbound() is None
    assert await store.next_inbound_due_at() == clock.now + 30
    clock.advance(31)
    again = await store.claim_inbound()
    assert again is not None and again.attempts == 2 and again.last_error == "slack down"
    await store.fail_inbound(event_id, "gave up")
    assert await store.count_inbound(InboundState.FAILED) == 1


async def test_a_claim_that_takes_nothing_brings_the_next_due_time(
    store: Store, clock: FakeClock
) -> None:
    assert await store.claim_inbound_or_due() == (None, None)
    event_id = await _event(store, ["d1"])
    taken, due = await store.claim_inbound_or_due()
    assert taken is not None and taken.id == event_id and due is None
    await store.retry_inbound(event_id, next_attempt_at=clock.now + 30, error="slack down")
    assert await store.claim_inbound_or_due() == (None, clock.now + 30)
    clock.advance(31)
    taken, due = await store.claim_inbound_or_due()
    assert taken is not None and taken.id == event_id and taken.attempts == 2 and due is None


async def test_processing_events_go_back_to_pending_after_a_stop(store: Store) -> None:
    await _event(store, ["p1"])
    assert await store.claim_inbound() is not None
    assert await store.recover_inbound() == 1
    assert await store.count_inbound(InboundState.PENDING) == 1


async def test_concurrent_duplicate_deliveries_store_one_event(store: Store) -> None:
    results = await asyncio.gather(*(_event(store, ["webhook:same"]) for _ in range(50)))
    assert sum(result is not None for result in results) == 1
    assert await store.count_inbound() == 1


async def test_an_event_waiting_for_a_retry_does_not_hold_up_other_conversations(
    store: Store, clock: FakeClock
) -> None:
    retried = await _event(store, ["x1"], "conv-x")
    waiting = await _event(store, ["x2"], "conv-x")
    other = await _event(store, ["y1"], "conv-y")
    assert retried is not None
    claimed = await store.claim_inbound()
    assert claimed is not None and claimed.id == retried
    await store.retry_inbound(retried, next_attempt_at=clock.now + 60, error="slack down")
    # conv-x waits behind its retried event; conv-y goes ahead.
    next_up = await store.claim_inbound()
    assert next_up is not None and next_up.id == other
    assert await store.claim_inbound() is None
    clock.advance(61)
    again = await store.claim_inbound()
    assert again is not None and again.id == retried
    await store.finish_inbound(retried)
    last = await store.claim_inbound()
    assert last is not None and last.id == waiting


# ---------------------------------------------------------------- order of sending (sort_at)


async def _sent_at(
    store: Store,
    name: str,
    conversation: str,
    sort_at: float | None,
    not_before: float | None = None,
) -> int:
    event = await store.enqueue_inbound(
        source="poll",
        event_type="InboundMessage",
        conversation_key=conversation,
        payload={"name": name},
        dedupe_keys=[f"message:{name}"],
        ttl_seconds=TTL,
        sort_at=sort_at,
        not_before=not_before,
    )
    assert event is not None
    return event.id


async def _drain_names(store: Store) -> list[str]:
    """Claim and finish one event at a time until none is left; their names in that order."""
    names = []
    while (event := await store.claim_inbound()) is not None:
        names.append(event.payload["name"])
        await store.finish_inbound(event.id)
    return names


async def test_events_stored_out_of_order_come_out_in_the_order_they_were_sent(
    store: Store, clock: FakeClock
) -> None:
    # A poll lists newest first; a webhook for the oldest message arrives last.
    sent = clock.now - 100
    await _sent_at(store, "three", "conv-a", sent + 3)
    await _sent_at(store, "two", "conv-a", sent + 2)
    clock.advance(1)
    await _sent_at(store, "four", "conv-a", sent + 4)
    await _sent_at(store, "one", "conv-a", sent + 1)
    assert await _drain_names(store) == ["one", "two", "three", "four"]


async def test_equal_send_times_keep_the_order_they_were_stored_in(store: Store) -> None:
    for name in ("first", "second", "third"):
        await _sent_at(store, name, "conv-a", 1_600_000_000.0)
    assert await _drain_names(store) == ["first", "second", "third"]


async def test_sort_at_defaults_to_when_the_event_is_stored(store: Store, clock: FakeClock) -> None:
    await _sent_at(store, "sent later", "conv-a", clock.now + 5)
    await _sent_at(store, "received now", "conv-a", None)
    assert await _drain_names(store) == ["received now", "sent later"]


async def test_a_conversation_out_of_order_does_not_hold_up_others(
    store: Store, clock: FakeClock
) -> None:
    await _sent_at(store, "a-late", "conv-a", clock.now - 10)
    await _sent_at(store, "b-only", "conv-b", clock.now - 15)
    await _sent_at(store, "a-early", "conv-a", clock.now - 20)
    first = await store.claim_inbound()
    second = await store.claim_inbound()
    assert first is not None and second is not None
    assert {first.payload["name"], second.payload["name"]} == {"b-only", "a-early"}
    # a-late waits while a-early is processing, even though a-late is older in the queue.
    assert await store.claim_inbound() is None
    assert await store.next_inbound_due_at() is None
    for event in (first, second):
        await store.finish_inbound(event.id)
    assert await _drain_names(store) == ["a-late"]


async def test_an_earlier_message_stored_while_a_later_one_is_processing_waits_for_it(
    store: Store, clock: FakeClock
) -> None:
    await _sent_at(store, "later", "conv-a", clock.now - 5)
    processing = await store.claim_inbound()
    assert processing is not None
    await _sent_at(store, "earlier", "conv-a", clock.now - 10)
    assert await store.claim_inbound() is None  # never two of one conversation at once
    await store.finish_inbound(processing.id)
    assert await _drain_names(store) == ["earlier"]


async def test_not_before_holds_the_event_and_what_was_sent_after_it(
    store: Store, clock: FakeClock
) -> None:
    await _sent_at(store, "held", "conv-a", clock.now - 30, not_before=clock.now + 20)
    await _sent_at(store, "after held", "conv-a", clock.now - 10)
    await _sent_at(store, "other", "conv-b", clock.now - 10)
    assert await _drain_names(store) == ["other"]
    assert await store.next_inbound_due_at() == clock.now + 20
    clock.advance(20)
    assert await _drain_names(store) == ["held", "after held"]


async def test_next_due_leaves_out_events_held_behind_one_processing(
    store: Store, clock: FakeClock
) -> None:
    await _sent_at(store, "one", "conv-a", None)
    await _sent_at(store, "two", "conv-a", None)
    await _sent_at(store, "other", "conv-b", None, not_before=clock.now + 40)
    one = await store.claim_inbound()
    assert one is not None and one.payload["name"] == "one"
    # "two" is due but cannot be taken before "one" ends; "other" can be, in 40 s.
    assert await store.next_inbound_due_at() == clock.now + 40
    await store.finish_inbound(one.id)
    assert await store.next_inbound_due_at() == clock.now


async def test_a_send_time_that_is_not_a_number_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="sort_at"):
        await _sent_at(store, "nan", "conv-a", float("nan"))
    with pytest.raises(ValueError, match="not_before"):
        await _sent_at(store, "inf", "conv-a", None, not_before=float("inf"))
    assert await store.count_inbound() == 0
