"""QueueSlots: a backlog held behind work in flight waits for a wake and costs no store calls.

Each test drains a real SqliteStore through QueueSlots and counts the store calls the slots
make, rather than timing anything: a loop that spins while every due item waits behind
another of its conversation shows up as thousands of claims.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bot.workers import QueueSlots
from storage import InboundEvent, InboundState, OutboxEntry, OutboxState, SqliteStore
from tests.storage._support import FakeClock

T = TypeVar("T")

ITEMS = 300
CONCURRENCY = 4
# Each handled item may wake every other slot once (its conversation's next item may be
# free now), so a drain costs at most about one claim per slot per item.
MAX_CALLS = CONCURRENCY * ITEMS + 4 * CONCURRENCY
# Far longer than any test: only wakes, never the idle poll, may move the queue along.
IDLE_POLL = 3600.0
DEADLINE = 30.0


class CallCounter:
    """Wraps store methods so that each call is counted under the method's name."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def wrap(self, name: str, method: Callable[[], Awaitable[T]]) -> Callable[[], Awaitable[T]]:
        async def counted() -> T:
            self.calls[name] += 1
            return await method()

        return counted


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    async with SqliteStore(tmp_path / "bridge.db") as opened:
        yield opened


@contextlib.asynccontextmanager
async def _running(slots: QueueSlots[Any]) -> AsyncIterator[None]:
    """The slots at work for the block; stopped (and their loops ended) after it."""
    stopping = asyncio.Event()
    running = asyncio.create_task(slots.run(stopping))
    try:
        yield
    finally:
        stopping.set()
        slots.wake()
        await asyncio.wait_for(running, DEADLINE)


async def _drain(slots: QueueSlots[Any], finished: asyncio.Event) -> None:
    async with _running(slots):
        await asyncio.wait_for(finished.wait(), DEADLINE)


async def _look_up_like_a_worker(store: SqliteStore, key: str) -> None:
    # What a real worker does around its Slack post: reads, each a round trip to the
    # database thread, during which the other slots get the event loop.
    for _ in range(3):
        await store.get_message_by_ghl_id(key)
        await store.find_threads_for_conversation("loc-1", key)
        await store.kv_get(key)


@pytest.mark.parametrize("next_due_kind", ["free items only", "held-back items too"])
async def test_inbound_events_of_one_conversation_drain_without_spinning(
    store: SqliteStore, next_due_kind: str
) -> None:
    """Whichever way the store answers `next_due` for items held behind one in flight
    (SqliteStore leaves them out; a simpler store might name their past due time), the
    waiting slots look again only when woken."""
    queued = []
    for n in range(ITEMS):
        event = await store.enqueue_inbound(
            source="webhook",
            event_type="inbound_message",
            conversation_key="conv-1",
            payload={"n": n},
            dedupe_keys=[f"webhook:{n}"],
            ttl_seconds=3600,
        )
        assert event is not None
        queued.append(event.id)
    counter = CallCounter()
    handled: list[int] = []
    finished = asyncio.Event()

    async def handle(event: InboundEvent) -> None:
        await _look_up_like_a_worker(store, f"m{event.id}")
        await store.finish_inbound(event.id)
        handled.append(event.id)
        if len(handled) == ITEMS:
            finished.set()

    async def earliest_pending_even_if_held_back() -> float | None:
        pending = await store.count_inbound(InboundState.PENDING)
        return time.time() - 1.0 if pending else None

    next_due = (
        store.next_inbound_due_at
        if next_due_kind == "free items only"
        else earliest_pending_even_if_held_back
    )
    slots: QueueSlots[InboundEvent] = QueueSlots(
        "inbound",
        claim=counter.wrap("claim", store.claim_inbound),
        handle=handle,
        next_due=counter.wrap("next_due", next_due),
        concurrency=CONCURRENCY,
        idle_poll=IDLE_POLL,
        clock=time.time,
    )
    await _drain(slots, finished)

    assert handled == queued  # one conversation: strictly in order
    assert await store.count_inbound(InboundState.DONE) == ITEMS
    print(f"inbound, {ITEMS} events, one conversation, {next_due_kind}: {dict(counter.calls)}")
    assert counter.calls["claim"] <= MAX_CALLS, counter.calls
    assert counter.calls["next_due"] <= MAX_CALLS, counter.calls


async def test_sends_to_one_contact_drain_without_spinning(store: SqliteStore) -> None:
    queued = []
    for n in range(ITEMS):
        entry, created = await store.enqueue(
            idempotency_key=f"send-{n}",
            team_id="T1",
            channel_id="C1",
            slack_user_id="U1",
            location_id="loc-1",
            contact_id="contact-1",
            message_type="SMS",
            payload={"n": n},
        )
        assert created
        queued.append(entry.id)
    counter = CallCounter()
    handled: list[int] = []
    finished = asyncio.Event()

    async def handle(entry: OutboxEntry) -> None:
        await _look_up_like_a_worker(store, f"m{entry.id}")
        await store.mark_sent(entry.id, conversation_id="conv-1", ghl_message_id=f"m{entry.id}")
        handled.append(entry.id)
        if len(handled) == ITEMS:
            finished.set()

    slots: QueueSlots[OutboxEntry] = QueueSlots(
        "outbox",
        claim=counter.wrap("claim", store.claim_next),
        handle=handle,
        next_due=counter.wrap("next_due", store.next_outbox_due_at),
        concurrency=CONCURRENCY,
        idle_poll=IDLE_POLL,
        clock=time.time,
    )
    await _drain(slots, finished)

    assert handled == queued
    assert len(await store.list_outbox(OutboxState.SENT, limit=ITEMS + 1)) == ITEMS
    print(f"outbox, {ITEMS} sends to one contact: {dict(counter.calls)}")
    assert counter.calls["claim"] <= MAX_CALLS, counter.calls
    assert counter.calls["next_due"] <= MAX_CALLS, counter.calls


async def test_a_wake_while_a_slot_looks_at_the_queue_is_not_lost(store: SqliteStore) -> None:
    """New work that arrives (and wakes the slots) after a slot found the queue empty, but
    before it went to sleep, is taken at once, not after the idle poll."""
    handled = asyncio.Event()
    slots: QueueSlots[InboundEvent]
    arrived = False

    async def next_due_then_new_work_arrives() -> float | None:
        nonlocal arrived
        due = await store.next_inbound_due_at()
        if not arrived:
            arrived = True
            await store.enqueue_inbound(
                source="webhook",
                event_type="inbound_message",
                conversation_key="conv-1",
                payload={},
                dedupe_keys=["webhook:late"],
                ttl_seconds=3600,
            )
            slots.wake()  # what the webhook handler does after storing it
        return due

    async def handle(event: InboundEvent) -> None:
        await store.finish_inbound(event.id)
        handled.set()

    slots = QueueSlots(
        "inbound",
        claim=store.claim_inbound,
        handle=handle,
        next_due=next_due_then_new_work_arrives,
        concurrency=1,
        idle_poll=IDLE_POLL,
        clock=time.time,
    )
    await _drain(slots, handled)
    assert await store.count_inbound(InboundState.DONE) == 1


async def test_a_backlog_behind_an_item_in_flight_makes_no_store_calls_while_it_waits(
    store: SqliteStore,
) -> None:
    """While one item of a conversation is in flight for long, the others waiting behind it
    cost nothing: the idle slots sleep until that item is done, then the rest drains."""
    for n in range(20):
        await store.enqueue_inbound(
            source="webhook",
            event_type="inbound_message",
            conversation_key="conv-1",
            payload={"n": n},
            dedupe_keys=[f"webhook:{n}"],
            ttl_seconds=3600,
        )
    counter = CallCounter()
    first_in_flight = asyncio.Event()
    release_first = asyncio.Event()
    done: list[int] = []
    finished = asyncio.Event()

    async def handle(event: InboundEvent) -> None:
        if not done and not first_in_flight.is_set():
            first_in_flight.set()
            await release_first.wait()
        await store.finish_inbound(event.id)
        done.append(event.id)
        if len(done) == 20:
            finished.set()

    slots: QueueSlots[InboundEvent] = QueueSlots(
        "inbound",
        claim=counter.wrap("claim", store.claim_inbound),
        handle=handle,
        next_due=counter.wrap("next_due", store.next_inbound_due_at),
        concurrency=CONCURRENCY,
        idle_poll=IDLE_POLL,
        clock=time.time,
    )
    async with _running(slots):
        await asyncio.wait_for(first_in_flight.wait(), DEADLINE)
        # Give the idle slots many chances to spin: 200 round trips to the database thread
        # (uncounted calls), each letting every other task of the loop run.
        for _ in range(200):
            await store.kv_get("anything")
        held = counter.calls.copy()
        release_first.set()
        await asyncio.wait_for(finished.wait(), DEADLINE)
    print(f"calls while the first event was in flight: {dict(held)}")
    # The first claim of each slot, and each idle slot's one look at when to come back.
    assert held["claim"] <= CONCURRENCY, held
    assert held["next_due"] <= CONCURRENCY, held


async def test_a_handled_item_wakes_the_waiting_slots(tmp_path: Path) -> None:
    """A slot that finishes an item takes the next due item itself and wakes the others for
    the rest: here the item it freed (K2) goes to it, and another that fell due meanwhile
    (J1, with nothing to wake anyone) must go to the slot that was waiting."""
    clock = FakeClock()
    release_k1 = asyncio.Event()
    j1_done = asyncio.Event()
    all_done = asyncio.Event()
    handled: list[str] = []
    async with SqliteStore(tmp_path / "bridge.db", clock=clock) as store:

        async def enqueue(name: str, conversation: str, not_before: float | None = None) -> None:
            await store.enqueue_inbound(
                source="webhook",
                event_type="inbound_message",
                conversation_key=conversation,
                payload={"name": name},
                dedupe_keys=[f"webhook:{name}"],
                ttl_seconds=3600,
                not_before=not_before,
            )

        await enqueue("K1", "conv-k")
        await enqueue("K2", "conv-k")
        await enqueue("J1", "conv-j", not_before=clock.now + 10)

        async def handle(event: InboundEvent) -> None:
            name = event.payload["name"]
            if name == "K1":
                await release_k1.wait()
            if name == "K2":
                await j1_done.wait()  # only another slot can take J1 now
            await store.finish_inbound(event.id)
            handled.append(name)
            if name == "J1":
                j1_done.set()
            if len(handled) == 3:
                all_done.set()

        other_slot_waits = asyncio.Event()

        async def earliest_pending_even_if_held_back() -> float | None:
            pending = await store.count_inbound(InboundState.PENDING)
            # Only the slot without K1 asks; it goes on to wait before this test resumes.
            other_slot_waits.set()
            return clock.now - 1.0 if pending else None

        slots: QueueSlots[InboundEvent] = QueueSlots(
            "inbound",
            claim=store.claim_inbound,
            handle=handle,
            next_due=earliest_pending_even_if_held_back,
            concurrency=2,
            idle_poll=IDLE_POLL,
            clock=clock,
        )
        async with _running(slots):
            # K1 in flight; the other slot found K2 held back and J1 not due, and waits.
            await asyncio.wait_for(other_slot_waits.wait(), DEADLINE)
            clock.advance(10)  # J1 falls due: nothing wakes anyone for that
            release_k1.set()
            await asyncio.wait_for(all_done.wait(), DEADLINE)
    assert handled == ["K1", "J1", "K2"]


async def test_a_queue_that_stays_unreadable_backs_off_and_warns_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A read-only or full database: the slots' reads back off, and the log gets one warning
    (with the count) rather than a line per slot per second; a good read says so once."""
    from bot import workers
    from storage import StoreError

    monkeypatch.setattr(workers, "STORE_RETRY_SECONDS", 0.001)
    monkeypatch.setattr(workers, "STORE_RETRY_MAX_SECONDS", 0.004)
    failures_left = 40
    recovered = asyncio.Event()
    stopping = asyncio.Event()

    async def claim() -> int | None:
        nonlocal failures_left
        if failures_left > 0:
            failures_left -= 1
            raise StoreError("attempt to write a readonly database")
        recovered.set()
        return None

    async def never_due() -> float | None:
        return None

    async def handle(item: int) -> None:
        raise AssertionError("nothing is ever claimed")

    slots: QueueSlots[int] = QueueSlots(
        "outbox",
        claim=claim,
        handle=handle,
        next_due=never_due,
        concurrency=CONCURRENCY,
        idle_poll=IDLE_POLL,
        clock=time.time,
    )
    with caplog.at_level("INFO", logger="bot.workers"):
        running = asyncio.create_task(slots.run(stopping))
        await asyncio.wait_for(recovered.wait(), DEADLINE)
        stopping.set()
        slots.wake()
        await asyncio.wait_for(running, DEADLINE)
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "cannot read the queue" in warnings[0].getMessage()
    assert [r.getMessage() for r in caplog.records if r.levelname == "INFO"] == [
        "outbox: the queue is readable again"
    ]
    waits = [slots._store_failed(StoreError("x")) for _ in range(6)]
    assert waits == sorted(waits) and waits[-1] == 0.004 and waits[0] < waits[-1]


async def test_the_slots_one_wake_sets_looking_ask_the_store_once_when_it_is_empty(
    store: SqliteStore,
) -> None:
    """Items arriving one at a time, each in a conversation of its own: every arrival and
    every item handled wakes all the idle slots. The first to find nothing answers for the
    others under the same wake, so a drip of items costs about one empty look each, not one
    per slot per wake."""
    items = 60
    counter = CallCounter()
    handled: list[int] = []
    each_handled = asyncio.Event()

    async def handle(event: InboundEvent) -> None:
        await _look_up_like_a_worker(store, f"m{event.id}")
        await store.finish_inbound(event.id)
        handled.append(event.id)
        each_handled.set()

    slots: QueueSlots[InboundEvent] = QueueSlots(
        "inbound",
        claim=counter.wrap("claim", store.claim_inbound),
        handle=handle,
        next_due=counter.wrap("next_due", store.next_inbound_due_at),
        concurrency=CONCURRENCY,
        idle_poll=IDLE_POLL,
        clock=time.time,
    )
    async with _running(slots):
        for n in range(items):
            each_handled.clear()
            await store.enqueue_inbound(
                source="webhook",
                event_type="inbound_message",
                conversation_key=f"conv-{n}",
                payload={"n": n},
                dedupe_keys=[f"webhook:{n}"],
                ttl_seconds=3600,
            )
            slots.wake()  # what the webhook handler does after storing it
            await asyncio.wait_for(each_handled.wait(), DEADLINE)
    assert len(handled) == items
    print(f"a drip of {items} items: {dict(counter.calls)}")
    # Per item: the claim that takes it, and at most one empty look for each of the two
    # wakes (its arrival, its end); plus each slot's first look.
    assert counter.calls["claim"] <= 3 * items + CONCURRENCY, counter.calls
    assert counter.calls["next_due"] <= 2 * items + CONCURRENCY, counter.calls


async def test_a_slot_whose_wait_runs_out_asks_the_store_though_nothing_woke_it(
    store: SqliteStore,
) -> None:
    """Work stored by something that does not wake this process (another instance, a CLI
    command) is found at the idle poll: a look after a wait that ran out never takes the
    answer of an earlier empty look."""
    handled = asyncio.Event()
    claims = 0
    looked_empty = asyncio.Event()

    async def claim() -> InboundEvent | None:
        nonlocal claims
        claims += 1
        item = await store.claim_inbound()
        if item is None:
            looked_empty.set()
        return item

    async def handle(event: InboundEvent) -> None:
        await store.finish_inbound(event.id)
        handled.set()

    slots: QueueSlots[InboundEvent] = QueueSlots(
        "inbound",
        claim=claim,
        handle=handle,
        next_due=store.next_inbound_due_at,
        concurrency=2,
        idle_poll=0.05,
        clock=time.time,
    )
    async with _running(slots):
        await asyncio.wait_for(looked_empty.wait(), DEADLINE)
        await store.enqueue_inbound(
            source="webhook",
            event_type="inbound_message",
            conversation_key="conv-1",
            payload={},
            dedupe_keys=["webhook:elsewhere"],
            ttl_seconds=3600,
        )  # and no wake
        await asyncio.wait_for(handled.wait(), DEADLINE)
    assert await store.count_inbound(InboundState.DONE) == 1
    assert claims >= 3  # the two first looks, and one after a wait ran out
