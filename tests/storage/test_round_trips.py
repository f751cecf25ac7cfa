"""One store operation is one round trip: on SQLite, one run on the event loop's connection, or
one hand-off to aiosqlite's thread when another process holds the lock.

Each hand-off costs a queue put, a thread switch and a wake-up of the event loop, more than most
statements: a write transaction used to take one per statement plus BEGIN and COMMIT. Webhooks
stored at the same time share one run and one transaction, each still all or nothing.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import pytest

from storage import ConflictError, MessageDirection, SqliteStore, Store, StoreError
from storage._base import Conn
from tests.storage._support import FakeClock

TTL = 86_400.0


class HandOffs:
    """Counts the calls a store queues for aiosqlite's thread (every call goes through
    aiosqlite's `Connection._execute`, whichever of its methods made it)."""

    def __init__(self, store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        self.made = asyncio.Event()  # set at each hand-off
        raw = store._connection().raw
        queue = cast(Callable[..., Awaitable[Any]], raw._execute)

        async def counted(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            self.count += 1
            self.made.set()
            return await queue(fn, *args, **kwargs)

        monkeypatch.setattr(raw, "_execute", counted)

    async def of(self, operation: Awaitable[Any]) -> int:
        """How many hand-offs `operation` made."""
        before = self.count
        await operation
        return self.count - before


class Statements:
    """What the store's connection executed (told on aiosqlite's thread)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, sql: str) -> None:
        self.seen.append(" ".join(sql.split()))

    def since(self, mark: int) -> list[str]:
        return self.seen[mark:]


@pytest.fixture
async def traced(db_path: Path, clock: FakeClock) -> AsyncIterator[tuple[SqliteStore, Statements]]:
    statements = Statements()
    async with SqliteStore(db_path, clock=clock, on_statement=statements) as opened:
        yield opened, statements


async def _inbound(store: Store, *keys: str) -> bool:
    event = await store.enqueue_inbound(
        source="webhook",
        event_type="InboundMessage",
        conversation_key="loc:contact",
        payload={"type": "InboundMessage"},
        dedupe_keys=list(keys),
        ttl_seconds=TTL,
    )
    return event is not None


def _runs(store: SqliteStore) -> int:
    ran, handed_over = store.runs
    return ran + handed_over


async def test_each_operation_is_one_run_on_the_loops_connection(
    sqlite_store: SqliteStore, monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    store = sqlite_store
    hand_offs = HandOffs(store, monkeypatch)
    thread = await store.upsert_thread(
        team_id="T", channel_id="C", location_id="L", contact_id="c1"
    )
    operations: dict[str, Callable[[], Awaitable[Any]]] = {
        "upsert_thread (a new one)": lambda: store.upsert_thread(
            team_id="T", channel_id="C", location_id="L", contact_id="c2"
        ),
        "upsert_thread (filling a column)": lambda: store.upsert_thread(
            team_id="T", channel_id="C", location_id="L", contact_id="c1", subject="s"
        ),
        "get_thread": lambda: store.get_thread(thread.id),
        "set_thread_ts": lambda: store.set_thread_ts(thread.id, "1.000001"),
        "set_thread_ts (lost the race)": lambda: store.set_thread_ts(thread.id, "2.000002"),
        "update_thread": lambda: store.update_thread(thread.id, conversation_id="conv"),
        "open_intent": lambda: store.open_intent(
            idempotency_key="k1",
            kind="command",
            team_id="T",
            channel_id="C",
            slack_user_id="U",
            payload={"text": "hi"},
        ),
        "enqueue (closing the intent)": lambda: store.enqueue(
            idempotency_key="k1",
            team_id="T",
            channel_id="C",
            slack_user_id="U",
            location_id="L",
            contact_id="c1",
            message_type="SMS",
            payload={"message": "hi"},
            thread_id=thread.id,
            close_intent="k1",
        ),
        "claim_next": lambda: store.claim_next(),
        "claim_next (nothing to claim)": lambda: store.claim_next(),
        "next_outbox_due_at": lambda: store.next_outbox_due_at(),
        "set_outbox_slack_ts": lambda: store.set_outbox_slack_ts(1, "3.000003"),
        "mark_sent": lambda: store.mark_sent(
            1, conversation_id="conv", ghl_message_id="g1", ghl_message_ids=["g1", "g2"]
        ),
        "record_message (a new one)": lambda: store.record_message(
            direction=MessageDirection.INBOUND, thread_id=thread.id, ghl_message_id="g3"
        ),
        "record_message (known)": lambda: store.record_message(
            direction=MessageDirection.INBOUND, thread_id=thread.id, ghl_message_id="g3"
        ),
        "attach_slack_ts": lambda: store.attach_slack_ts(
            3, slack_channel_id="C", slack_ts="4.000004"
        ),
        "update_message_status": lambda: store.update_message_status("g3", "read"),
        "enqueue_inbound": lambda: _inbound(store, "webhook:w1", "message:m1"),
        "enqueue_inbound (seen before)": lambda: _inbound(store, "webhook:w1", "message:m1"),
        "claim_inbound": lambda: store.claim_inbound(now=clock() + 1),
        "finish_inbound": lambda: store.finish_inbound(1),
        "mark_processed": lambda: store.mark_processed("s", "k", ttl_seconds=TTL),
        "kv_set": lambda: store.kv_set("key", "value"),
        "kv_get": lambda: store.kv_get("key"),
        "check_writable": lambda: store.check_writable(),
    }
    counts = {}
    for name, operation in operations.items():
        before = _runs(store)
        counts[name] = (await hand_offs.of(operation()), _runs(store) - before)
    # No hand-off to aiosqlite's thread: nothing else holds the database's lock.
    assert counts == dict.fromkeys(operations, (0, 1))


async def test_a_write_meeting_another_process_lock_is_one_hand_off_and_the_loop_goes_on(
    sqlite_store: SqliteStore, monkeypatch: pytest.MonkeyPatch, db_path: Path
) -> None:
    store = sqlite_store
    hand_offs = HandOffs(store, monkeypatch)
    await store.kv_set("before", "1")
    other = sqlite3.connect(db_path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process's write lock
        other.execute("INSERT INTO kv_store (key, value, updated_at) VALUES ('theirs', 'x', 1)")
        writing = asyncio.create_task(store.kv_set("ours", "2"))
        # Refused on the loop's connection, now waiting on the thread: the loop went on (this
        # test runs on it) while the write waits.
        await hand_offs.made.wait()
        assert hand_offs.count == 1 and store.runs[1] == 1
        assert not writing.done()
        other.execute("COMMIT")
    finally:
        other.close()
    await writing
    assert hand_offs.count == 1  # the whole operation, in one hand-off
    assert (await store.kv_get("ours"), await store.kv_get("theirs")) == ("2", "x")
    assert hand_offs.count == 1  # and the loop's connection again once the lock is gone


async def test_an_autocommit_kind_of_operation_holds_the_lock_from_its_first_write_to_its_end(
    sqlite_store: SqliteStore, db_path: Path
) -> None:
    """`_read_op` and `_urgent_op` run their statements in autocommit on aiosqlite's thread. On
    the loop's connection they run in one transaction: another process cannot take the lock
    between two of their writes, so a lock met is met before anything was written, and handing
    the operation over cannot make any of its writes twice."""
    store = sqlite_store
    other = sqlite3.connect(db_path, isolation_level=None, timeout=0)
    seen: list[str] = []

    async def writes_twice(db: Conn) -> None:
        await db.execute("INSERT INTO kv_store (key, value, updated_at) VALUES ('n', '1', 1)")
        try:
            other.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            seen.append(str(exc))
        else:
            seen.append("the other process got the lock")
            other.execute("ROLLBACK")
        await db.execute("INSERT INTO kv_store (key, value, updated_at) VALUES ('m', '1', 1)")

    try:
        await store._read_op(writes_twice)
    finally:
        other.close()
    assert seen == ["database is locked"]
    assert (await store.kv_get("n"), await store.kv_get("m")) == ("1", "1")


async def test_a_write_runs_between_begin_immediate_and_commit(
    traced: tuple[SqliteStore, Statements],
) -> None:
    store, statements = traced
    mark = len(statements.seen)
    await store.enqueue(
        idempotency_key="k1",
        team_id="T",
        channel_id="C",
        slack_user_id="U",
        location_id="L",
        contact_id="c1",
        message_type="SMS",
        payload={"message": "hi"},
    )
    seen = statements.since(mark)
    assert seen[0] == "BEGIN IMMEDIATE"
    assert seen[-1] == "COMMIT"
    # SQLite's trace reports the statement again for each trigger program it runs (the audit's
    # status history): the same text in a row is one statement.
    body = [s for i, s in enumerate(seen[1:-1]) if i == 0 or s != seen[i]]
    assert [s.split()[0] for s in body] == ["INSERT"]  # ON CONFLICT: no look-up first


async def test_a_failing_write_is_rolled_back_whole(
    traced: tuple[SqliteStore, Statements],
) -> None:
    store, statements = traced

    async def half_then_conflict(db: Conn) -> None:
        await db.execute("INSERT INTO kv_store (key, value, updated_at) VALUES ('half', 'x', 1)")
        # No thread 999: a foreign key the database refuses.
        await db.execute(
            "INSERT INTO messages (thread_id, direction, created_at, updated_at)"
            " VALUES (999, 'inbound', 1, 1)"
        )

    mark = len(statements.seen)
    with pytest.raises(ConflictError):
        await store._write_op(half_then_conflict)
    assert statements.since(mark)[-1] == "ROLLBACK"
    assert await store.kv_get("half") is None
    await store.kv_set("after", "ok")  # the connection is outside any transaction again
    assert await store.kv_get("after") == "ok"


async def test_an_operation_that_awaits_anything_else_is_refused_and_rolled_back(
    sqlite_store: SqliteStore,
) -> None:
    async def waits(db: Conn) -> None:
        await db.execute("INSERT INTO kv_store (key, value, updated_at) VALUES ('w', 'x', 1)")
        await asyncio.sleep(0)  # cannot run on aiosqlite's thread

    with pytest.raises(StoreError, match="awaited something other than its statements"):
        await sqlite_store._write_op(waits)
    assert await sqlite_store.kv_get("w") is None


async def test_a_write_whose_caller_is_cancelled_is_rolled_back_and_ends_its_transaction(
    db_path: Path, clock: FakeClock
) -> None:
    inside = threading.Event()
    release = threading.Event()

    def on_statement(sql: str) -> None:
        if "'cancelled-key'" in sql:
            inside.set()
            release.wait(10)  # hold aiosqlite's thread inside the transaction

    # run_on_loop=False: every operation on aiosqlite's thread, as when a lock is held elsewhere.
    async with SqliteStore(
        db_path, clock=clock, on_statement=on_statement, run_on_loop=False
    ) as store:
        writing = asyncio.create_task(store.kv_set("cancelled-key", "v"))
        assert await asyncio.to_thread(inside.wait, 10)
        writing.cancel()  # while its transaction is open on aiosqlite's thread
        with pytest.raises(asyncio.CancelledError):
            await writing  # the caller is told it is gone before the thread goes on
        release.set()
        # Not committed (nobody waits for it any more), and no transaction left open.
        assert await store.kv_get("cancelled-key") is None
        await store.kv_set("next", "v2")
        assert await store.kv_get("next") == "v2"
    with sqlite3.connect(db_path) as outside:
        assert outside.execute("SELECT value FROM kv_store WHERE key = 'next'").fetchone() == (
            "v2",
        )


async def test_webhooks_stored_together_share_one_run_and_one_commit(
    traced: tuple[SqliteStore, Statements], db_path: Path
) -> None:
    store, statements = traced
    before, mark = _runs(store), len(statements.seen)
    # Keys w0..w19, and w5 again: the repeat is refused alone, the others are all stored.
    stored = await asyncio.gather(
        *(_inbound(store, f"webhook:w{n}") for n in range(20)), _inbound(store, "webhook:w5")
    )
    assert stored == [True] * 20 + [False]
    assert _runs(store) - before < 21
    seen = statements.since(mark)
    assert seen.count("COMMIT") == _runs(store) - before
    # Every caller had its answer only once its write was committed: all 20 are on disk.
    with sqlite3.connect(db_path) as outside:
        assert outside.execute("SELECT COUNT(*) FROM inbound_events").fetchone() == (20,)


async def test_a_grouped_write_that_fails_rolls_back_only_itself(
    sqlite_store: SqliteStore,
) -> None:
    def put(key: str, *, fail: bool) -> Callable[[Conn], Awaitable[str]]:
        async def operation(db: Conn) -> str:
            await db.execute(
                "INSERT INTO kv_store (key, value, updated_at) VALUES (?, 'x', 1)", (key,)
            )
            if fail:
                raise ValueError(key)
            return key

        return operation

    outcomes = await asyncio.gather(
        *(sqlite_store._grouped_write_op(put(f"g{n}", fail=n == 2)) for n in range(5)),
        return_exceptions=True,
    )
    assert outcomes[:2] == ["g0", "g1"] and outcomes[3:] == ["g3", "g4"]
    assert isinstance(outcomes[2], ValueError)
    assert [await sqlite_store.kv_get(f"g{n}") for n in range(5)] == ["x", "x", None, "x", "x"]


async def test_concurrent_webhooks_are_each_stored_once(store: Store) -> None:
    """On either backend: webhooks arriving together, some of them repeats."""
    keys = [f"webhook:w{n % 15}" for n in range(40)]
    stored = await asyncio.gather(*(_inbound(store, key) for key in keys))
    assert sum(stored) == 15
    assert await store.count_inbound() == 15
