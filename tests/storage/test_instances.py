"""Several instances on one database (issue: PostgreSQL for several instances).

Each test runs on both backends: on PostgreSQL the instances are separate pools racing for
rows; on SQLite they are separate connections serialised by the file's write lock. They
migrate an empty database once, never share a claim nor send to one contact twice at once,
store a webhook delivered to both once, and take over each other's claims only after the
holder's lease ran out.
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from storage import (
    LATEST_VERSION,
    MIGRATIONS,
    InboundState,
    MessageDirection,
    OutboxEntry,
    OutboxState,
    OutboxStateError,
    SqliteStore,
    Store,
)
from tests.storage._support import START, Backend, FakeClock, enqueue, query

LEASE = 30.0


# ---------------------------------------------------------------- opening


async def test_instances_opening_an_empty_database_at_once_migrate_it_once(
    backend: Backend, clock: FakeClock
) -> None:
    stores = [backend.new_store(clock, instance_id=name) for name in ("a", "b", "c")]
    try:
        await asyncio.gather(*(store.open() for store in stores))
        versions = await asyncio.gather(*(store.schema_version() for store in stores))
        assert versions == [LATEST_VERSION] * 3
    finally:
        await asyncio.gather(*(store.close() for store in stores))
    assert backend.query("SELECT version FROM schema_migrations ORDER BY version") == [
        (migration.version,) for migration in MIGRATIONS
    ]


async def test_an_sqlite_store_that_read_the_version_before_another_migrated_migrates_nothing(
    db_path: Path, clock: FakeClock
) -> None:
    # Made to happen rather than hoped for: `first` reads version 0 and is held just before
    # its first migration until `second` has read version 0 too. Each then migrates on a
    # stale version, so whichever goes second must find the other's work inside its own
    # write transaction instead of running the migrations again.
    loop = asyncio.get_running_loop()
    first_paused = asyncio.Event()
    second_read = threading.Event()
    waited: list[bool] = []
    begins = 0

    def first_statement(sql: str) -> None:  # on the first store's own thread
        nonlocal begins
        if sql.startswith("BEGIN"):
            begins += 1
            if begins == 2:  # the first migration's transaction is about to begin
                loop.call_soon_threadsafe(first_paused.set)
                waited.append(second_read.wait(timeout=10))

    def second_statement(sql: str) -> None:
        if sql == "COMMIT":  # ends the transaction that read the version
            second_read.set()

    first = SqliteStore(db_path, clock=clock, on_statement=first_statement)
    second = SqliteStore(db_path, clock=clock, on_statement=second_statement)
    opening = asyncio.create_task(first.open())
    try:
        await first_paused.wait()
        await asyncio.gather(opening, second.open())
        assert waited == [True], "the second store never read the version"
        assert [await store.schema_version() for store in (first, second)] == [LATEST_VERSION] * 2
    finally:
        await asyncio.gather(first.close(), second.close())
    assert query(db_path, "SELECT version FROM schema_migrations ORDER BY version") == [
        (migration.version,) for migration in MIGRATIONS
    ]


# ---------------------------------------------------------------- claiming


async def test_two_instances_claiming_at_once_share_no_send_and_no_contact(
    backend: Backend, clock: FakeClock
) -> None:
    contacts = [f"contact-{n}" for n in range(6)]
    async with (
        backend.new_store(clock, instance_id="a") as a,
        backend.new_store(clock, instance_id="b") as b,
    ):
        queued: dict[str, list[int]] = defaultdict(list)
        for n in range(4):
            for contact in contacts:
                queued[contact].append((await enqueue(a, f"{contact}-{n}", contact_id=contact)).id)

        claimed_in_order: dict[str, list[int]] = defaultdict(list)
        in_flight: list[tuple[Store, int]] = []
        while sum(map(len, claimed_in_order.values())) < 4 * len(contacts):
            # Both instances claim while the sends of the last round are being settled.
            settle = [
                holder.mark_sent(entry_id, conversation_id=None, ghl_message_id=None)
                for holder, entry_id in in_flight
            ]
            claimers = [a, b] * 8
            results = await asyncio.gather(*(store.claim_next() for store in claimers), *settle)
            claims = [
                (store, entry)
                for store, entry in zip(claimers, results[: len(claimers)], strict=True)
                if entry is not None
            ]
            assert claims or in_flight, "neither instance could claim the queued sends"
            round_contacts = [entry.contact_id for _, entry in claims]
            assert len(round_contacts) == len(set(round_contacts)), (
                f"two sends of one contact claimed at once: {sorted(round_contacts)}"
            )
            assert (
                backend.query(
                    "SELECT contact_id FROM outbox WHERE state = 'sending'"
                    " GROUP BY contact_id HAVING COUNT(*) > 1"
                )
                == []
            )
            for _, entry in claims:
                claimed_in_order[entry.contact_id].append(entry.id)
            in_flight = [(store, entry.id) for store, entry in claims]
        for holder, entry_id in in_flight:
            await holder.mark_sent(entry_id, conversation_id=None, ghl_message_id=None)

    # Every send claimed once (attempts 1), each contact's in the order they were queued.
    assert claimed_in_order == queued
    assert backend.query(
        "SELECT state, attempts, COUNT(*) FROM outbox GROUP BY state, attempts"
    ) == [("sent", 1, 4 * len(contacts))]


async def test_two_instances_claiming_inbound_at_once_share_no_event_and_no_conversation(
    backend: Backend, clock: FakeClock
) -> None:
    conversations = [f"conv-{n}" for n in range(6)]
    async with (
        backend.new_store(clock, instance_id="a") as a,
        backend.new_store(clock, instance_id="b") as b,
    ):
        stored: dict[str, list[int]] = defaultdict(list)
        for n in range(4):
            for conversation in conversations:
                event = await a.enqueue_inbound(
                    source="webhook",
                    event_type="InboundMessage",
                    conversation_key=conversation,
                    payload={"n": n},
                    dedupe_keys=[f"message:{conversation}-{n}"],
                    ttl_seconds=3600,
                )
                assert event is not None
                stored[conversation].append(event.id)

        claimed_in_order: dict[str, list[int]] = defaultdict(list)
        in_flight: list[tuple[Store, int]] = []
        while sum(map(len, claimed_in_order.values())) < 4 * len(conversations):
            settle = [holder.finish_inbound(event_id) for holder, event_id in in_flight]
            claimers = [a, b] * 8
            results = await asyncio.gather(*(store.claim_inbound() for store in claimers), *settle)
            claims = [
                (store, event)
                for store, event in zip(claimers, results[: len(claimers)], strict=True)
                if event is not None
            ]
            assert claims or in_flight, "neither instance could claim the stored events"
            round_conversations = [event.conversation_key for _, event in claims]
            assert len(round_conversations) == len(set(round_conversations)), (
                f"two events of one conversation claimed at once: {sorted(round_conversations)}"
            )
            for _, event in claims:
                claimed_in_order[event.conversation_key].append(event.id)
            in_flight = [(store, event.id) for store, event in claims]
        for holder, event_id in in_flight:
            await holder.finish_inbound(event_id)

    assert claimed_in_order == stored
    assert backend.query(
        "SELECT state, attempts, COUNT(*) FROM inbound_events GROUP BY state, attempts"
    ) == [("done", 1, 4 * len(conversations))]


# ---------------------------------------------------------------- one webhook, two instances


async def test_one_message_delivered_to_two_instances_at_once_is_stored_once(
    backend: Backend, clock: FakeClock
) -> None:
    async with (
        backend.new_store(clock, instance_id="a") as a,
        backend.new_store(clock, instance_id="b") as b,
    ):
        # Retries of one webhook (same ids) and redeliveries (new webhook id, same message).
        deliveries = [(store, f"w{n % 4}") for n, store in enumerate([a, b] * 15)]
        results = await asyncio.gather(
            *(
                store.enqueue_inbound(
                    source="webhook",
                    event_type="InboundMessage",
                    conversation_key="conv-a",
                    payload={"webhook": webhook},
                    dedupe_keys=[f"webhook:{webhook}", "message:m1"],
                    ttl_seconds=3600,
                )
                for store, webhook in deliveries
            )
        )
    stored = [event for event in results if event is not None]
    assert len(stored) == 1
    assert backend.count_rows("inbound_events") == 1
    # Only the stored delivery's keys are taken: the others' transactions left none behind.
    winner = stored[0].payload["webhook"]
    keys = {row[0] for row in backend.query("SELECT key FROM processed_deliveries")}
    assert keys == {f"webhook:{winner}", "message:m1"}


# ---------------------------------------------------------------- leases


async def test_a_send_is_taken_over_only_after_its_lease_ran_out_and_is_never_resent(
    backend: Backend,
) -> None:
    clock_a, clock_b = FakeClock(), FakeClock()
    async with (
        backend.new_store(clock_a, instance_id="a", lease_seconds=LEASE) as a,
        backend.new_store(clock_b, instance_id="b", lease_seconds=LEASE) as b,
    ):
        entry = await enqueue(a, "k1")
        claimed = await a.claim_next()
        assert claimed is not None and claimed.id == entry.id
        assert backend.query("SELECT lease_owner, lease_expires_at FROM outbox") == [
            ("a", START + LEASE)
        ]
        assert await b.renew_leases() == 0  # b renews only its own claims

        clock_b.advance(LEASE - 1)
        assert (await b.take_over_expired()).sends == 0
        clock_a.advance(LEASE - 1)
        assert await a.renew_leases() == 1
        assert backend.query("SELECT lease_expires_at FROM outbox") == [
            (START + LEASE - 1 + LEASE,)
        ]
        clock_b.advance(LEASE - 1)  # past the first lease, within the renewed one
        assert (await b.take_over_expired()).sends == 0
        assert (await b.get_outbox(entry.id)).state is OutboxState.SENDING  # type: ignore[union-attr]

        clock_b.advance(LEASE)  # a stopped renewing: its lease ran out
        takeover = await b.take_over_expired()
        assert (takeover.sends, takeover.events) == (1, 0)
        taken = await b.get_outbox(entry.id)
        assert taken is not None and taken.state is OutboxState.UNKNOWN
        assert taken.last_error is not None and "may have reached HighLevel" in taken.last_error
        assert backend.query("SELECT lease_owner, lease_expires_at FROM outbox") == [(None, None)]
        # Never resent by either instance: it waits for reconciliation.
        assert await b.claim_next(START + 10 * LEASE) is None
        assert await a.claim_next(START + 10 * LEASE) is None
        assert (await b.take_over_expired()).sends == 0


async def test_an_event_is_taken_over_after_its_lease_and_the_late_holder_cannot_finish_it(
    backend: Backend,
) -> None:
    clock_a, clock_b = FakeClock(), FakeClock()
    async with (
        backend.new_store(clock_a, instance_id="a", lease_seconds=LEASE) as a,
        backend.new_store(clock_b, instance_id="b", lease_seconds=LEASE) as b,
    ):
        stored = await a.enqueue_inbound(
            source="webhook",
            event_type="InboundMessage",
            conversation_key="conv-a",
            payload={},
            dedupe_keys=["message:m1"],
            ttl_seconds=3600,
        )
        assert stored is not None
        assert (await a.claim_inbound()) is not None
        clock_b.advance(LEASE - 1)
        assert (await b.take_over_expired()).events == 0
        assert await b.claim_inbound() is None  # a holds it

        clock_b.advance(2)
        takeover = await b.take_over_expired()
        assert (takeover.sends, takeover.events) == (0, 1)
        assert await b.count_inbound(InboundState.PENDING) == 1
        again = await b.claim_inbound()
        assert again is not None and again.id == stored.id and again.attempts == 2

        # a comes back and reports the event it lost: b's claim stands.
        await a.finish_inbound(stored.id)
        await a.fail_inbound(stored.id, "late")
        assert backend.query("SELECT state, lease_owner, last_error FROM inbound_events") == [
            ("processing", "b", None)
        ]
        await b.finish_inbound(stored.id)
        assert await b.count_inbound(InboundState.DONE) == 1


# ---------------------------------------------------------------- lock-free writes, many callers
#
# These writes take no serial lock on PostgreSQL: each decides in one race-free statement (an
# upsert, an UPDATE whose WHERE tests the state). Three instances call each at once, many
# times over, so a look-up followed by a write would be overtaken.

CALLERS = 24  # per test, spread over the three instances


@asynccontextmanager
async def _three(backend: Backend, clock: FakeClock) -> AsyncIterator[list[Store]]:
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(backend.new_store(clock, instance_id=name))
            for name in ("a", "b", "c")
        ]


async def test_first_sends_to_a_contact_from_three_instances_make_one_thread_with_one_root(
    backend: Backend, clock: FakeClock
) -> None:
    async with _three(backend, clock) as stores:
        threads = await asyncio.gather(
            *(
                stores[n % 3].upsert_thread(
                    team_id="T1",
                    channel_id="C1",
                    location_id="loc-1",
                    contact_id="contact-a",
                    thread_ts=f"1700000000.{n:06d}",
                    contact_label=f"label {n}",
                )
                for n in range(CALLERS)
            )
        )
    # Every caller got the one thread, and the root (and label) the first of them gave it.
    assert len({thread.id for thread in threads}) == 1
    assert len({thread.thread_ts for thread in threads}) == 1
    assert len({thread.contact_label for thread in threads}) == 1
    assert backend.count_rows("slack_threads") == 1


async def test_one_message_recorded_by_three_instances_at_once_is_one_row(
    backend: Backend, clock: FakeClock
) -> None:
    async with _three(backend, clock) as stores:
        results = await asyncio.gather(
            *(
                stores[n % 3].record_message(
                    direction=MessageDirection.INBOUND, ghl_message_id=f"m-{n % 4}"
                )
                for n in range(CALLERS)
            )
        )
    assert [created for _, created in results].count(True) == 4
    for message_id in range(4):
        ids = {record.id for record, _ in results if record.ghl_message_id == f"m-{message_id}"}
        assert len(ids) == 1
    assert backend.count_rows("messages") == 4


async def test_a_send_recorded_while_its_echo_is_recorded_elsewhere_is_one_linked_row(
    backend: Backend, clock: FakeClock
) -> None:
    """mark_sent on one instance, the echo webhook's record_message on the others, at once."""
    async with _three(backend, clock) as stores:
        entries = [await enqueue(stores[0], f"send-{n}", contact_id=f"c-{n}") for n in range(8)]
        for n in range(len(entries)):
            assert await stores[n % 3].claim_next() is not None
        await asyncio.gather(
            *(
                stores[0].mark_sent(entry.id, conversation_id="conv", ghl_message_id=f"g-{n}")
                for n, entry in enumerate(entries)
            ),
            *(
                stores[1 + k % 2].record_message(
                    direction=MessageDirection.OUTBOUND, ghl_message_id=f"g-{n}"
                )
                for n in range(len(entries))
                for k in range(2)
            ),
        )
    rows = backend.query("SELECT ghl_message_id, outbox_id FROM messages ORDER BY ghl_message_id")
    assert rows == sorted((f"g-{n}", entry.id) for n, entry in enumerate(entries))


async def test_one_send_marked_sent_by_three_instances_at_once_is_sent_once(
    backend: Backend, clock: FakeClock
) -> None:
    async with _three(backend, clock) as stores:
        entry = await enqueue(stores[0], "k1")
        assert await stores[0].claim_next() is not None
        outcomes = await asyncio.gather(
            *(
                stores[n % 3].mark_sent(entry.id, conversation_id="conv", ghl_message_id="g-1")
                for n in range(CALLERS)
            ),
            return_exceptions=True,
        )
    sent = [outcome for outcome in outcomes if isinstance(outcome, OutboxEntry)]
    refused = [outcome for outcome in outcomes if isinstance(outcome, OutboxStateError)]
    assert (len(sent), len(refused)) == (1, CALLERS - 1), outcomes
    assert backend.query("SELECT ghl_message_id, outbox_id FROM messages") == [("g-1", entry.id)]


async def test_a_send_taken_to_unknown_by_three_instances_at_once_moves_once(
    backend: Backend, clock: FakeClock
) -> None:
    async with _three(backend, clock) as stores:
        entry = await enqueue(stores[0], "k1")
        assert await stores[0].claim_next() is not None
        outcomes = await asyncio.gather(
            *(stores[n % 3].mark_unknown(entry.id, f"timeout {n}") for n in range(CALLERS)),
            return_exceptions=True,
        )
    moved = [outcome for outcome in outcomes if isinstance(outcome, OutboxEntry)]
    assert len(moved) == 1, outcomes
    assert all(
        isinstance(outcome, OutboxStateError) for outcome in outcomes if outcome not in moved
    )
    (error,) = backend.query("SELECT last_error FROM outbox")
    assert error == (moved[0].last_error,)


async def test_a_send_cancelled_while_instances_claim_it_is_either_sent_or_cancelled(
    backend: Backend, clock: FakeClock
) -> None:
    """Never both: a cancel that read 'pending' must not overwrite a claim made meanwhile."""
    async with _three(backend, clock) as stores:
        entries = [await enqueue(stores[0], f"k{n}", contact_id=f"c-{n}") for n in range(CALLERS)]
        outcomes = await asyncio.gather(
            *(stores[n % 3].mark_cancelled(entry.id) for n, entry in enumerate(entries)),
            *(stores[n % 3].claim_next() for n in range(CALLERS)),
            return_exceptions=True,
        )
    cancels, claims = outcomes[:CALLERS], outcomes[CALLERS:]
    claimed = {claim.id for claim in claims if isinstance(claim, OutboxEntry)}
    for entry, cancel in zip(entries, cancels, strict=True):
        if entry.id in claimed:
            assert isinstance(cancel, OutboxStateError), (entry.id, cancel)
        else:
            assert isinstance(cancel, OutboxEntry), (entry.id, cancel)
    states = dict(backend.query("SELECT id, state FROM outbox"))
    assert {entry_id for entry_id, state in states.items() if state == "sending"} == claimed
    assert sum(state == "cancelled" for state in states.values()) == CALLERS - len(claimed)


async def test_a_post_recorded_with_its_event_finishes_it_unless_the_lease_was_lost(
    backend: Backend,
) -> None:
    clock_a, clock_b = FakeClock(), FakeClock()
    async with (
        backend.new_store(clock_a, instance_id="a", lease_seconds=LEASE) as a,
        backend.new_store(clock_b, instance_id="b", lease_seconds=LEASE) as b,
    ):
        thread = await a.upsert_thread(
            team_id="T1", channel_id="C1", location_id="loc-1", contact_id="contact-a"
        )
        events = [
            await a.enqueue_inbound(
                source="webhook",
                event_type="InboundMessage",
                conversation_key=f"conv-{n}",
                payload={},
                dedupe_keys=[f"message:m{n}"],
                ttl_seconds=3600,
            )
            for n in (1, 2)
        ]
        messages = [
            (
                await a.record_message(
                    direction=MessageDirection.INBOUND, thread_id=thread.id, ghl_message_id=f"m{n}"
                )
            )[0]
            for n in (1, 2)
        ]
        first, second = [await a.claim_inbound() for _ in events]
        assert first is not None and second is not None

        shown = await a.record_shown(
            messages[0].id,
            slack_channel_id="C1",
            slack_ts="1700000001.000001",
            thread_id=thread.id,
            finishes=first.id,
        )
        assert shown is not None
        states = "SELECT id, state, lease_owner FROM inbound_events ORDER BY id"
        assert backend.query(states) == [(first.id, "done", None), (second.id, "processing", "a")]

        # b takes the second over after a's lease; a's late post does not finish it.
        clock_b.advance(LEASE + 1)
        assert (await b.take_over_expired()).events == 1
        assert await b.claim_inbound() is not None
        await a.record_shown(
            messages[1].id,
            slack_channel_id="C1",
            slack_ts="1700000001.000002",
            thread_id=thread.id,
            finishes=second.id,
        )
        assert backend.query(states) == [(first.id, "done", None), (second.id, "processing", "b")]
        posted = await a.get_message_by_ghl_id("m2")
        assert posted is not None and posted.slack_ts == "1700000001.000002"
