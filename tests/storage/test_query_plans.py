"""Every hot query is an index seek, whatever the size of the history.

The statements are the ones the store really runs: a store opened with `on_statement`
records each statement as SQLite executes it (values filled in), while each hot method is
called once on a database holding a little of everything. Each statement's
`EXPLAIN QUERY PLAN` is then read, and the test fails on:

- a SCAN of a table (reading every row);
- a SEARCH that uses no index;
- on the queues (outbox, inbound_events), whose finished rows pile up for ever, a SEARCH
  that does not pin `state` (or a whole unique key): it would read the history of a contact
  or a conversation, as claim_next once did (12 ms at 100,000 finished sends, under the
  store's lock);
- a sort in a temporary B-tree, whose input could be as large as the history.

Exceptions are listed in EXPECTED with the reason each is bounded.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

from storage import MessageDirection, SqliteStore
from tests.storage._support import FakeClock, enqueue

TEAM, CHANNEL, LOCATION, CONTACT, CONVERSATION = "T1", "C1", "loc-1", "contact-1", "conv-1"
QUEUES = frozenset({"outbox", "inbound_events"})

# (hot query, plan line) pairs that are bounded though the rules above would flag them.
EXPECTED = {
    # MAX(received_at) for one source reads one entry: the last of (source, received_at).
    ("last_inbound_at", "SEARCH inbound_events USING COVERING INDEX inbound_events_source"),
    # A contact or a conversation has at most one thread per channel: a handful to sort.
    ("find_threads_for_conversation", "USE TEMP B-TREE FOR ORDER BY"),
    ("find_threads_for_contact", "USE TEMP B-TREE FOR ORDER BY"),
}

_ACCESS = re.compile(
    r"^(?P<kind>SCAN|SEARCH) (?P<name>\S+)"
    r"(?: USING (?:(?:COVERING )?INDEX (?P<index>\S+)|(?P<key>(?:INTEGER )?PRIMARY KEY)))?"
    r"(?: \((?P<constraint>[^)]*)\))?"
)
_NOT_RUN_PLANS = ("BEGIN", "COMMIT", "ROLLBACK", "PRAGMA")


class Statements:
    """What the store's connection executed, in order (called on aiosqlite's thread)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, sql: str) -> None:
        self.seen.append(sql)


async def _run_hot_queries(store: SqliteStore, statements: Statements) -> dict[str, list[str]]:
    """Call each hot method once, on data that makes it do its real work; its statements."""
    thread = await store.upsert_thread(
        team_id=TEAM,
        channel_id=CHANNEL,
        location_id=LOCATION,
        contact_id=CONTACT,
        thread_ts="1.000001",
        conversation_id=CONVERSATION,
    )
    await store.record_message(
        direction=MessageDirection.INBOUND,
        thread_id=thread.id,
        ghl_message_id="m-1",
        slack_channel_id=CHANNEL,
        slack_ts="1.000002",
    )
    for n in range(3):
        await enqueue(store, f"queued-{n}", location_id=LOCATION, contact_id=CONTACT)
    await enqueue(store, "other-contact", location_id=LOCATION, contact_id="contact-2")

    async def inbound(name: str) -> object:
        return await store.enqueue_inbound(
            source="webhook",
            event_type="InboundMessage",
            conversation_key=CONVERSATION,
            payload={"name": name},
            dedupe_keys=[f"webhook:{name}", f"message:{name}"],
            ttl_seconds=3600,
            sort_at=1_600_000_000.0,
        )

    for n in range(3):
        await inbound(f"event-{n}")
    await store.mark_processed("slack_event", "seen", ttl_seconds=3600)

    claimed: dict[str, int] = {}

    async def claim_next() -> None:
        entry = await store.claim_next()
        assert entry is not None
        claimed["outbox"] = entry.id

    async def claim_inbound() -> None:
        event = await store.claim_inbound()
        assert event is not None
        claimed["inbound"] = event.id

    hot: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("claim_next", claim_next),
        ("next_outbox_due_at", store.next_outbox_due_at),
        ("claim_inbound", claim_inbound),
        ("next_inbound_due_at", store.next_inbound_due_at),
        ("has_unsettled_send", lambda: store.has_unsettled_send(LOCATION, CONTACT)),
        ("enqueue", lambda: enqueue(store, "new-send", contact_id=CONTACT)),
        ("enqueue_inbound", lambda: inbound("new-event")),
        ("get_message_by_ghl_id", lambda: store.get_message_by_ghl_id("m-1")),
        ("get_message_by_slack", lambda: store.get_message_by_slack(CHANNEL, "1.000002")),
        ("get_thread_by_slack", lambda: store.get_thread_by_slack(TEAM, CHANNEL, "1.000001")),
        (
            "find_thread_for_contact",
            lambda: store.find_thread_for_contact(TEAM, CHANNEL, LOCATION, CONTACT),
        ),
        (
            "find_threads_for_conversation",
            lambda: store.find_threads_for_conversation(LOCATION, CONVERSATION),
        ),
        ("find_threads_for_contact", lambda: store.find_threads_for_contact(LOCATION, CONTACT)),
        ("get_outbox_by_key", lambda: store.get_outbox_by_key("queued-1")),
        ("mark_processed", lambda: store.mark_processed("slack_event", "new", ttl_seconds=60)),
        ("purge_expired", store.purge_expired),
        ("last_inbound_at", lambda: store.last_inbound_at("webhook")),
        # What else every send or inbound message runs.
        (
            "upsert_thread",
            lambda: store.upsert_thread(
                team_id=TEAM, channel_id=CHANNEL, location_id=LOCATION, contact_id=CONTACT
            ),
        ),
        (
            "mark_sent",
            lambda: store.mark_sent(
                claimed["outbox"], conversation_id=CONVERSATION, ghl_message_id="m-2"
            ),
        ),
        ("set_outbox_slack_ts", lambda: store.set_outbox_slack_ts(claimed["outbox"], "1.000003")),
        ("update_message_status", lambda: store.update_message_status("m-2", "delivered")),
        (
            "record_message",
            lambda: store.record_message(
                direction=MessageDirection.INBOUND, thread_id=thread.id, ghl_message_id="m-3"
            ),
        ),
        (
            "latest_message",
            lambda: store.latest_message(thread.id, direction=MessageDirection.OUTBOUND),
        ),
        ("finish_inbound", lambda: store.finish_inbound(claimed["inbound"])),
        # What every /metrics scrape reads.
        ("count_outbox_by_state", store.count_outbox_by_state),
        ("inbound_backlog", store.inbound_backlog),
    ]
    ran: dict[str, list[str]] = {}
    for name, call in hot:
        start = len(statements.seen)
        await call()
        ran[name] = [
            sql for sql in statements.seen[start:] if not sql.lstrip().startswith(_NOT_RUN_PLANS)
        ]
    return ran


def _indexes(conn: sqlite3.Connection) -> dict[str, tuple[str, bool, list[str]]]:
    """Index name -> (table, unique, columns)."""
    found = {}
    tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    for table in tables:
        for _seq, name, unique, _origin, _partial in conn.execute(
            "SELECT * FROM pragma_index_list(?)", (table,)
        ):
            columns = [
                row[2] for row in conn.execute("SELECT * FROM pragma_index_info(?)", (name,))
            ]
            found[name] = (table, bool(unique), columns)
    return found


def _problem(detail: str, indexes: dict[str, tuple[str, bool, list[str]]]) -> str | None:
    if detail.startswith("USE TEMP B-TREE"):
        return "sorts in a temporary B-tree"
    access = _ACCESS.match(detail)
    if access is None or re.fullmatch(r"SCAN (\d+ )?CONSTANT ROWS?", detail):
        # Subquery headers, and the rows of a VALUES list: their own lines are checked.
        return None
    if access["kind"] == "SCAN":
        return "reads every row of the table"
    if access["key"] is not None:
        return None  # the rowid, or the key of a WITHOUT ROWID table: one seek
    if access["index"] is None:
        return "searches without an index"
    table, unique, columns = indexes[access["index"]]
    pinned = set(re.findall(r"(\w+)=\?", access["constraint"] or ""))
    if table in QUEUES and "state" not in pinned and not (unique and set(columns) <= pinned):
        return f"reads {table} rows of every state (the whole history) for the key it seeks"
    return None


async def test_every_hot_query_is_an_index_seek(db_path: Path, clock: FakeClock) -> None:
    statements = Statements()
    async with SqliteStore(db_path, clock=clock, on_statement=statements) as store:
        ran = await _run_hot_queries(store, statements)
    conn = sqlite3.connect(db_path)
    try:
        indexes = _indexes(conn)
        problems = []
        for name, sqls in ran.items():
            assert sqls, f"{name} ran no statement: the test does not exercise it"
            for sql in sqls:
                for _id, _parent, _unused, detail in conn.execute(f"EXPLAIN QUERY PLAN {sql}"):
                    why = _problem(detail, indexes)
                    expected = any(
                        name == hot and detail.startswith(line) for hot, line in EXPECTED
                    )
                    if why is not None and not expected:
                        statement = " ".join(sql.split())[:160]
                        problems.append(f"{name}: {detail!r}: {why}\n    in: {statement}")
    finally:
        conn.close()
    assert not problems, "\n".join(problems)


async def test_the_statements_are_recorded_as_sqlite_runs_them(
    db_path: Path, clock: FakeClock
) -> None:
    statements = Statements()
    async with SqliteStore(db_path, clock=clock, on_statement=statements) as store:
        await store.get_outbox_by_key("it's")
    assert "SELECT * FROM outbox WHERE idempotency_key = 'it''s'" in statements.seen
