"""`ghl-bridge db copy`: every row of a bridge database into an empty one, on real databases.

SQLite files are filled through the store's own API; PostgreSQL is the test server, a fresh
schema per test (the `postgres_url` fixture of tests/conftest.py).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from storage import (
    LATEST_VERSION,
    InboundState,
    MessageDirection,
    OutboxState,
    PostgresStore,
    SlackInstallation,
    SqliteStore,
    StoreError,
    copy_database,
    create_store,
)
from storage._copy import COPIED_TABLES, CopyRefusedError
from storage._copy_ends import _reason
from tests import _postgres
from tests.storage._support import FakeClock, enqueue, query

GHL_BRIDGE = Path(sys.executable).parent / "ghl-bridge"

# Things the data holds that must never reach the output: a body, a phone number, a token.
BODY = "Hi Ann, your table for two is booked"
PHONE = "+1 555-010-7788"
TOKEN = "xoxb-not-a-real-token-7788"

Dump = dict[str, list[tuple[tuple[str, Any], ...]]]


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture
def clock() -> FakeClock:
    # Fractions of a second, so a float that lost precision on the way would show.
    return FakeClock(1_700_000_000.123456)


@pytest.fixture
def second_postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """Another fresh schema, for copies between two PostgreSQL databases."""
    with _postgres.server(request.config).fresh_schema() as (_name, url):
        yield url


async def fill(store: SqliteStore, clock: FakeClock) -> None:
    """A bridge's life in brief: threads, sends in every state, messages, events, marks,
    key/value entries, compose intents, rate budgets, locations, companies, channel links,
    Slack installations and OAuth states."""
    threads = []
    for n in range(3):
        threads.append(
            await store.upsert_thread(
                team_id="T1",
                channel_id="C1",
                location_id="loc-1",
                contact_id=f"contact-{n}",
                thread_ts=f"1700000000.00010{n}",
                conversation_id=f"conv-{n}",
                channel_type="SMS",
                contact_label=f"Ann {PHONE}",
            )
        )
        clock.advance(0.25)
    await store.upsert_thread(  # reserved: its Slack root is not posted yet
        team_id="T1", channel_id="C2", location_id="loc-1", contact_id="contact-9"
    )

    async def claimed(key: str, thread_id: int) -> int:
        entry = await enqueue(store, key, thread_id=thread_id, contact_id=f"c-{key}")
        taken = await store.claim_next()
        assert taken is not None and taken.id == entry.id
        clock.advance(1.5)
        return entry.id

    sent = await claimed("out-sent", threads[0].id)
    await store.mark_sent(
        sent,
        conversation_id="conv-0",
        ghl_message_id="ghl-out-1",
        ghl_message_ids=["ghl-out-1", "ghl-out-1b"],
    )
    await store.mark_failed(await claimed("out-failed", threads[1].id), "422 invalid number")
    await store.mark_unknown(await claimed("out-unknown", threads[1].id), "timed out")
    await store.retry_later(
        await claimed("out-retry", threads[2].id), next_attempt_at=clock() + 60, error="429"
    )
    await claimed("out-sending", threads[2].id)
    cancelled = await enqueue(store, "out-cancelled", contact_id="c-cancelled")
    await store.mark_cancelled(cancelled.id)
    pending = await enqueue(store, "out-pending", thread_id=threads[0].id, slack_ts="1700.5")
    # A send with files, one uploaded before the copy (its URL must not be uploaded again).
    await store.record_outbox_upload(pending.id, "F0PHOTO", "https://files.example/1/photo.jpg")

    await store.record_message(
        direction=MessageDirection.OUTBOUND,
        thread_id=threads[0].id,
        ghl_message_id="ghl-out-1",
        message_type="SMS",
        status="delivered",
        slack_channel_id="C1",
        slack_ts="1700000001.000200",
        slack_user_id="U1",
        outbox_id=sent,
    )
    for n in range(4):
        clock.advance(0.5)
        await store.record_message(
            direction=MessageDirection.INBOUND,
            thread_id=threads[n % 3].id,
            ghl_message_id=f"ghl-in-{n}",
            message_type="SMS",
            slack_channel_id="C1",
            slack_ts=f"1700000002.00030{n}",
        )
    await store.record_message(direction=MessageDirection.OUTBOUND, outbox_id=pending.id)

    for n, fate in enumerate(("done", "failed", "processing", "pending")):
        event = await store.enqueue_inbound(
            source="ghl_webhook",
            event_type="InboundMessage",
            conversation_key=f"conv-{n}",
            payload={"body": BODY, "phone": PHONE},
            dedupe_keys=[f"webhook:{n}"],
            ttl_seconds=3600,
            sort_at=clock() - 10 + n,
        )
        assert event is not None
        if fate != "pending":
            taken_event = await store.claim_inbound()
            assert taken_event is not None and taken_event.id == event.id
            if fate == "done":
                await store.finish_inbound(event.id)
            elif fate == "failed":
                await store.fail_inbound(event.id, "no such contact")
        clock.advance(0.75)

    assert await store.mark_processed("slack_event", "Ev1", ttl_seconds=600)
    assert await store.mark_processed("ghl_message", "m-1", ttl_seconds=86_400)
    await store.kv_set("poll:cursor:loc-1", "2024-05-01T10:00:00Z")
    await store.kv_set("installation:T1", TOKEN)
    for key in ("intent-open", "intent-done"):
        assert await store.open_intent(
            idempotency_key=key,
            kind="compose",
            team_id="T1",
            channel_id="C1",
            slack_user_id="U1",
            payload={"message": BODY, "to": PHONE},
            response_url="https://hooks.slack.invalid/actions/1",
        )
    assert await store.close_intent("intent-done", "sent")
    assert (await store.take_window("ghl:loc-1", limit=10, period=10.5)).granted
    assert (await store.take_budget("slack:T1:C2", rate=1, burst=4)).granted
    await store.hold_budget("slack:T1:C1", seconds=30, rate=1, burst=1)
    # Tenancy: an agency, its locations (one lost and told), channel links, a refresh lease.
    await store.save_company(
        "co-1", name="Agency", access_token=TOKEN, refresh_token=TOKEN, expires_at=clock() + 86_400
    )
    await store.save_location("loc-1", auth="company", company_id="co-1", access_token=TOKEN)
    await store.save_location(
        "loc-2", auth="location", name="Uptown", access_token=TOKEN, refresh_token=TOKEN
    )
    await store.save_location("loc-pit", auth="pit", name="Main")
    await store.set_location_inbox("loc-1", "T1", "C2")
    await store.note_location_seen("loc-1", webhook_at=clock(), poll_at=clock() - 1)
    assert await store.begin_token_refresh("location", "loc-1", seen_version=1, lease_seconds=60)
    assert await store.disconnect_location("loc-2", "invalid_grant")
    assert await store.claim_disconnect_notice("loc-2")
    await store.link_channel("T1", "C1", "loc-1", linked_by="U1")
    await store.link_channel("T1", "C3", "loc-2", linked_by="U2")
    # Slack installations: a workspace with two installers, an org-wide bot under a refresh
    # lease, and OAuth states.
    await store.save_slack_installation(
        SlackInstallation(
            enterprise_id=None,
            team_id="T1",
            installed_at=clock(),
            bot_id="B1",
            bot_user_id="UBOT",
            bot_scopes=("chat:write",),
            bot_token=TOKEN,
            bot_refresh_token=TOKEN,
            bot_token_expires_at=clock() + 43_200,
            user_id="U1",
            user_token=TOKEN,
            custom_values_json='{"plan": "pro"}',
        )
    )
    await store.save_slack_installation(
        SlackInstallation(enterprise_id=None, team_id="T1", installed_at=clock(), user_id="U2")
    )
    await store.save_slack_bot(
        SlackInstallation(
            enterprise_id="E1",
            team_id=None,
            is_enterprise_install=True,
            installed_at=clock(),
            bot_id="B2",
            bot_user_id="UBOT2",
            bot_token=TOKEN,
        )
    )
    assert await store.begin_slack_token_refresh("E1", None, seen_version=1, lease_seconds=60)
    await store.issue_oauth_state("state-1", clock() + 600)
    await store.issue_oauth_state("state-2", clock() - 1)


async def filled_sqlite(path: Path, clock: FakeClock) -> str:
    async with SqliteStore(path, clock=clock) as store:
        await fill(store, clock)
    # An earlier message shown in a thread ("Earlier messages").
    query(
        path,
        "INSERT INTO thread_history (thread_id, ghl_message_id, shown_at)"
        " SELECT MIN(id), 'm-history-1', 5 FROM slack_threads",
    )
    return sqlite_url(path)


def _rows(records: list[Any]) -> list[tuple[tuple[str, Any], ...]]:
    # Column order and row order may differ between backends; names and values may not.
    return sorted((tuple(sorted(dict(r).items())) for r in records), key=repr)


async def dump(url: str) -> Dump:
    """Every row of every copied table, read directly (not through the store)."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        conn.row_factory = sqlite3.Row
        try:
            return {
                table: _rows(conn.execute(f"SELECT * FROM {table}").fetchall())  # noqa: S608 - a test constant
                for table in COPIED_TABLES
            }
        finally:
            conn.close()
    pg = await asyncpg.connect(url)
    try:
        return {
            table: _rows(await pg.fetch(f"SELECT * FROM {table}"))  # noqa: S608 - a test constant
            for table in COPIED_TABLES
        }
    finally:
        await pg.close()


def empty_dump() -> Dump:
    return {table: [] for table in COPIED_TABLES}


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "GHL_"))}
    return subprocess.run(  # noqa: S603 - the installed entry point of this project
        [str(GHL_BRIDGE), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# ------------------------------------------------------------------------- what is copied


async def test_every_table_the_migrations_create_is_copied_parents_first(
    tmp_path: Path, postgres_url: str
) -> None:
    fresh = tmp_path / "fresh.db"
    async with SqliteStore(fresh):
        pass
    async with create_store(postgres_url):
        pass
    sqlite_tables = {
        name
        for (name,) in query(
            fresh, "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'"
        )
    }
    pg = await asyncpg.connect(postgres_url)
    try:
        pg_tables = {
            row[0]
            for row in await pg.fetch(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = current_schema()"
            )
        }
    finally:
        await pg.close()

    assert len(set(COPIED_TABLES)) == len(COPIED_TABLES)
    assert sqlite_tables - {"schema_migrations"} == set(COPIED_TABLES)
    assert pg_tables - {"schema_migrations"} == set(COPIED_TABLES)
    for position, table in enumerate(COPIED_TABLES):
        parents = {
            row[2] for row in query(fresh, "SELECT * FROM pragma_foreign_key_list(?)", (table,))
        }
        assert parents <= set(COPIED_TABLES[:position]), f"{table} is copied before {parents}"


# ------------------------------------------------------------------------- the copy itself


async def test_sqlite_to_postgresql_keeps_every_row_and_id(
    tmp_path: Path, postgres_url: str, clock: FakeClock
) -> None:
    source = await filled_sqlite(tmp_path / "bridge.db", clock)
    before = await dump(source)
    reported: list[tuple[str, int]] = []

    async def on_table(table: str, rows: int) -> None:
        reported.append((table, rows))

    counts = await copy_database(source, postgres_url, batch_size=3, on_table=on_table)

    assert counts == {table: len(rows) for table, rows in before.items()}
    assert reported == list(counts.items())
    assert all(counts.values()), counts  # every table had rows to copy
    assert await dump(postgres_url) == before
    assert await dump(source) == before  # the source is only read

    async with (
        SqliteStore(tmp_path / "bridge.db", clock=clock) as old,
        PostgresStore(postgres_url, clock=clock) as new,
    ):
        assert await new.schema_version() == LATEST_VERSION
        for thread_id in range(1, 5):
            assert await new.get_thread(thread_id) == await old.get_thread(thread_id)
        for message_id in range(1, 7):
            assert await new.get_message(message_id) == await old.get_message(message_id)
        assert await new.list_outbox(limit=100) == await old.list_outbox(limit=100)
        # Each send's status history once: the target's triggers' rows gave way to the source's.
        assert await new.audit_rows(0) == await old.audit_rows(0)
        assert all(row.history for row in await new.audit_rows(0))
        assert await new.count_outbox_by_state() == await old.count_outbox_by_state()
        for state in InboundState:
            assert await new.count_inbound(state) == await old.count_inbound(state) == 1
        for key in ("intent-open", "intent-done"):
            assert await new.get_intent(key) == await old.get_intent(key)
        assert await new.kv_get("poll:cursor:loc-1") == "2024-05-01T10:00:00Z"
        # Dedupe marks came along: a delivery seen before the move is still a duplicate.
        assert not await new.mark_processed("slack_event", "Ev1", ttl_seconds=600)
        assert (
            await new.enqueue_inbound(
                source="ghl_webhook",
                event_type="InboundMessage",
                conversation_key="conv-0",
                payload={},
                dedupe_keys=["webhook:0"],
                ttl_seconds=3600,
            )
            is None
        )

        # New rows get ids past the copied ones, in every table with generated ids.
        entry, created = await new.enqueue(
            idempotency_key="after-move",
            team_id="T1",
            channel_id="C1",
            slack_user_id="U1",
            location_id="loc-1",
            contact_id="contact-new",
            message_type="SMS",
            payload={"message": "hello"},
        )
        assert created and entry.id == counts["outbox"] + 1
        thread = await new.upsert_thread(
            team_id="T1", channel_id="C1", location_id="loc-1", contact_id="contact-new"
        )
        assert thread.id == counts["slack_threads"] + 1
        message, _ = await new.record_message(
            direction=MessageDirection.OUTBOUND, outbox_id=entry.id, thread_id=thread.id
        )
        assert message.id == counts["messages"] + 1
        event = await new.enqueue_inbound(
            source="ghl_webhook",
            event_type="InboundMessage",
            conversation_key="conv-new",
            payload={},
            dedupe_keys=["webhook:new"],
            ttl_seconds=3600,
        )
        assert event is not None and event.id == counts["inbound_events"] + 1
        assert await new.open_intent(
            idempotency_key="intent-new",
            kind="compose",
            team_id="T1",
            channel_id="C1",
            slack_user_id="U1",
            payload={},
        )
        # And the copied sends go on where they were: the pending one is due.
        claimed = await new.claim_next()
        assert claimed is not None and claimed.idempotency_key == "out-pending"
        sending = await new.get_outbox_by_key("out-sending")
        assert sending is not None and sending.state == OutboxState.SENDING


async def test_postgresql_to_sqlite_and_sqlite_to_sqlite_give_the_same_rows(
    tmp_path: Path, postgres_url: str, clock: FakeClock
) -> None:
    source = await filled_sqlite(tmp_path / "bridge.db", clock)
    before = await dump(source)
    await copy_database(source, postgres_url, batch_size=2)

    back = sqlite_url(tmp_path / "back" / "from-postgres.db")
    sideways = sqlite_url(tmp_path / "copy.db")
    assert await copy_database(postgres_url, back, batch_size=2) == await copy_database(
        source, sideways, batch_size=1000
    )

    assert await dump(back) == before
    assert await dump(sideways) == before
    async with SqliteStore(tmp_path / "back" / "from-postgres.db", clock=clock) as store:
        assert await store.schema_version() == LATEST_VERSION
        entry = await enqueue(store, "after-move")
        assert entry.id == len(before["outbox"]) + 1


async def test_postgresql_to_postgresql(
    tmp_path: Path, postgres_url: str, second_postgres_url: str, clock: FakeClock
) -> None:
    source = await filled_sqlite(tmp_path / "bridge.db", clock)
    before = await dump(source)
    await copy_database(source, postgres_url)

    await copy_database(postgres_url, second_postgres_url, batch_size=4)

    assert await dump(second_postgres_url) == before


@pytest.mark.parametrize("source_kind", ["sqlite", "postgresql"])
async def test_writes_to_the_source_during_the_copy_are_not_in_it(
    tmp_path: Path, postgres_url: str, clock: FakeClock, source_kind: str
) -> None:
    """A bridge keeps running on the source: the copy is the source as it was at the start."""
    filled = await filled_sqlite(tmp_path / "bridge.db", clock)
    if source_kind == "sqlite":
        source, target = filled, postgres_url
    else:
        await copy_database(filled, postgres_url)
        source, target = postgres_url, sqlite_url(tmp_path / "target.db")
    before = await dump(source)

    async with create_store(source, clock=clock) as running:

        async def bridge_writes_meanwhile(table: str, rows: int) -> None:
            if table != "slack_threads":
                return
            # A new conversation, end to end, and changes to rows not copied yet.
            thread = await running.upsert_thread(
                team_id="T1", channel_id="C1", location_id="loc-1", contact_id="late"
            )
            entry = await enqueue(running, "late-send", thread_id=thread.id, contact_id="late")
            await running.record_message(
                direction=MessageDirection.OUTBOUND, thread_id=thread.id, outbox_id=entry.id
            )
            pending = await running.get_outbox_by_key("out-pending")
            assert pending is not None
            await running.mark_cancelled(pending.id)
            await running.kv_set("poll:cursor:loc-1", "later")
            assert await running.mark_processed("slack_event", "Ev-late", ttl_seconds=600)

        await copy_database(source, target, on_table=bridge_writes_meanwhile)

    assert await dump(source) != before  # the bridge's writes did land in the source
    assert await dump(target) == before


# ------------------------------------------------------------------------- refusals, failures


async def test_a_copy_failing_half_way_leaves_the_target_empty(
    tmp_path: Path, postgres_url: str, clock: FakeClock
) -> None:
    path = tmp_path / "bridge.db"
    source = await filled_sqlite(path, clock)
    # A message whose thread is gone, as a file written with foreign keys off could hold:
    # the target refuses it, after slack_threads, thread_history, outbox, outbox_files and
    # some messages are written.
    query(
        path,
        "INSERT INTO messages (id, thread_id, direction, created_at, updated_at)"
        " VALUES (99, 999, 'inbound', 1, 1)",
    )
    sqlite_target = sqlite_url(tmp_path / "target.db")
    for target in (postgres_url, sqlite_target):
        written: list[str] = []

        async def on_table(table: str, rows: int, written: list[str] = written) -> None:
            written.append(table)

        with pytest.raises(StoreError, match="copying messages failed"):
            await copy_database(source, target, batch_size=2, on_table=on_table)

        assert written == ["slack_threads", "thread_history", "outbox", "outbox_files"]
        assert await dump(target) == empty_dump()


async def test_a_non_empty_target_is_refused_and_left_as_it_was(
    tmp_path: Path, postgres_url: str, clock: FakeClock
) -> None:
    source = await filled_sqlite(tmp_path / "bridge.db", clock)
    async with create_store(postgres_url) as used:
        await used.kv_set("health:last_write", "1")
    before = await dump(postgres_url)

    with pytest.raises(CopyRefusedError, match=r"not empty \(rows in kv_store\)"):
        await copy_database(source, postgres_url)

    assert await dump(postgres_url) == before


async def test_the_same_database_is_refused_however_its_url_is_spelled(
    tmp_path: Path, postgres_url: str, clock: FakeClock
) -> None:
    path = tmp_path / "bridge.db"
    await filled_sqlite(path, clock)
    os.symlink(path, tmp_path / "link.db")
    with pytest.raises(CopyRefusedError, match="same database"):
        await copy_database(sqlite_url(path), sqlite_url(tmp_path / "link.db"))

    other_spelling = postgres_url.replace("postgresql://", "postgres://", 1).replace(":5432", "")
    assert other_spelling != postgres_url
    await copy_database(sqlite_url(path), postgres_url)
    with pytest.raises(CopyRefusedError, match="same database"):
        await copy_database(postgres_url, other_spelling)


async def test_unusable_urls_are_refused_and_create_nothing(
    tmp_path: Path, postgres_url: str
) -> None:
    missing = tmp_path / "missing.db"
    with pytest.raises(CopyRefusedError, match="does not exist"):
        await copy_database(sqlite_url(missing), postgres_url)
    assert not missing.exists()
    with pytest.raises(CopyRefusedError, match="in-memory"):
        await copy_database(postgres_url, "sqlite:///:memory:")
    with pytest.raises(CopyRefusedError, match="URL is not usable"):
        await copy_database(postgres_url, "mysql://db/bridge")
    no_schema = _postgres.with_search_path(postgres_url, "ghlt_no_such_schema")
    with pytest.raises(CopyRefusedError, match="no existing schema"):
        await copy_database(postgres_url, no_schema)


@pytest.mark.parametrize(
    "statement",
    [
        # class 22: the message itself quotes the value
        "SELECT '+1 555-010-7788'::double precision",
        # class 23: the DETAIL shows the whole failing row
        "INSERT INTO pg_temp.contacts VALUES ('+1 555-010-7788', -1)",
    ],
)
async def test_failure_reasons_never_quote_the_value(postgres_url: str, statement: str) -> None:
    """What PostgreSQL says of a row it refused holds the row; the copy's reason must not."""
    pg = await asyncpg.connect(postgres_url)
    try:
        await pg.execute("CREATE TEMP TABLE contacts (phone TEXT, visits INT CHECK (visits >= 0))")
        with pytest.raises(asyncpg.PostgresError) as raised:
            await pg.execute(statement)
    finally:
        await pg.close()
    assert PHONE in str(raised.value)  # what asyncpg reports

    reason = _reason(raised.value)

    assert PHONE not in reason
    assert reason.startswith(type(raised.value).__name__)


# ------------------------------------------------------------------------- the command line


def _secret_free(output: str) -> bool:
    return not any(secret in output for secret in (BODY, PHONE, TOKEN, "s3cret"))


def _with_password(url: str) -> str:
    # The test server trusts local connections, so any password is accepted and ignored.
    return url.replace("postgres@", "postgres:s3cret@", 1)


async def test_cli_copies_and_prints_rows_per_table(
    tmp_path: Path, postgres_url: str, clock: FakeClock
) -> None:
    source = await filled_sqlite(tmp_path / "bridge.db", clock)
    before = await dump(source)
    target = _with_password(postgres_url)

    result = run_cli("db", "copy", "--from", source, "--to", target, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert [line.split() for line in lines[: len(COPIED_TABLES)]] == [
        [table, str(len(before[table])), "rows"] for table in COPIED_TABLES
    ]
    assert "Stop the old instance before switching DATABASE_URL" in result.stdout
    assert "postgres:***@" in result.stdout
    assert _secret_free(result.stdout)
    assert await dump(postgres_url) == before


async def test_cli_refuses_a_non_empty_target_in_one_line_with_exit_2(
    tmp_path: Path, postgres_url: str, clock: FakeClock
) -> None:
    source = await filled_sqlite(tmp_path / "bridge.db", clock)
    await copy_database(source, postgres_url)
    async with SqliteStore(tmp_path / "bridge.db", clock=clock) as store:
        await enqueue(store, "written-after-the-first-copy")
    before = await dump(postgres_url)

    result = run_cli(
        "db", "copy", "--from", source, "--to", _with_password(postgres_url), cwd=tmp_path
    )

    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "not empty" in result.stderr
    assert "postgres:***@127.0.0.1" in result.stderr
    assert _secret_free(result.stderr)
    assert await dump(postgres_url) == before


async def test_cli_failure_is_one_line_without_the_row_and_exit_1(
    tmp_path: Path, postgres_url: str, clock: FakeClock
) -> None:
    path = tmp_path / "bridge.db"
    source = await filled_sqlite(path, clock)
    # SQLite keeps text in a REAL column; PostgreSQL cannot take it, and its error would
    # quote the value.
    query(path, "UPDATE messages SET created_at = ? WHERE id = 3", (f"{BODY} {PHONE}",))

    result = run_cli("db", "copy", "--from", source, "--to", postgres_url, cwd=tmp_path)

    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "copying messages failed" in result.stderr
    assert "Traceback" not in result.stderr
    assert _secret_free(result.stdout + result.stderr)
    assert await dump(postgres_url) == empty_dump()
