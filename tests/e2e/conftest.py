"""The whole product on loopback: both simulators and a real `ghl-bridge serve`, on each backend.

Every test that starts a bridge runs twice, `[sqlite]` and `[postgres]`: a new SQLite file, or
a fresh schema on the tests' PostgreSQL server (tests/_postgres.py; without one the `postgres`
half is skipped with a loud line, or stops the run under CI=true). Tests look at what the bridge
stored through `stack_store`/`query`, which open the stack's own database, whichever it is.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiosqlite
import pytest

from bot.sandbox.highlevel import HighLevelSimulator
from bot.sandbox.slack import SlackSimulator
from bot.sandbox.stack import SandboxStack
from storage import create_store, is_postgres_url, parse_sqlite_url
from storage._base import numbered_sql
from storage._url import postgres_dsn

if TYPE_CHECKING:
    from storage import PostgresStore, SqliteStore

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    # The marker makes the server check happen before any fixture, and `-m postgres` pick it.
    # The second run of every feature (about 80 s) goes with `make test-slow`, which CI runs
    # too, so that `make test` stays well under 10 minutes on 2 cores.
    pytest.param("postgres", id="postgres", marks=[pytest.mark.postgres, pytest.mark.slow]),
]

# A stack on PostgreSQL has no SQLite file: a test still opening `stack.database_path` fails
# on this instead of finding an empty database and passing wrongly.
NO_SQLITE_FILE = Path(os.devnull)


async def eventually(
    check: Callable[[], Any], *, within: float = 8.0, interval: float = 0.05
) -> Any:
    """Poll `check` (sync or async) until it returns something truthy; fail with its last value
    after `within` s."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s (last value: {value!r})")
        await asyncio.sleep(interval)


def _database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "postgres":
        # Asked for here, not as an argument: SQLite runs never need the server.
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'bridge.sqlite3'}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Each test here that starts a stack runs on both backends.

    Done here rather than with `params=` on the fixtures: a test elsewhere that imports `stack`
    (tests/test_metrics.py) keeps one SQLite stack unless it parametrizes `stack` itself.
    """
    for name in ("stack", "database_url"):
        if name in metafunc.fixturenames:
            metafunc.parametrize(name, BACKENDS, indirect=True)


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database a test's bridge uses: a new SQLite file, or a fresh PostgreSQL schema."""
    return _database_url(getattr(request, "param", "sqlite"), request, tmp_path)


def stack_on(
    database_url: str,
    *,
    highlevel: HighLevelSimulator | None = None,
    slack: SlackSimulator | None = None,
    settings_overrides: dict[str, Any] | None = None,
    webhooks: bool = True,
) -> SandboxStack:
    """A SandboxStack whose bridge keeps its data in `database_url`."""
    path = NO_SQLITE_FILE if is_postgres_url(database_url) else Path(parse_sqlite_url(database_url))
    return SandboxStack(
        path,
        highlevel=highlevel,
        slack=slack,
        settings_overrides={"database_url": database_url, **(settings_overrides or {})},
        webhooks=webhooks,
    )


def url_of(stack: SandboxStack) -> str:
    assert stack.settings is not None, "start() the stack first"
    return stack.settings.database_url


def stack_store(
    stack: SandboxStack, *, clock: Callable[[], float] = time.time
) -> SqliteStore | PostgresStore:
    """The stack's own database, not yet opened: `async with stack_store(stack) as store`."""
    return create_store(url_of(stack), clock=clock)


async def query(stack: SandboxStack, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of one statement (`?` parameters) run on the stack's database, for what no store
    method shows; it runs on a connection of its own, beside the bridge's."""
    url = url_of(stack)
    if is_postgres_url(url):
        import asyncpg  # only PostgreSQL runs need it

        numbered, _count = numbered_sql(sql)
        connection = await asyncpg.connect(postgres_dsn(url))
        try:
            return [tuple(row) for row in await connection.fetch(numbered, *params)]
        finally:
            await connection.close()
    # aiosqlite, not sqlite3: waiting for the bridge's write lock must not block its loop.
    async with aiosqlite.connect(parse_sqlite_url(url), timeout=30) as db:
        async with db.execute(sql, params) as cursor:
            rows = [tuple(row) for row in await cursor.fetchall()]
        await db.commit()
    return rows


@pytest.fixture
def stack_overrides() -> dict[str, Any]:
    """Settings a test module or test changes (override this fixture)."""
    return {}


@pytest.fixture
async def stack(
    request: pytest.FixtureRequest, tmp_path: Path, stack_overrides: dict[str, Any]
) -> AsyncIterator[SandboxStack]:
    """A started stack on SQLite, or on the backend it is parametrized with (here: both)."""
    url = _database_url(getattr(request, "param", "sqlite"), request, tmp_path)
    sandbox = stack_on(url, settings_overrides=stack_overrides)
    await sandbox.start()
    try:
        yield sandbox
    finally:
        await sandbox.stop()


OAuthStackFactory = Callable[..., SandboxStack]


@pytest.fixture
def oauth_stack_on(database_url: str) -> OAuthStackFactory:
    """Makes (not starts) stacks whose bridge is the simulator's Marketplace app on this test's
    database: `oauth_stack_on(highlevel=HighLevelSimulator(locations=3, token_ttl=3))`."""

    def make(**kwargs: Any) -> SandboxStack:
        overrides = {"database_url": database_url, **kwargs.pop("settings_overrides", {})}
        kwargs.setdefault("highlevel", HighLevelSimulator(locations=3))
        path = (
            NO_SQLITE_FILE
            if is_postgres_url(database_url)
            else Path(parse_sqlite_url(database_url))
        )
        return SandboxStack(path, oauth=True, settings_overrides=overrides, **kwargs)

    return make


@pytest.fixture
async def oauth_stack(oauth_stack_on: OAuthStackFactory) -> AsyncIterator[SandboxStack]:
    """A started OAuth stack (three locations, none connected yet), on both backends."""
    sandbox = oauth_stack_on()
    await sandbox.start()
    try:
        yield sandbox
    finally:
        await sandbox.stop()
