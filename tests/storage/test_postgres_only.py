"""What only the PostgreSQL backend has: its URLs, its connection errors, schemas as bridges.

The store contract itself is tested on both backends by the other files of this folder.
"""

from __future__ import annotations

import asyncio

import pytest

from storage import LATEST_VERSION, PostgresStore, StoreError, open_store
from tests._postgres import PostgresServer, server
from tests.storage._support import FakeClock, PostgresBackend, enqueue


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


async def test_a_post_shown_while_its_send_is_recorded_elsewhere_lands_on_the_message(
    postgres_url: str, postgres_server: PostgresServer, clock: FakeClock
) -> None:
    """set_outbox_slack_ts is one statement, which reads the message rows as they were when
    it began. Made to happen: it begins while mark_sent of the same entry (on another
    instance) waits for the entry's row, and gets the row only once mark_sent has recorded
    the entry's message. The post must still land on that message."""
    backend = PostgresBackend(postgres_server, postgres_url)
    async with (
        backend.new_store(clock, instance_id="a") as a,
        backend.new_store(clock, instance_id="b") as b,
        backend.new_store(clock, instance_id="holder") as holder,
    ):
        entry = await enqueue(a, "k1")
        assert await a.claim_next() is not None
        async with holder._write(serial=False) as db:
            await db.execute("SELECT 1 FROM outbox WHERE id = ? FOR UPDATE", (entry.id,))
            marking = asyncio.create_task(
                a.mark_sent(entry.id, conversation_id="conv", ghl_message_id="g-1")
            )
            await _until_waiting(holder, "%WITH sent AS%")
            showing = asyncio.create_task(b.set_outbox_slack_ts(entry.id, "1700000000.000100"))
            await _until_waiting(holder, "%state_seen%")
        # The holder let go: mark_sent goes first (it queued first), then set_outbox_slack_ts.
        await marking
        shown = await showing
    assert shown.slack_ts == "1700000000.000100"
    assert backend.query("SELECT ghl_message_id, slack_channel_id, slack_ts FROM messages") == [
        ("g-1", "C1", "1700000000.000100")
    ]


async def _until_waiting(store: PostgresStore, query_like: str) -> None:
    """Return once a statement like `query_like` waits for a lock on the server."""
    async with asyncio.timeout(10):
        while True:
            rows = await store._read_op(
                lambda db: db.fetch(
                    "SELECT COUNT(*) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND query LIKE ?",
                    (query_like,),
                )
            )
            if rows[0][0]:
                return
            await asyncio.sleep(0.01)
