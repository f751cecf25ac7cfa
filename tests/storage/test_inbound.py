"""The inbound event queue: stored before the 2xx, deduped, processed in order per conversation."""

from __future__ import annotations

import asyncio

from storage import InboundState, SqliteStore
from tests.storage._support import FakeClock

TTL = 7 * 86_400


async def _event(
    store: SqliteStore, keys: list[str], conversation: str = "conv-a", body: str = "hi"
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


async def test_an_event_is_stored_once_per_webhook_id_or_message_id(store: SqliteStore) -> None:
    first = await _event(store, ["webhook:w1", "message:m1"])
    assert first is not None
    assert await _event(store, ["webhook:w1", "message:m1"]) is None  # same delivery again
    assert await _event(store, ["webhook:w2", "message:m1"]) is None  # same message, new id
    assert await _event(store, ["webhook:w1", "message:m2"]) is None  # replayed webhook id
    assert await _event(store, ["webhook:w3", "message:m3"]) is not None
    assert await store.count_inbound() == 2


async def test_keys_expire(store: SqliteStore, clock: FakeClock) -> None:
    assert await _event(store, ["webhook:old"]) is not None
    clock.advance(TTL + 1)
    assert await _event(store, ["webhook:old"]) is not None


async def test_claims_are_in_order_and_one_at_a_time_per_conversation(
    store: SqliteStore,
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


async def test_retry_later_and_failure(store: SqliteStore, clock: FakeClock) -> None:
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


async def test_processing_events_go_back_to_pending_after_a_stop(store: SqliteStore) -> None:
    await _event(store, ["p1"])
    assert await store.claim_inbound() is not None
    assert await store.recover_inbound() == 1
    assert await store.count_inbound(InboundState.PENDING) == 1


async def test_concurrent_duplicate_deliveries_store_one_event(store: SqliteStore) -> None:
    results = await asyncio.gather(*(_event(store, ["webhook:same"]) for _ in range(50)))
    assert sum(result is not None for result in results) == 1
    assert await store.count_inbound() == 1


async def test_an_event_waiting_for_a_retry_does_not_hold_up_other_conversations(
    store: SqliteStore, clock: FakeClock
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
