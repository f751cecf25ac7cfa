"""One store operation is one round trip on PostgreSQL too, as far as it honestly can be.

A round trip is what the store's connection sends before it waits for the server's answer:
exactly one Sync (the extended protocol's statements) or Query (the simple protocol's) message
each. Every round trip costs the bridge a socket write and read and a wake-up of its loop, and
the server a wake-up of its backend: more than most statements. Releasing a connection to the
pool costs none (no session reset), a statement that is atomic on its own runs without BEGIN
and COMMIT, and a serial write takes its lock in the round trip of its BEGIN.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from storage import MessageDirection, PostgresStore, StoreError
from storage._base import Conn
from storage._inbox import WaitingChange
from storage._postgres import _MIGRATION_LOCK, _WRITE_LOCK
from tests.storage._support import FakeClock

pytestmark = pytest.mark.postgres

TTL = 86_400.0
_SYNC, _QUERY = ord("S"), ord("Q")


class RoundTrips:
    """Counts the round trips of every connection the stores opened from now on."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        create_pool = asyncpg.create_pool

        def counting_pool(*args: Any, **kwargs: Any) -> Any:
            return create_pool(*args, init=self._watch, **kwargs)

        monkeypatch.setattr(asyncpg, "create_pool", counting_pool)

    async def _watch(self, conn: Any) -> None:
        transport = conn._transport  # asyncpg writes every message through it
        write = transport.write
        pending = bytearray()

        def counted(data: Any) -> None:
            # Frontend messages: a type byte, then a length that counts itself (not the type).
            pending.extend(bytes(data))
            while len(pending) >= 5:
                end = 1 + int.from_bytes(pending[1:5], "big")
                if len(pending) < end:
                    break
                if pending[0] in (_SYNC, _QUERY):
                    self.count += 1
                del pending[:end]
            write(data)

        transport.write = counted

    async def of(self, operation: Awaitable[Any]) -> int:
        """How many round trips `operation` made."""
        before = self.count
        await operation
        return self.count - before


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> RoundTrips:
    return RoundTrips(monkeypatch)


@pytest.fixture
async def store(
    postgres_url: str, clock: FakeClock, round_trips: RoundTrips
) -> AsyncIterator[PostgresStore]:
    # One connection, so that each statement is prepared once (in the warm-up) and every
    # operation after that finds it in that connection's cache.
    async with PostgresStore(postgres_url, clock=clock, pool_size=1) as opened:
        yield opened


async def _inbound(store: PostgresStore, *keys: str) -> bool:
    event = await store.enqueue_inbound(
        source="webhook",
        event_type="InboundMessage",
        conversation_key="loc:contact",
        payload={"type": "InboundMessage"},
        dedupe_keys=list(keys),
        ttl_seconds=TTL,
    )
    return event is not None


def _operations(
    store: PostgresStore, clock: FakeClock, run: int
) -> dict[str, Callable[[], Awaitable[Any]]]:
    """A send's and an inbound message's operations, in order; `run` keeps each run's rows
    apart, so that the warm-up run and the measured one do the same things."""
    ids: dict[str, int] = {}

    async def new_thread() -> None:
        thread = await store.upsert_thread(
            team_id="T", channel_id="C", location_id="L", contact_id=f"c{run}"
        )
        ids["thread"] = thread.id

    async def enqueue(key: str, *, close_intent: str | None) -> None:
        entry, _ = await store.enqueue(
            idempotency_key=key,
            team_id="T",
            channel_id="C",
            slack_user_id="U",
            location_id="L",
            contact_id=f"c{run}",
            message_type="SMS",
            payload={"message": "hi"},
            thread_id=ids["thread"],
            close_intent=close_intent,
        )
        ids[key] = entry.id

    def thread_op(call: Callable[[int], Awaitable[Any]]) -> Callable[[], Awaitable[Any]]:
        return lambda: call(ids["thread"])

    def entry_op(call: Callable[[int], Awaitable[Any]]) -> Callable[[], Awaitable[Any]]:
        return lambda: call(ids["claimed"])

    async def claim() -> None:
        claimed = await store.claim_next()
        assert claimed is not None
        ids["claimed"] = claimed.id

    async def record_new() -> None:
        record, _ = await store.record_message(
            direction=MessageDirection.INBOUND, thread_id=ids["thread"], ghl_message_id=f"in{run}"
        )
        ids["message"] = record.id

    return {
        "upsert_thread (a new one)": new_thread,
        "upsert_thread (filling a column)": lambda: store.upsert_thread(
            team_id="T", channel_id="C", location_id="L", contact_id=f"c{run}", subject="s"
        ),
        "get_thread": thread_op(store.get_thread),
        "find_thread_for_contact": lambda: store.find_thread_for_contact("T", "C", "L", f"c{run}"),
        "set_thread_ts": thread_op(lambda thread_id: store.set_thread_ts(thread_id, f"{run}.1")),
        "update_thread": thread_op(
            lambda thread_id: store.update_thread(thread_id, conversation_id="conv")
        ),
        "open_intent": lambda: store.open_intent(
            idempotency_key=f"k{run}",
            kind="command",
            team_id="T",
            channel_id="C",
            slack_user_id="U",
            payload={"text": "hi"},
        ),
        "get_outbox_by_key": lambda: store.get_outbox_by_key(f"k{run}"),
        "enqueue (closing the intent)": lambda: enqueue(f"k{run}", close_intent=f"k{run}"),
        "enqueue": lambda: enqueue(f"k{run}-b", close_intent=None),
        "enqueue (a key queued before)": lambda: enqueue(f"k{run}-b", close_intent=None),
        "claim_next": claim,
        "next_outbox_due_at": lambda: store.next_outbox_due_at(),
        "claim_next_or_due (nothing to claim)": lambda: store.claim_next_or_due(now=clock() - 1),
        "set_outbox_thread": entry_op(
            lambda entry_id: store.set_outbox_thread(entry_id, ids["thread"])
        ),
        "set_outbox_slack_ts": entry_op(
            lambda entry_id: store.set_outbox_slack_ts(entry_id, f"{run}.2")
        ),
        "take_budget": lambda: store.take_budget("slack:T:C", rate=100.0, burst=100),
        "take_window": lambda: store.take_window("ghl:L", limit=100, period=10.5),
        "mark_sent (two ids)": entry_op(
            lambda entry_id: store.mark_sent(
                entry_id,
                conversation_id="conv",
                ghl_message_id=f"g{run}",
                ghl_message_ids=[f"g{run}", f"g{run}-2"],
            )
        ),
        "get_message_by_ghl_id": lambda: store.get_message_by_ghl_id(f"g{run}"),
        "update_message_status": lambda: store.update_message_status(f"g{run}", "delivered"),
        "update_status_of_send": lambda: store.update_status_of_send(f"g{run}", "read"),
        "mark_failed (from sent)": entry_op(lambda entry_id: store.mark_failed(entry_id, "no")),
        "record_message (a new one)": record_new,
        "record_message (known)": lambda: store.record_message(
            direction=MessageDirection.INBOUND, thread_id=ids["thread"], ghl_message_id=f"in{run}"
        ),
        "attach_slack_ts": lambda: store.attach_slack_ts(
            ids["message"], slack_channel_id="C", slack_ts=f"{run}.3"
        ),
        "record_shown (the wait starts)": thread_op(
            lambda t: store.record_shown(
                ids["message"],
                slack_channel_id="C",
                slack_ts=f"{run}.4",
                thread_id=t,
                waiting=WaitingChange.customer_wrote(clock()),
                conversation_id=f"conv{run}",
            )
        ),
        "record_shown (an answer)": thread_op(
            lambda t: store.record_shown(
                ids["message"],
                slack_channel_id="C",
                slack_ts=f"{run}.5",
                thread_id=t,
                waiting=WaitingChange.answered(),
            )
        ),
        "record_shown (no wait)": thread_op(
            lambda t: store.record_shown(
                ids["message"], slack_channel_id="C", slack_ts=f"{run}.6", thread_id=t
            )
        ),
        "claim_inbound (none due)": lambda: store.claim_inbound(now=clock() - 1),
        "mark_waiting (now waiting)": thread_op(lambda t: store.mark_waiting(t, clock())),
        "mark_waiting (waiting already)": thread_op(lambda t: store.mark_waiting(t, clock())),
        "clear_waiting (was waiting)": thread_op(store.clear_waiting),
        "clear_waiting (nobody waited)": thread_op(store.clear_waiting),
        "set_conversation_flags (unread)": thread_op(
            lambda t: store.set_conversation_flags(t, unread_count=2)
        ),
        "set_conversation_flags (still unread)": thread_op(
            lambda t: store.set_conversation_flags(t, unread_count=3)
        ),
        "set_assigned_to (the same person)": thread_op(lambda t: store.set_assigned_to(t, None)),
        "claim_inbound_or_due (none due)": lambda: store.claim_inbound_or_due(now=clock() - 1),
        "mark_processed": lambda: store.mark_processed("s", f"k{run}", ttl_seconds=TTL),
        "kv_set": lambda: store.kv_set("key", f"value {run}"),
        "kv_get": lambda: store.kv_get("key"),
        "check_writable": lambda: store.check_writable(),
        "close_intent (none open)": lambda: store.close_intent(f"k{run}", "done"),
        "upsert_thread (filling nothing)": new_thread,
        "enqueue_inbound": lambda: _inbound(store, f"w{run}", f"m{run}"),
        "enqueue_inbound (seen before)": lambda: _inbound(store, f"w{run}-b", f"m{run}"),
    }


# What takes more than one round trip, and why it honestly cannot take fewer.
_MORE_THAN_ONE = {
    # The upsert changes nothing (nothing left to fill) and so returns no row: read it.
    "upsert_thread (filling nothing)": 2,
    # The insert finds the key taken and returns no row: read the entry it kept.
    "enqueue (a key queued before)": 2,
    # The insert finds the message recorded and returns no row: read the row it kept.
    "record_message (known)": 2,
}


async def test_each_operation_is_one_round_trip(
    store: PostgresStore, round_trips: RoundTrips, clock: FakeClock
) -> None:
    measured: dict[str, int] = {}
    for run in (0, 1):  # run 0 prepares every statement on the connection
        operations = _operations(store, clock, run)
        measured = {
            name: await round_trips.of(operation()) for name, operation in operations.items()
        }
    expected = {name: _MORE_THAN_ONE.get(name, 1) for name in measured}
    assert measured == expected


async def test_a_serial_write_takes_the_lock_in_the_round_trip_of_its_begin(
    store: PostgresStore, round_trips: RoundTrips, postgres_url: str, clock: FakeClock
) -> None:
    inside = asyncio.Event()
    leave = asyncio.Event()

    async def held(db: Conn) -> None:
        await db.execute("INSERT INTO kv_store (key, value, updated_at) VALUES ('first', 'x', 1)")
        inside.set()
        await leave.wait()

    async def second(db: Conn) -> int:
        rows = await db.fetch("SELECT COUNT(*) FROM kv_store WHERE key = 'first'")
        return int(rows[0][0])

    # BEGIN with the lock, the statement, COMMIT.
    assert await round_trips.of(store._write_op(second)) == 3
    async with PostgresStore(postgres_url, clock=clock) as other:
        holding = asyncio.create_task(store._write_op(held))
        await inside.wait()
        waiting = asyncio.create_task(other._write_op(second))
        # The other instance's serial write waits for the lock, not for anything of this
        # process: it is on the server, blocked by the holder's advisory lock.
        await _until_waiting_on_a_lock(other)
        assert not waiting.done()
        leave.set()
        await holding
        # It ran after the holder committed, and saw its row.
        assert await waiting == 1


async def _until_waiting_on_a_lock(store: PostgresStore) -> None:
    """Return once one of `store`'s connections waits for a lock on the server."""
    async with asyncio.timeout(10):
        while True:
            rows = await store._read_op(
                lambda db: db.fetch(
                    "SELECT COUNT(*) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND query LIKE ?",
                    (f"%pg_advisory_xact_lock({_WRITE_LOCK}, {store._schema_key})%",),
                )
            )
            if rows[0][0]:
                return
            await asyncio.sleep(0.01)


@pytest.fixture
async def loop_errors() -> list[dict[str, Any]]:
    """What reaches the loop's exception handler: asyncpg reports there a connection given
    back to the pool inside a transaction (which it then rolls back itself)."""
    seen: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, context: seen.append(context))
    return seen


async def test_a_failing_write_is_rolled_back_and_its_connection_is_clean(
    store: PostgresStore, loop_errors: list[dict[str, Any]]
) -> None:
    async def half_then_refused(db: Conn) -> None:
        await db.execute("INSERT INTO kv_store (key, value, updated_at) VALUES ('half', 'x', 1)")
        # No thread 999: a foreign key the database refuses.
        await db.execute(
            "INSERT INTO messages (thread_id, direction, created_at, updated_at)"
            " VALUES (999, 'inbound', 1, 1)"
        )

    for serial in (True, False):
        with pytest.raises(StoreError, match="foreign key"):
            await store._write_op(half_then_refused, serial=serial)
        # The pool's one connection is outside any transaction again: this commits alone.
        await store.kv_set("after", "ok")
        assert await store.kv_get("half") is None
        assert await store.kv_get("after") == "ok"
    assert [context["message"] for context in loop_errors] == []


async def test_a_write_whose_caller_is_cancelled_is_rolled_back(
    store: PostgresStore, postgres_url: str, clock: FakeClock, loop_errors: list[dict[str, Any]]
) -> None:
    inside = asyncio.Event()

    async def held(db: Conn) -> None:
        await db.execute("INSERT INTO kv_store (key, value, updated_at) VALUES ('gone', 'x', 1)")
        inside.set()
        await asyncio.Event().wait()  # until cancelled

    for serial in (True, False):
        writing = asyncio.create_task(store._write_op(held, serial=serial))
        await inside.wait()
        inside.clear()
        writing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writing
        assert await store.kv_get("gone") is None
        # Its connection holds no lock either: another instance's serial write goes through.
        async with PostgresStore(postgres_url, clock=clock) as other, asyncio.timeout(10):
            await other._write_op(lambda db: db.execute("SELECT 1"))
    assert [context["message"] for context in loop_errors] == []


async def test_no_advisory_lock_outlives_opening(
    postgres_url: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connections go back to the pool without a reset: the migration's session lock must be
    let go of by the migration itself, or by closing its connection when that fails."""
    async with PostgresStore(postgres_url, clock=clock) as store:
        assert await _advisory_locks(store) == 0

    fetchval = asyncpg.connection.Connection.fetchval

    async def unlock_fails(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        if "pg_advisory_unlock" in query:
            raise asyncpg.InterfaceError("the connection broke")
        return await fetchval(self, query, *args, **kwargs)

    monkeypatch.setattr(asyncpg.connection.Connection, "fetchval", unlock_fails)
    with pytest.raises(StoreError, match="the connection broke"):
        await PostgresStore(postgres_url, clock=clock).open()
    monkeypatch.undo()
    async with asyncio.timeout(10), PostgresStore(postgres_url, clock=clock) as store:
        assert await _advisory_locks(store) == 0


async def _advisory_locks(store: PostgresStore) -> int:
    """How many advisory locks of this schema's bridges are held (by anyone)."""
    rows = await store._read_op(
        lambda db: db.fetch(
            "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2"
            " AND classid IN (CAST(? AS BIGINT), CAST(? AS BIGINT))"
            " AND objid = CAST(? AS BIGINT)",
            (_MIGRATION_LOCK, _WRITE_LOCK, store._schema_key % 2**32),
        )
    )
    return int(rows[0][0])
