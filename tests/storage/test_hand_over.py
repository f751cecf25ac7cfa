"""A stopping instance hands over what it still holds (both backends): another instance takes
it at once instead of once the lease has run out, and nothing that may have reached HighLevel
goes back to the queue.

Each store test has two instances on one database with one clock that never moves past the
lease: whatever the other takes, it takes because of the hand-over. The last test runs a live
instance's LeaseKeeper on PostgreSQL, with the real clock.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from bot.cluster.leases import LeaseKeeper
from storage import InboundEvent, InboundState, OutboxState, Store, Takeover
from tests._postgres import PostgresServer, server
from tests.storage._support import START, Backend, FakeClock, PostgresBackend, enqueue

LEASE = 30.0


async def _inbound(store: Store, key: str) -> InboundEvent:
    stored = await store.enqueue_inbound(
        source="webhook",
        event_type="InboundMessage",
        conversation_key=f"conv-{key}",
        payload={},
        dedupe_keys=[f"message:{key}"],
        ttl_seconds=3600,
    )
    assert stored is not None
    return stored


async def test_a_send_never_started_goes_back_to_the_queue_for_another_instance(
    backend: Backend,
) -> None:
    clock = FakeClock()
    async with (
        backend.new_store(clock, instance_id="a", lease_seconds=LEASE) as a,
        backend.new_store(clock, instance_id="b", lease_seconds=LEASE) as b,
    ):
        entry = await enqueue(a, "k1")
        assert await a.claim_next() is not None
        assert await b.claim_next() is None  # a holds it

        handed = await a.hand_over()

        assert (handed.requeued_sends, handed.expired_sends, handed.events) == ((entry.id,), (), ())
        assert backend.query("SELECT state, lease_owner, lease_expires_at FROM outbox") == [
            ("pending", None, None)
        ]
        again = await b.claim_next()
        # The same entry, its attempts counting the cut-off claim: the next claim then looks
        # for a post the first one may have made.
        assert again is not None and (again.id, again.attempts) == (entry.id, 2)
        assert (await b.take_over_expired()).sends == 0


async def test_a_send_that_may_have_reached_highlevel_is_taken_over_at_once_never_requeued(
    backend: Backend,
) -> None:
    clock = FakeClock()
    async with (
        backend.new_store(clock, instance_id="a", lease_seconds=LEASE) as a,
        backend.new_store(clock, instance_id="b", lease_seconds=LEASE) as b,
    ):
        in_flight = await enqueue(a, "k1", contact_id="c1")
        not_started = await enqueue(a, "k2", contact_id="c2")
        assert await a.claim_next() is not None
        assert await a.claim_next() is not None
        assert (await b.take_over_expired()).sends == 0  # live leases

        handed = await a.hand_over(may_have_sent={in_flight.id, 999})

        assert handed.requeued_sends == (not_started.id,)
        assert handed.expired_sends == (in_flight.id,)
        assert backend.query(
            "SELECT state, lease_owner, lease_expires_at FROM outbox WHERE id = ?",
            (in_flight.id,),
        ) == [("sending", "a", START - LEASE)]
        # Not claimable: only the one never started is.
        claimed = await b.claim_next()
        assert claimed is not None and claimed.id == not_started.id
        # Taken over now, not a lease from now: made uncertain, for reconciliation.
        taken = await b.take_over_expired()
        assert (taken.sends, taken.events, taken.unshown) == (1, 0, ())
        after = await b.get_outbox(in_flight.id)
        assert after is not None and after.state is OutboxState.UNKNOWN
        assert after.last_error is not None and "may have reached HighLevel" in after.last_error


async def test_a_finished_send_not_yet_shown_is_taken_over_to_show_its_outcome(
    backend: Backend,
) -> None:
    clock = FakeClock()
    async with (
        backend.new_store(clock, instance_id="a", lease_seconds=LEASE) as a,
        backend.new_store(clock, instance_id="b", lease_seconds=LEASE) as b,
    ):
        sent = await enqueue(a, "k1", contact_id="c1")
        shown = await enqueue(a, "k2", contact_id="c2")
        await a.claim_next()
        await a.claim_next()
        await a.mark_sent(sent.id, conversation_id="conv", ghl_message_id="m1")
        await a.mark_failed(shown.id, "refused")
        await a.release_claim(shown.id)  # its post shows it: nothing left to hand over
        assert (await b.take_over_expired()).unshown == ()

        handed = await a.hand_over(may_have_sent={sent.id, shown.id})

        assert (handed.requeued_sends, handed.expired_sends) == ((), (sent.id,))
        taken = await b.take_over_expired()
        assert (taken.sends, taken.unshown) == (0, (sent.id,))
        state = await b.get_outbox(sent.id)
        assert state is not None and state.state is OutboxState.SENT  # the outcome stands


async def test_inbound_events_go_back_to_the_queue_for_another_instance(backend: Backend) -> None:
    clock = FakeClock()
    async with (
        backend.new_store(clock, instance_id="a", lease_seconds=LEASE) as a,
        backend.new_store(clock, instance_id="b", lease_seconds=LEASE) as b,
    ):
        held = await _inbound(a, "m1")
        assert await a.claim_inbound() is not None
        assert await b.claim_inbound() is None

        handed = await a.hand_over()

        assert handed.events == (held.id,)
        assert await b.count_inbound(InboundState.PENDING) == 1
        again = await b.claim_inbound()
        assert again is not None and again.id == held.id
        # a comes back and reports it: b's claim stands.
        await a.finish_inbound(held.id)
        assert backend.query("SELECT state, lease_owner FROM inbound_events") == [
            ("processing", "b")
        ]


async def test_only_this_instance_claims_are_handed_over(backend: Backend) -> None:
    clock = FakeClock()
    async with (
        backend.new_store(clock, instance_id="a", lease_seconds=LEASE) as a,
        backend.new_store(clock, instance_id="b", lease_seconds=LEASE) as b,
    ):
        await enqueue(b, "k1", contact_id="c1")
        b_send = await b.claim_next()
        await _inbound(b, "m1")
        b_event = await b.claim_inbound()
        assert b_send is not None and b_event is not None
        before = backend.query(
            "SELECT id, state, lease_owner, lease_expires_at FROM outbox"
            " UNION ALL SELECT id, state, lease_owner, lease_expires_at FROM inbound_events"
        )

        assert not await a.hand_over()

        assert (
            backend.query(
                "SELECT id, state, lease_owner, lease_expires_at FROM outbox"
                " UNION ALL SELECT id, state, lease_owner, lease_expires_at FROM inbound_events"
            )
            == before
        )
        assert await a.last_hand_over() is None  # nothing given back: nobody need look


async def test_each_hand_over_changes_the_mark_live_instances_look_at(backend: Backend) -> None:
    clock = FakeClock()
    async with (
        backend.new_store(clock, instance_id="a", lease_seconds=LEASE) as a,
        backend.new_store(clock, instance_id="b", lease_seconds=LEASE) as b,
    ):
        assert await b.last_hand_over() is None
        await _inbound(a, "m1")
        await a.claim_inbound()
        await a.hand_over()
        first = await b.last_hand_over()
        assert first is not None

        await _inbound(a, "m2")
        await a.claim_inbound()  # the first event, again
        clock.advance(1)
        await a.hand_over()
        second = await b.last_hand_over()
        assert second is not None and second != first


# ---------------------------------------------------------------- a live instance's LeaseKeeper

LOOK_SECONDS = 0.05
# Many looks, on a busy machine; a tenth of the time to the next regular pass.
TAKEN_WITHIN = LEASE / 3 / 10


@pytest.fixture
def postgres_server(request: pytest.FixtureRequest) -> PostgresServer:
    return server(request.config)


@pytest.mark.postgres  # only instances sharing a database hand over to each other
async def test_a_live_instance_takes_a_hand_over_at_its_next_look_not_its_next_renewal(
    postgres_url: str, postgres_server: PostgresServer
) -> None:
    """The regular pass comes every third of a lease (10 s here); a hand-over is taken at the
    next look for its mark, and what went back to the queues is claimed at once."""
    backend = PostgresBackend(postgres_server, postgres_url)
    async with (
        backend.new_store(time.time, instance_id="a", lease_seconds=LEASE) as a,
        backend.new_store(time.time, instance_id="b", lease_seconds=LEASE) as b,
    ):
        in_flight = await enqueue(a, "k1", contact_id="c1")
        await enqueue(a, "k2", contact_id="c2")
        await a.claim_next()
        await a.claim_next()
        await _inbound(a, "m1")
        await a.claim_inbound()

        taken: list[Takeover] = []
        returned = asyncio.Event()
        first_pass = asyncio.Event()

        class Passes:
            def lease_takeovers(self, kind: str, count: int) -> None:
                first_pass.set()

        keeper = LeaseKeeper(
            b,
            on_sends_taken=taken.append,
            on_events_taken=lambda: None,
            on_work_returned=returned.set,
            observer=Passes(),
            look_seconds=LOOK_SECONDS,
        )
        stopping = asyncio.Event()
        running = asyncio.create_task(keeper.run(stopping))
        try:
            await asyncio.wait_for(first_pass.wait(), 10)  # its first pass: nothing expired
            assert taken == [] and not returned.is_set()

            handed_at = time.monotonic()
            await a.hand_over(may_have_sent={in_flight.id})
            # Waited for up to its next regular pass, to tell how long it took.
            await asyncio.wait_for(returned.wait(), LEASE / 3 + 5)
            took = time.monotonic() - handed_at
        finally:
            stopping.set()
            await asyncio.wait_for(running, 10)
        assert took < TAKEN_WITHIN, f"taken {took:.2f} s after the hand-over"
        assert [(t.sends, t.events) for t in taken] == [(1, 0)]
        assert await b.count_inbound(InboundState.PENDING) == 1
        assert (await b.claim_next()) is not None  # the send never started, back in the queue
