"""Compose intents: saved before the ack, closed with their outbox entry in one transaction."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from storage import (
    INTENT_QUEUED,
    MIGRATIONS,
    ConflictError,
    IntentState,
    SqliteStore,
    Store,
)
from storage._sqlite_thread import _StoreLock
from tests.storage._support import START, Backend, FakeClock, query


async def open_intent(store: Store, key: str, **changes: object) -> bool:
    fields: dict[str, object] = {
        "idempotency_key": key,
        "kind": "quick_send",
        "team_id": "T1",
        "channel_id": "C1",
        "slack_user_id": "U1",
        "payload": {"draft": {"recipient": "+14155550100", "message": "Grüße"}},
        "response_url": "https://hooks.example/response/1",
    }
    fields.update(changes)
    return await store.open_intent(**fields)  # type: ignore[arg-type]


async def enqueue(
    store: Store, key: str, *, close_intent: str | None, thread_id: int | None = None
) -> bool:
    _entry, created = await store.enqueue(
        idempotency_key=key,
        team_id="T1",
        channel_id="C1",
        slack_user_id="U1",
        location_id="loc-1",
        contact_id="contact-a",
        message_type="SMS",
        payload={"request": {"type": "SMS"}},
        thread_id=thread_id,
        close_intent=close_intent,
    )
    return created


async def test_an_intent_is_saved_once_per_key(store: Store, backend: Backend) -> None:
    assert await open_intent(store, "command:T1") is True
    # A replayed request: the row stays as the first one wrote it.
    assert await open_intent(store, "command:T1", payload={"draft": {"other": 1}}) is False
    saved = await store.get_intent("command:T1")
    assert saved is not None
    assert saved.state is IntentState.OPEN
    assert saved.payload == {"draft": {"recipient": "+14155550100", "message": "Grüße"}}
    assert (saved.kind, saved.team_id, saved.channel_id, saved.slack_user_id) == (
        "quick_send",
        "T1",
        "C1",
        "U1",
    )
    assert saved.response_url == "https://hooks.example/response/1"
    assert (saved.created_at, saved.closed_at, saved.outcome) == (START, None, None)
    assert backend.count_rows("compose_intents") == 1


async def test_a_closed_intent_is_not_reopened_by_a_replay(store: Store) -> None:
    await open_intent(store, "command:T1")
    assert await store.close_intent("command:T1", "refused") is True
    assert await store.close_intent("command:T1", "queued") is False  # closed once
    assert await open_intent(store, "command:T1") is False
    saved = await store.get_intent("command:T1")
    assert saved is not None
    assert (saved.state, saved.outcome, saved.closed_at) == (IntentState.DONE, "refused", START)


async def test_closing_an_unknown_intent_does_nothing(store: Store) -> None:
    assert await store.close_intent("command:nobody", "refused") is False


async def test_enqueue_closes_the_intent_in_its_own_transaction(
    store: Store, backend: Backend
) -> None:
    await open_intent(store, "command:T1")
    assert await enqueue(store, "command:T1", close_intent="command:T1") is True
    saved = await store.get_intent("command:T1")
    assert saved is not None
    assert (saved.state, saved.outcome) == (IntentState.DONE, INTENT_QUEUED)
    assert backend.count_rows("outbox") == 1


async def test_a_failed_enqueue_leaves_the_intent_open(store: Store, backend: Backend) -> None:
    await open_intent(store, "command:T1")
    # A thread id that does not exist breaks the outbox row's foreign key: the whole
    # transaction, the intent's closing included, is rolled back.
    with pytest.raises(ConflictError):
        await enqueue(store, "command:T1", close_intent="command:T1", thread_id=999)
    saved = await store.get_intent("command:T1")
    assert saved is not None
    assert saved.state is IntentState.OPEN
    assert backend.count_rows("outbox") == 0


async def test_enqueue_of_a_known_key_closes_its_intent_too(store: Store) -> None:
    assert await enqueue(store, "view:V1:abc", close_intent=None) is True
    await open_intent(store, "view:V1:abc", kind="composer", response_url=None)
    assert await enqueue(store, "view:V1:abc", close_intent="view:V1:abc") is False
    saved = await store.get_intent("view:V1:abc")
    assert saved is not None
    assert (saved.state, saved.outcome) == (IntentState.DONE, INTENT_QUEUED)


async def test_open_intents_are_listed_oldest_first_and_only_older_ones(
    store: Store, clock: FakeClock
) -> None:
    for name in ("a", "b", "c", "d"):
        await open_intent(store, f"command:{name}")
        clock.advance(1)
    await store.close_intent("command:b", "queued")
    keys = [i.idempotency_key for i in await store.list_open_intents(created_before=START + 3)]
    assert keys == ["command:a", "command:c"]  # d is newer; b is closed
    limited = await store.list_open_intents(created_before=START + 10, limit=1)
    assert [i.idempotency_key for i in limited] == ["command:a"]


async def test_the_open_intents_query_is_an_index_seek(
    sqlite_store: SqliteStore, db_path: Path
) -> None:
    for index in range(20):
        await open_intent(sqlite_store, f"command:{index}")
        await sqlite_store.close_intent(f"command:{index}", "queued")
    plan = " ".join(
        str(row[-1])
        for row in query(
            db_path,
            "EXPLAIN QUERY PLAN SELECT * FROM compose_intents WHERE state = 'open'"
            " AND created_at < ? ORDER BY created_at, id LIMIT ?",
            (START + 1, 10),
        )
    )
    # A seek in the partial index of open intents, in its order: no scan, no sort.
    assert plan == "SEARCH compose_intents USING INDEX compose_intents_open (created_at<?)", plan


async def test_a_database_from_before_intents_gets_the_table(
    backend: Backend, clock: FakeClock
) -> None:
    async with backend.new_store(clock, migrations=MIGRATIONS[:3]) as old:
        assert await old.schema_version() == 3
    assert "compose_intents" not in backend.table_names()
    async with backend.new_store(clock) as new:
        assert await new.schema_version() == MIGRATIONS[-1].version
        assert await new.open_intent(
            idempotency_key="command:T1",
            kind="quick_send",
            team_id="T1",
            channel_id="C1",
            slack_user_id="U1",
            payload={},
        )


# ---------------------------------------------------------------- the insert an ack waits for


async def test_an_intent_insert_goes_before_store_work_already_queued() -> None:
    lock = _StoreLock()
    order: list[str] = []

    async def ordinary(name: str) -> None:
        async with lock:
            order.append(name)

    async def urgent() -> None:
        async with lock.urgent():
            order.append("intent")

    await lock.__aenter__()  # a store operation is running
    queued = [asyncio.create_task(ordinary("first")), asyncio.create_task(ordinary("second"))]
    await asyncio.sleep(0)  # both are now waiting for the lock
    queued.append(asyncio.create_task(urgent()))
    await asyncio.sleep(0)
    await lock.__aexit__(None, None, None)
    await asyncio.gather(*queued)
    assert order == ["intent", "first", "second"]


async def test_a_cancelled_waiter_never_keeps_the_store_locked() -> None:
    lock = _StoreLock()
    got: list[str] = []

    async def wait_for_lock(name: str) -> None:
        async with lock:
            got.append(name)

    await lock.__aenter__()
    given_up = asyncio.create_task(wait_for_lock("given up"))
    handed_over = asyncio.create_task(wait_for_lock("handed over"))
    last = asyncio.create_task(wait_for_lock("last"))
    await asyncio.sleep(0)
    given_up.cancel()  # cancelled while queued: skipped
    await asyncio.sleep(0)
    await lock.__aexit__(None, None, None)  # hands the lock to "handed over" ...
    handed_over.cancel()  # ... which is cancelled before it runs: it passes the lock on
    async with asyncio.timeout(5):  # a lock left held would hang here
        await asyncio.gather(given_up, handed_over, last, return_exceptions=True)
        assert got == ["last"]
        async with lock:  # and then it is free again
            got.append("after")
    assert got == ["last", "after"]
