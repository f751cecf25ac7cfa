"""The PostgreSQL server of the tests: probed once per run, a fresh empty schema per test.

The server is TEST_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test). Each
test that needs it gets `…?search_path=ghlt_<run>_<test>` (asyncpg passes search_path on
to the server), a schema made for it and dropped after it; what a failed teardown leaves
behind is dropped at the end of the run, and only schemas of this run ever are.

When the server does not answer, the first test that needs it decides what happens: with
CI=true the run stops there (a CI must not pass without the PostgreSQL suite), otherwise
those tests are skipped and the run ends with one loud line saying so and how to run them.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import pytest

from storage import redact_url

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
SCHEMA_PREFIX = "ghlt_"
# Long enough for a loaded CI machine to accept a connection; a closed port answers at once.
PROBE_TIMEOUT = 3.0
# A helper statement that takes longer is stuck (waiting for a lock a test holds, say):
# fail the test instead of hanging the run.
STATEMENT_TIMEOUT = 30.0

MARKER = "postgres: needs the PostgreSQL server of TEST_DATABASE_URL (tests/_postgres.py)"

T = TypeVar("T")


def configured_url() -> str:
    return os.environ.get("TEST_DATABASE_URL") or DEFAULT_URL


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def with_search_path(url: str, schema: str) -> str:
    """The URL with `search_path=<schema>` among its options (replacing one it had)."""
    parts = urlsplit(url)
    options = [(k, v) for k, v in parse_qsl(parts.query) if k != "search_path"]
    return urlunsplit(parts._replace(query=urlencode([*options, ("search_path", schema)])))


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _LoopThread:
    """An event loop on a thread of its own, for asyncpg from sync code.

    Fixtures and helpers are called from inside a test's running loop; asyncpg needs a
    loop of its own, which this thread keeps for the whole run.
    """

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tests-postgres", daemon=True
        )
        self._thread.start()

    def run(self, work: Coroutine[Any, Any, T], timeout: float = STATEMENT_TIMEOUT) -> T:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


SKIP_PREFIX = "PostgreSQL at"  # how this server's skips begin


class PostgresServer:
    """The run's view of the test server: is it there, and fresh schemas on it."""

    def __init__(self, url: str, *, ci: bool) -> None:
        self.url = url
        self.ci = ci
        self.run_id = secrets.token_hex(3)
        self.skipped = 0  # tests skipped because the server did not answer (`count`)
        self._probed = False
        self._problem: str | None = None  # why the server cannot be used, once probed
        self._loop: _LoopThread | None = None
        self._admin: asyncpg.Connection[asyncpg.Record] | None = None

    @property
    def shown_url(self) -> str:
        return redact_url(self.url)

    # ------------------------------------------------------------ availability

    def require(self) -> None:
        """Return if the server answers; else stop the run (CI) or skip the test."""
        if not self._probed:
            self._probed = True
            self._problem = self._probe()
        if self._problem is None:
            return
        if self.ci:
            pytest.exit(
                f"PostgreSQL at {self.shown_url} does not answer ({self._problem}): "
                "CI needs it (set TEST_DATABASE_URL)",
                returncode=3,
            )
        pytest.skip(f"{SKIP_PREFIX} {self.shown_url} does not answer ({self._problem})")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Counts this server's skips from every test's report: with pytest-xdist the tests
        run in worker processes, and only their reports reach the process that prints."""
        # A skip's longrepr is (file, line, "Skipped: <message>").
        message = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
        if report.when == "setup" and report.skipped and SKIP_PREFIX in message:
            self.skipped += 1
            if self._problem is None:  # a worker found it; say why as the worker did
                found = re.search(r"does not answer \((.*)\)$", message)
                self._problem = found.group(1) if found else "see the skips above"

    def _probe(self) -> str | None:
        loop = _LoopThread()
        try:
            self._admin = loop.run(
                asyncpg.connect(self.url, timeout=PROBE_TIMEOUT), PROBE_TIMEOUT + 2
            )
            loop.run(self._admin.fetchval("SELECT 1"))
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            if self._admin is not None:
                self._admin.terminate()
                self._admin = None
            loop.stop()
            return _reason(exc)
        self._loop = loop
        return None

    def summary_line(self) -> str | None:
        """The loud line for the end of a run that skipped PostgreSQL tests, else None."""
        if not self.skipped:
            return None
        return (
            f"!!! PostgreSQL suite did NOT run ({self.skipped} tests): no server at "
            f"{self.shown_url} ({self._problem}); start PostgreSQL or set "
            "TEST_DATABASE_URL=postgresql://user@host:5432/database, then make test"
        )

    # ------------------------------------------------------------ schemas

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the helpers' own loop (the server must have answered)."""
        if self._loop is None:
            work.close()
            raise RuntimeError("the PostgreSQL server was not probed, or did not answer")
        return self._loop.run(work)

    def admin(self) -> asyncpg.Connection[asyncpg.Record]:
        if self._admin is None:
            raise RuntimeError("the PostgreSQL server was not probed, or did not answer")
        return self._admin

    @contextmanager
    def fresh_schema(self) -> Iterator[tuple[str, str]]:
        """A new empty schema, dropped on exit: (its name, the URL that uses it)."""
        self.require()
        name = f"{SCHEMA_PREFIX}{self.run_id}_{secrets.token_hex(4)}"
        self.run(self.admin().execute(f"CREATE SCHEMA {quote_identifier(name)}"))
        try:
            yield name, with_search_path(self.url, name)
        finally:
            drop = f"DROP SCHEMA IF EXISTS {quote_identifier(name)} CASCADE"
            self.run(self.admin().execute(drop))

    def close(self) -> None:
        """Drop this run's leftover schemas and disconnect."""
        if self._loop is None:
            return
        try:
            self.run(self._sweep())
        finally:
            self._loop.stop()
            self._loop = None

    async def _sweep(self) -> None:
        admin = self.admin()
        try:
            leftovers = await admin.fetch(
                "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)",
                f"{SCHEMA_PREFIX}{self.run_id}_",
            )
            for row in leftovers:
                await admin.execute(f"DROP SCHEMA {quote_identifier(row[0])} CASCADE")
        finally:
            await admin.close()


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ---------------------------------------------------------------- pytest wiring

SERVER = pytest.StashKey[PostgresServer]()


def configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER)
    found = PostgresServer(configured_url(), ci=in_ci())
    config.stash[SERVER] = found
    config.pluginmanager.register(found, "postgres-server")
    if found.ci and not hasattr(config, "workerinput"):
        # CI: no server stops the run here, in one line, before any test or pytest-xdist
        # worker starts (an exit inside a worker is an internal error to pytest-xdist).
        found.require()


def server(config: pytest.Config) -> PostgresServer:
    return config.stash[SERVER]


def mark_items(items: list[pytest.Item]) -> None:
    """Tests that take a fresh schema carry the `postgres` marker (for -m selection)."""
    for item in items:
        if "postgres_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)


def setup_item(item: pytest.Item) -> None:
    """Before a `postgres` test's fixtures: stop the run (CI) or skip it if there is no server.

    Here rather than in the fixture: a skip raised here is reported at one place, so the
    skipped tests fold into one summary line, and an exit leaves no fixture half set up.
    """
    if item.get_closest_marker("postgres") is not None:
        server(item.config).require()


def unconfigure(config: pytest.Config) -> None:
    found = config.stash.get(SERVER, None)
    if found is not None:
        found.close()


def report(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    line = server(config).summary_line()
    if line is not None:
        terminalreporter.write_line(line, red=True, bold=True)
