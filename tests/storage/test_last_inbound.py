"""`last_inbound_at`: when each source last brought an event in (read by `ghl-bridge doctor`)."""

from __future__ import annotations

from storage import Store
from tests.storage._support import START, FakeClock


async def _event(store: Store, source: str, key: str) -> None:
    stored = await store.enqueue_inbound(
        source=source,
        event_type="inbound_message",
        conversation_key="conv-a",
        payload={},
        dedupe_keys=[key],
        ttl_seconds=60,
    )
    assert stored is not None


async def test_none_before_any_event(store: Store) -> None:
    assert await store.last_inbound_at("webhook") is None
    assert await store.last_inbound_at("poll") is None


async def test_newest_event_per_source(store: Store, clock: FakeClock) -> None:
    await _event(store, "webhook", "w1")
    clock.advance(10)
    await _event(store, "poll", "p1")
    clock.advance(5)
    await _event(store, "webhook", "w2")
    assert await store.last_inbound_at("webhook") == START + 15
    assert await store.last_inbound_at("poll") == START + 10
    assert await store.last_inbound_at("other") is None


async def test_processed_events_still_count(store: Store) -> None:
    await _event(store, "webhook", "w1")
    claimed = await store.claim_inbound()
    assert claimed is not None
    await store.finish_inbound(claimed.id)
    assert await store.last_inbound_at("webhook") == START
