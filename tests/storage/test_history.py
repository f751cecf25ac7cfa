"""Earlier messages: the history lease and the messages shown as history (both backends).

Two clicks on two instances at once: one holds the thread's history, the other is refused
until the holder finishes or its lease runs out; a message is claimed for its post once, and
never when the thread shows it already.
"""

from __future__ import annotations

import asyncio

from storage import MessageDirection, Store, ThreadRecord
from tests.storage._support import START, Backend, FakeClock

LEASE = 60.0


async def new_thread(store: Store, contact_id: str = "contact-a") -> ThreadRecord:
    return await store.upsert_thread(
        team_id="T1",
        channel_id="C1",
        location_id="loc-1",
        contact_id=contact_id,
        thread_ts=f"ts-{contact_id}",
        conversation_id="conv-1",
    )


async def test_a_new_thread_pages_from_the_newest_and_one_click_holds_it(
    backend: Backend, clock: FakeClock
) -> None:
    async with (
        backend.new_store(clock, instance_id="a") as a,
        backend.new_store(clock, instance_id="b") as b,
    ):
        thread = await new_thread(a)
        state = await a.history_state(thread.id)
        assert state is not None
        assert (state.cursor, state.done, state.busy_until) == (None, False, None)
        lease = await a.claim_history(thread.id, seconds=LEASE)
        assert lease is not None
        assert (lease.cursor, lease.until) == (None, START + LEASE)
        # The other instance's click is refused while the lease runs.
        assert await b.claim_history(thread.id, seconds=LEASE) is None
        assert await a.claim_history(thread.id, seconds=LEASE) is None
        assert await a.finish_history(lease, cursor="m40", done=False)
        taken = await b.claim_history(thread.id, seconds=LEASE)
        assert taken is not None and taken.cursor == "m40"
        assert await b.finish_history(taken, cursor="m1", done=True)
        # Done: nobody holds it again, and the state says why.
        assert await a.claim_history(thread.id, seconds=LEASE) is None
        done = await b.history_state(thread.id)
        assert done is not None and (done.cursor, done.done, done.busy_until) == ("m1", True, None)
        assert await a.history_state(thread.id + 1000) is None
        assert await a.claim_history(thread.id + 1000, seconds=LEASE) is None


async def test_concurrent_claims_give_the_history_to_exactly_one(
    backend: Backend, clock: FakeClock
) -> None:
    async with (
        backend.new_store(clock, instance_id="a") as a,
        backend.new_store(clock, instance_id="b") as b,
    ):
        thread = await new_thread(a)
        leases = await asyncio.gather(
            *(store.claim_history(thread.id, seconds=LEASE) for store in (a, b, a, b))
        )
        assert sum(lease is not None for lease in leases) == 1


async def test_a_lease_that_ran_out_is_taken_over_and_the_old_holder_writes_nothing(
    backend: Backend,
) -> None:
    clock_a, clock_b = FakeClock(), FakeClock()
    async with (
        backend.new_store(clock_a, instance_id="a") as a,
        backend.new_store(clock_b, instance_id="b") as b,
    ):
        thread = await new_thread(a)
        old = await a.claim_history(thread.id, seconds=LEASE)
        assert old is not None
        clock_a.advance(LEASE / 2)
        renewed = await a.renew_history(old, seconds=LEASE)
        assert renewed is not None and renewed.until == START + LEASE * 1.5
        # The old lease value is no longer the holder's.
        assert await a.renew_history(old, seconds=LEASE) is None
        clock_b.advance(LEASE * 1.5 - 1)
        assert await b.claim_history(thread.id, seconds=LEASE) is None
        clock_b.advance(2)
        new = await b.claim_history(thread.id, seconds=LEASE)
        assert new is not None
        # a died holding it (or was slow): what it does now changes nothing.
        assert await a.renew_history(renewed, seconds=LEASE) is None
        assert not await a.finish_history(renewed, cursor="stale", done=True)
        await a.release_history(renewed)
        state = await b.history_state(thread.id)
        assert state is not None and state.busy_until == new.until and not state.done
        # A click that failed frees the history without moving its cursor.
        await b.release_history(new)
        state = await b.history_state(thread.id)
        assert state is not None and (state.cursor, state.busy_until) == (None, None)
        assert await a.claim_history(thread.id, seconds=LEASE) is not None


async def test_a_message_is_claimed_for_history_once_and_never_when_the_thread_shows_it(
    store: Store, backend: Backend
) -> None:
    thread = await new_thread(store)
    other = await new_thread(store, "contact-b")
    await store.record_message(
        direction=MessageDirection.INBOUND, thread_id=thread.id, ghl_message_id="live-1"
    )
    await store.record_message(
        direction=MessageDirection.OUTBOUND,
        thread_id=thread.id,
        ghl_message_id="email-thread",
        ghl_email_message_id="email-1",
    )
    assert await store.shown_in_thread(thread.id) == {"live-1", "email-thread", "email-1"}
    # Shown live in the thread (by either of its ids): never as history too.
    assert not await store.claim_history_message(thread.id, "live-1")
    assert not await store.claim_history_message(thread.id, "email-1")
    assert not await store.claim_history_message(thread.id, "email-x", also=("email-thread",))
    # Only the first of two racing claims wins.
    results = await asyncio.gather(
        *(store.claim_history_message(thread.id, "old-1") for _ in range(4))
    )
    assert sorted(results) == [False, False, False, True]
    assert await store.shown_in_thread(thread.id) == {"live-1", "email-thread", "email-1", "old-1"}
    # Per thread: another thread may show the same message.
    assert await store.claim_history_message(other.id, "old-1")
    assert await store.claim_history_message(other.id, "live-1")
    # A post that failed gives it back.
    await store.unclaim_history_message(thread.id, "old-1")
    assert await store.claim_history_message(thread.id, "old-1")
    assert backend.query(
        "SELECT thread_id, ghl_message_id, shown_at FROM thread_history ORDER BY thread_id,"
        " ghl_message_id"
    ) == [
        (thread.id, "old-1", START),
        (other.id, "live-1", START),
        (other.id, "old-1", START),
    ]
    # A thread deleted takes its history with it.
    await store.delete_thread(other.id)
    assert backend.query(
        "SELECT COUNT(*) FROM thread_history WHERE thread_id = ?", (other.id,)
    ) == [(0,)]
