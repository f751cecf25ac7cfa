"""Opening: URL parsing, pragmas, migrations, lifecycle, several stores on one database.

URL parsing, file handling and pragmas are SQLite's; the rest runs on both backends.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from storage import (
    LATEST_VERSION,
    MIGRATIONS,
    ConflictError,
    MessageDirection,
    Migration,
    SqliteStore,
    Store,
    StoreError,
    open_store,
    parse_sqlite_url,
)
from storage._migrations import check_migrations
from tests.storage._support import FOREIGN_KEY, Backend, FakeClock, enqueue, files_in, query

# ---------------------------------------------------------------- URL parsing


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///data/bridge.db", "data/bridge.db"),
        ("sqlite:///bridge.db", "bridge.db"),
        ("sqlite:////var/lib/ghl/bridge.db", "/var/lib/ghl/bridge.db"),
        ("sqlite:///:memory:", ":memory:"),
        ("sqlite+aiosqlite:///data/bridge.db", "data/bridge.db"),
    ],
)
def test_parse_sqlite_url(url: str, path: str) -> None:
    assert parse_sqlite_url(url) == path


@pytest.mark.parametrize(
    "url",
    [
        "",
        "bridge.db",
        "postgresql://user@host/db",
        "sqlite:/bridge.db",
        "sqlite://bridge.db",
        "sqlite://",
        "sqlite:///",
        "sqlite:///data/",
        "sqlite:///bridge.db?mode=ro",
        "SQLITE:///bridge.db",
    ],
)
def test_parse_sqlite_url_rejects(url: str) -> None:
    with pytest.raises(ValueError, match="sqlite:///"):
        parse_sqlite_url(url)


async def test_open_store_relative_url_creates_parent_dirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = await open_store("sqlite:///data/nested/bridge.db")
    try:
        assert await store.schema_version() == LATEST_VERSION
    finally:
        await store.close()
    assert (tmp_path / "data" / "nested" / "bridge.db").is_file()


async def test_open_store_absolute_url(tmp_path: Path) -> None:
    target = tmp_path / "abs" / "bridge.db"
    url = f"sqlite:///{target}"  # tmp_path is absolute, so this has four slashes
    assert url.startswith("sqlite:////")
    store = await open_store(url)
    await store.kv_set("k", "v")
    await store.close()
    assert query(target, "SELECT value FROM kv_store WHERE key = 'k'") == [("v",)]


async def test_open_store_memory() -> None:
    store = await open_store("sqlite:///:memory:")
    try:
        await store.kv_set("cursor", "42")
        assert await store.kv_get("cursor") == "42"
        assert await store.schema_version() == LATEST_VERSION
    finally:
        await store.close()


async def test_open_store_bad_url_raises_before_touching_disk(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unsupported database URL scheme 'mysql'"):
        await open_store(f"mysql://{tmp_path}/x")
    assert files_in(tmp_path) == []


async def test_open_on_a_directory_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StoreError, match="cannot open database"):
        await SqliteStore(tmp_path / "dir.db").open()


# ---------------------------------------------------------------- pragmas


async def test_pragmas_are_set(sqlite_store: SqliteStore, db_path: Path) -> None:
    # foreign_keys, synchronous and busy_timeout are per connection: ask the store's own one.
    db = sqlite_store._connection().raw
    values = {}
    for pragma in ("journal_mode", "foreign_keys", "synchronous", "busy_timeout"):
        async with db.execute(f"PRAGMA {pragma}") as cursor:
            row = await cursor.fetchone()
            assert row is not None
            values[pragma] = row[0]
    assert values == {
        "journal_mode": "wal",
        "foreign_keys": 1,
        "synchronous": 1,  # NORMAL
        "busy_timeout": 5000,
    }
    # WAL is a property of the file: an outside connection sees it too.
    assert query(db_path, "PRAGMA journal_mode") == [("wal",)]


async def test_foreign_keys_are_enforced(store: Store) -> None:
    with pytest.raises(ConflictError, match=FOREIGN_KEY):
        await store.record_message(direction=MessageDirection.INBOUND, thread_id=999)


# ---------------------------------------------------------------- migrations


async def test_migrations_from_empty(store: Store, backend: Backend, clock: FakeClock) -> None:
    assert await store.schema_version() == LATEST_VERSION
    assert backend.query("SELECT version, applied_at FROM schema_migrations ORDER BY version") == [
        (m.version, clock.now) for m in MIGRATIONS
    ]
    assert {
        "slack_threads",
        "messages",
        "outbox",
        "processed_deliveries",
        "kv_store",
        "inbound_events",
        "compose_intents",
    } <= backend.table_names()


async def test_reopen_is_a_noop_and_keeps_data(backend: Backend, clock: FakeClock) -> None:
    async with backend.new_store(clock) as first:
        await first.kv_set("cursor", "abc")
        await enqueue(first, "key-1")
    before = backend.query("SELECT * FROM schema_migrations ORDER BY version")
    clock.advance(60)
    async with backend.new_store(clock) as second:
        assert await second.schema_version() == LATEST_VERSION
        assert await second.kv_get("cursor") == "abc"
        assert (await second.get_outbox_by_key("key-1")) is not None
    # Not re-applied: same rows, same applied_at.
    assert backend.query("SELECT * FROM schema_migrations ORDER BY version") == before


async def test_new_migration_applies_on_reopen_and_keeps_data(
    backend: Backend, clock: FakeClock
) -> None:
    async with backend.new_store(clock) as old:
        await old.kv_set("cursor", "abc")
    extra = Migration(
        version=LATEST_VERSION + 1,
        description="test extra table",
        statements=("CREATE TABLE extra (x INTEGER)", "INSERT INTO extra (x) VALUES (7)"),
    )
    newer = (*MIGRATIONS, extra)
    async with backend.new_store(clock, migrations=newer) as new:
        assert await new.schema_version() == LATEST_VERSION + 1
        assert await new.kv_get("cursor") == "abc"
    async with backend.new_store(clock, migrations=newer) as again:
        assert await again.schema_version() == LATEST_VERSION + 1
    assert backend.query("SELECT x FROM extra") == [(7,)]  # ran exactly once


async def test_failing_migration_rolls_back_entirely(backend: Backend, clock: FakeClock) -> None:
    broken = Migration(
        version=LATEST_VERSION + 1,
        description="broken",
        statements=("CREATE TABLE half_done (x INTEGER)", "THIS IS NOT SQL"),
    )
    with pytest.raises(StoreError, match="syntax error"):
        await backend.new_store(clock, migrations=(*MIGRATIONS, broken)).open()
    assert "half_done" not in backend.table_names()
    assert backend.query("SELECT MAX(version) FROM schema_migrations") == [(LATEST_VERSION,)]


async def test_database_newer_than_code_is_refused(backend: Backend, clock: FakeClock) -> None:
    extra = Migration(LATEST_VERSION + 1, "future", ("CREATE TABLE future (x INTEGER)",))
    async with backend.new_store(clock, migrations=(*MIGRATIONS, extra)):
        pass
    older = backend.new_store(clock)
    newer_than = rf"schema version {LATEST_VERSION + 1}, newer than this program knows"
    with pytest.raises(StoreError, match=rf"{newer_than} \({LATEST_VERSION}\)"):
        await older.open()
    with pytest.raises(StoreError, match="not open"):
        await older.ping()  # the refused store is left closed
    assert backend.query("SELECT COUNT(*) FROM future") == [(0,)]  # and the data untouched


def test_migration_versions_must_be_consecutive(backend: Backend, clock: FakeClock) -> None:
    step = MIGRATIONS[0]
    check_migrations(MIGRATIONS)
    with pytest.raises(RuntimeError, match=r"1\.\.n"):
        check_migrations((step, Migration(3, "gap", ())))
    with pytest.raises(RuntimeError, match=r"1\.\.n"):
        backend.new_store(clock, migrations=(Migration(2, "out of order", ()), step))


# ---------------------------------------------------------------- lifecycle


async def test_ping_close_and_use_after_close(backend: Backend, clock: FakeClock) -> None:
    store = backend.new_store(clock)
    with pytest.raises(StoreError, match="not open"):
        await store.ping()
    await store.open()
    await store.open()  # second open is harmless
    await store.ping()
    await store.close()
    await store.close()  # and so is a second close
    with pytest.raises(StoreError, match="not open"):
        await store.ping()
    with pytest.raises(StoreError, match="not open"):
        await store.kv_set("k", "v")


async def test_ping_fails_when_schema_is_gone(store: Store, backend: Backend) -> None:
    await store.ping()
    backend.query("DROP TABLE schema_migrations")
    with pytest.raises(StoreError):
        await store.ping()


async def test_both_stores_satisfy_the_store_protocol(backend: Backend, clock: FakeClock) -> None:
    # mypy checks the structural match of both SqliteStore and PostgresStore here.
    typed: Store = backend.new_store(clock)
    async with typed:
        await typed.ping()
    # Only PostgreSQL is shared by instances (they then skip start-up recovery of claims).
    assert typed.shared is (backend.name == "postgres")


async def test_two_stores_on_one_database_see_each_others_commits(
    backend: Backend, clock: FakeClock
) -> None:
    async with (
        backend.new_store(clock) as first,
        backend.new_store(clock) as second,
    ):
        entry = await enqueue(first, "from-first")
        seen = await second.get_outbox_by_key("from-first")
        assert seen is not None and seen.id == entry.id
        await second.kv_set("cursor", "from-second")
        assert await first.kv_get("cursor") == "from-second"
        # The same key through the other store is still one entry.
        again, created = await second.enqueue(
            idempotency_key="from-first",
            team_id="T1",
            channel_id="C1",
            slack_user_id="U1",
            location_id="loc-1",
            contact_id="contact-a",
            message_type="SMS",
            payload={},
        )
        assert (again.id, created) == (entry.id, False)
    assert backend.count_rows("outbox") == 1
