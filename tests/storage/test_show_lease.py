"""A finished send keeps its claim until its Slack post shows the outcome (both backends).

A process that dies between recording a send's outcome and updating its post would leave the
post at "Sending…" for ever, and a person might send again: the claim, renewed meanwhile,
tells another instance (or the next start) to show the outcome once its lease has expired.
"""

from __future__ import annotations

from storage import OutboxState
from tests.storage._support import START, Backend, FakeClock, enqueue

LEASE = 30.0


async def test_a_finished_send_stays_claimed_until_released(backend: Backend) -> None:
    clock = FakeClock()
    async with backend.new_store(clock, instance_id="a", lease_seconds=LEASE) as a:
        entry = await enqueue(a, "k1")
        await a.claim_next()
        clock.advance(5)
        await a.mark_sent(entry.id, conversation_id="conv", ghl_message_id="m1")
        # Still a's, for a fresh lease from the outcome: the post is yet to show it.
        assert backend.query("SELECT state, lease_owner, lease_expires_at FROM outbox") == [
            ("sent", "a", START + 5 + LEASE)
        ]
        clock.advance(LEASE - 1)
        assert await a.renew_leases() == 1  # renewed like a claim in flight
        await a.release_claim(entry.id)
        assert backend.query("SELECT lease_owner, lease_expires_at FROM outbox") == [(None, None)]
        assert await a.renew_leases() == 0


async def test_an_unshown_outcome_is_handed_over_once_its_lease_expired(backend: Backend) -> None:
    clock_a, clock_b = FakeClock(), FakeClock()
    async with (
        backend.new_store(clock_a, instance_id="a", lease_seconds=LEASE) as a,
        backend.new_store(clock_b, instance_id="b", lease_seconds=LEASE) as b,
    ):
        sent = await enqueue(a, "k1", contact_id="c1")
        failed = await enqueue(a, "k2", contact_id="c2")
        await a.claim_next()
        await a.claim_next()
        await a.mark_sent(sent.id, conversation_id="conv", ghl_message_id="m1")
        await a.mark_failed(failed.id, "HighLevel refused it")
        # a dies here, before either post was updated.
        clock_b.advance(LEASE - 1)
        assert (await b.take_over_expired()).unshown == ()
        clock_b.advance(2)
        assert (await b.take_over_expired()).unshown == (sent.id, failed.id)
        # Handed over once: the next look (or another instance's) finds nothing.
        assert (await b.take_over_expired()).unshown == ()
        states = {(await b.get_outbox(i)).state for i in (sent.id, failed.id)}  # type: ignore[union-attr]
        assert states == {OutboxState.SENT, OutboxState.FAILED}  # the outcome itself stands


async def test_a_send_put_back_in_the_queue_holds_no_claim(backend: Backend) -> None:
    clock = FakeClock()
    async with backend.new_store(clock, instance_id="a", lease_seconds=LEASE) as a:
        entry = await enqueue(a, "k1")
        await a.claim_next()
        await a.retry_later(entry.id, next_attempt_at=START + 60, error="429")
        assert backend.query("SELECT state, lease_owner, lease_expires_at FROM outbox") == [
            ("pending", None, None)
        ]


async def test_at_start_up_every_claim_but_this_process_own_is_taken(backend: Backend) -> None:
    clock = FakeClock()
    async with (
        backend.new_store(clock, instance_id="old", lease_seconds=LEASE) as old,
        backend.new_store(clock, instance_id="new", lease_seconds=LEASE) as new,
    ):
        finished = await enqueue(old, "k1", contact_id="c1")
        await old.claim_next()
        await old.mark_sent(finished.id, conversation_id="conv", ghl_message_id="m1")
        mine = await enqueue(new, "k2", contact_id="c2")
        claimed = await new.claim_next()
        assert claimed is not None and claimed.id == mine.id
        # Leases still live, yet a process alone on its database takes the dead one's now,
        # and never its own (its workers may already hold some).
        taken = await new.take_over_expired(every_claim=True)
        assert (taken.sends, taken.unshown) == (0, (finished.id,))
        assert (await new.get_outbox(mine.id)).state is OutboxState.SENDING  # type: ignore[union-attr]
