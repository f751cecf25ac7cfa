"""Opening: URL parsing, pragmas, migrations, lifecycle, several stores on one file."""

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
from tests.storage._support import FakeClock, count_rows, enqueue, files_in, query

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


async def test_pragmas_are_set(store: SqliteStore, db_path: Path) -> None:
    # foreign_keys, synchronous and busy_timeout are per connection: ask the store's own one.
    db = store._connection()
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


async def test_foreign_keys_are_enforced(store: SqliteStore) -> None:
    with pytest.raises(ConflictError, match="FOREIGN KEY"):
        await store.record_message(direction=MessageDirection.INBOUND, thread_id=999)


# ---------------------------------------------------------------- migrations


async def test_migrations_from_empty(store: SqliteStore, db_path: Path, clock: FakeClock) -> None:
    assert await store.schema_version() == LATEST_VERSION
    assert query(db_path, "SELECT version, applied_at FROM schema_migrations") == [
        (m.version, clock.now) for m in MIGRATIONS
    ]
    tables = {
        row[0] for row in query(db_path, "SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    assert {"slack_threads", "messages", "outbox", "processed_deliveries", "kv_store"} <= tables


async def test_reopen_is_a_noop_and_keeps_data(db_path: Path, clock: FakeClock) -> None:
    async with SqliteStore(db_path, clock=clock) as first:
        await first.kv_set("cursor", "abc")
        await enqueue(first, "key-1")
    before = query(db_path, "SELECT * FROM schema_migrations")
    clock.advance(60)
    async with SqliteStore(db_path, clock=clock) as second:
        assert await second.schema_version() == LATEST_VERSION
        assert await second.kv_get("cursor") == "abc"
        assert (await second.get_outbox_by_key("key-1")) is not None
    # Not re-applied: same rows, same applied_at.
    assert query(db_path, "SELECT * FROM schema_migrations") == before


async def test_new_migration_applies_on_reopen_and_keeps_data(
    db_path: Path, clock: FakeClock
) -> None:
    async with SqliteStore(db_path, clock=clock) as old:
        await old.kv_set("cursor", "abc")
    extra = Migration(
        version=LATEST_VERSION + 1,
        description="test extra table",
        statements=("CREATE TABLE extra (x INTEGER)", "INSERT INTO extra (x) VALUES (7)"),
    )
    newer = (*MIGRATIONS, extra)
    async with SqliteStore(db_path, clock=clock, migrations=newer) as new:
        assert await new.schema_version() == LATEST_VERSION + 1
        assert await new.kv_get("cursor") == "abc"
    async with SqliteStore(db_path, clock=clock, migrations=newer) as again:
        assert await again.schema_version() == LATEST_VERSION + 1
    assert query(db_path, "SELECT x FROM extra") == [(7,)]  # ran exactly once


async def test_failing_migration_rolls_back_entirely(db_path: Path) -> None:
    broken = Migration(
        version=LATEST_VERSION + 1,
        description="broken",
        statements=("CREATE TABLE half_done (x INTEGER)", "THIS IS NOT SQL"),
    )
    with pytest.raises(StoreError, match="syntax error"):
        await SqliteStore(db_path, migrations=(*MIGRATIONS, broken)).open()
    names = {row[0] for row in query(db_path, "SELECT name FROM sqlite_master")}
    assert "half_done" not in names
    assert query(db_path, "SELECT MAX(version) FROM schema_migrations") == [(LATEST_VERSION,)]


async def test_database_newer_than_code_is_refused(db_path: Path) -> None:
    extra = Migration(LATEST_VERSION + 1, "future", ("CREATE TABLE future (x INTEGER)",))
    async with SqliteStore(db_path, migrations=(*MIGRATIONS, extra)):
        pass
    with pytest.raises(StoreError, match="newer than this program"):
        await SqliteStore(db_path).open()


def test_migration_versions_must_be_consecutive(db_path: Path) -> None:
    step = MIGRATIONS[0]
    check_migrations(MIGRATIONS)
    with pytest.raises(RuntimeError, match=r"1\.\.n"):
        check_migrations((step, Migration(3, "gap", ())))
    with pytest.raises(RuntimeError, match=r"1\.\.n"):
        SqliteStore(db_path, migrations=(Migration(2, "out of order", ()), step))


# ---------------------------------------------------------------- lifecycle


async def test_ping_close_and_use_after_close(db_path: Path) -> None:
    store = SqliteStore(db_path)
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


async def test_ping_fails_when_schema_is_gone(store: SqliteStore, db_path: Path) -> None:
    query(db_path, "DROP TABLE schema_migrations")
    with pytest.raises(StoreError):
        await store.ping()


async def test_sqlite_store_satisfies_the_store_protocol(store: SqliteStore) -> None:
    typed: Store = store  # mypy checks the structural match
    await typed.ping()


async def test_two_stores_on_one_file_see_each_others_commits(
    db_path: Path, clock: FakeClock
) -> None:
    async with (
        SqliteStore(db_path, clock=clock) as first,
        SqliteStore(db_path, clock=clock) as second,
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
    assert count_rows(db_path, "outbox") == 1
