"""What only the PostgreSQL backend has: its URLs, its connection errors, schemas as bridges.

The store contract itself is tested on both backends by the other files of this folder.
"""

from __future__ import annotations

import asyncio

import pytest

from storage import LATEST_VERSION, PostgresStore, StoreError, open_store
from tests._postgres import PostgresServer, server
from tests.storage._support import FakeClock, PostgresBackend


@pytest.fixture
def postgres_server(request: pytest.FixtureRequest) -> PostgresServer:
    return server(request.config)


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+asyncpg"])
async def test_open_store_takes_a_postgresql_url(postgres_url: str, scheme: str) -> None:
    url = scheme + postgres_url.removeprefix("postgresql")
    store = await open_store(url)
    try:
        assert isinstance(store, PostgresStore)
        assert await store.schema_version() == LATEST_VERSION
        await store.kv_set("cursor", "42")
        assert await store.kv_get("cursor") == "42"
    finally:
        await store.close()


async def test_a_server_that_does_not_answer_is_a_store_error_without_the_password() -> None:
    store = PostgresStore("postgresql://bridge:s3cret-pw@127.0.0.1:1/bridge")
    with pytest.raises(StoreError, match="cannot open database") as raised:
        await store.open()
    message = str(raised.value)
    assert "postgresql://bridge:***@127.0.0.1:1/bridge" in message
    assert "s3cret-pw" not in message
    with pytest.raises(StoreError, match="not open"):
        await store.ping()


async def test_bridges_in_two_schemas_of_one_database_are_apart(
    postgres_url: str, postgres_server: PostgresServer, clock: FakeClock
) -> None:
    with postgres_server.fresh_schema() as (_name, other_url):
        first = PostgresBackend(postgres_server, postgres_url)
        second = PostgresBackend(postgres_server, other_url)
        async with first.new_store(clock) as one, second.new_store(clock) as two:
            await one.kv_set("cursor", "one")
            assert await two.kv_get("cursor") is None
            assert first.query("SELECT value FROM kv_store") == [("one",)]
            assert second.query("SELECT value FROM kv_store") == []
            # A serial write transaction held open in one schema (its advisory lock taken)
            # does not hold up the other schema's serial writes: the lock is per schema.
            async with one._write():
                async with asyncio.timeout(10):  # a hang guard: waiting would be the bug
                    thread = await two.upsert_thread(
                        team_id="T1", channel_id="C1", location_id="loc-1", contact_id="c-1"
                    )
            assert thread.id > 0
        assert first.count_rows("slack_threads") == 0
        assert second.count_rows("slack_threads") == 1
