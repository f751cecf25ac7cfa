"""Delivery dedupe marks with expiry, and the key/value table."""

from __future__ import annotations

import asyncio

from storage import Store
from tests.storage._support import START, Backend, FakeClock


async def test_mark_processed_is_true_only_the_first_time(store: Store) -> None:
    assert await store.mark_processed("ghl_webhook", "wh-1", ttl_seconds=60) is True
    assert await store.mark_processed("ghl_webhook", "wh-1", ttl_seconds=60) is False
    # Sources are separate namespaces.
    assert await store.mark_processed("slack_event", "wh-1", ttl_seconds=60) is True
    assert await store.mark_processed("ghl_webhook", "wh-2", ttl_seconds=60) is True


async def test_mark_expires(store: Store, clock: FakeClock) -> None:
    assert await store.mark_processed("ghl_message", "m-1", ttl_seconds=60) is True
    clock.advance(59)
    assert await store.mark_processed("ghl_message", "m-1", ttl_seconds=60) is False
    clock.advance(1)
    # Expired but not yet purged: a new delivery takes the mark over.
    assert await store.mark_processed("ghl_message", "m-1", ttl_seconds=60) is True
    assert await store.mark_processed("ghl_message", "m-1", ttl_seconds=60) is False


async def test_purge_expired(store: Store, backend: Backend, clock: FakeClock) -> None:
    await store.mark_processed("s", "short", ttl_seconds=10)
    await store.mark_processed("s", "long", ttl_seconds=100)
    assert await store.purge_expired(START + 9) == 0
    assert await store.purge_expired(START + 10) == 1
    assert backend.query("SELECT key FROM processed_deliveries") == [("long",)]
    clock.advance(200)
    assert await store.purge_expired() == 1  # defaults to the store's clock
    assert backend.count_rows("processed_deliveries") == 0
    assert await store.mark_processed("s", "short", ttl_seconds=10) is True


async def test_forget_processed_lets_a_delivery_be_taken_again(store: Store) -> None:
    assert await store.mark_processed("ghl_webhook", "wh-1", ttl_seconds=60) is True
    await store.forget_processed("ghl_webhook", "wh-1")
    assert await store.mark_processed("ghl_webhook", "wh-1", ttl_seconds=60) is True


async def test_concurrent_marks_have_one_winner(
    store: Store, backend: Backend, clock: FakeClock
) -> None:
    async with backend.new_store(clock) as second:
        results = await asyncio.gather(
            *(
                s.mark_processed("slack_event", "Ev1", ttl_seconds=60)
                for _ in range(25)
                for s in (store, second)
            )
        )
    assert results.count(True) == 1
    assert backend.count_rows("processed_deliveries") == 1


async def test_kv(store: Store, backend: Backend) -> None:
    assert await store.kv_get("poll_cursor") is None
    await store.kv_set("poll_cursor", "1700000000")
    assert await store.kv_get("poll_cursor") == "1700000000"
    await store.kv_set("poll_cursor", "1700000100")
    assert await store.kv_get("poll_cursor") == "1700000100"
    assert await store.kv_get("other") is None
    assert backend.count_rows("kv_store") == 1
    await store.kv_delete("poll_cursor")
    assert await store.kv_get("poll_cursor") is None
    await store.kv_delete("never-set")  # no error
