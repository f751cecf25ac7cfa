"""The PostgreSQL server of the bench's PostgreSQL columns: is it there, and a fresh schema each.

The server is ``--postgres URL``, else BENCH_DATABASE_URL, else TEST_DATABASE_URL, else
postgresql://postgres@127.0.0.1:5432/test. Each column gets a schema of its own
(``bench_<column>_<random>``), named to the bridges by ``?search_path=`` in their
DATABASE_URL, and dropped at the end of the column whatever happened in it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
SCHEMA_PREFIX = "bench_"
PROBE_TIMEOUT = 3.0  # a closed port answers at once; a loaded server gets this long


def configured_url() -> str:
    return (
        os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL") or DEFAULT_URL
    )


def with_search_path(url: str, schema: str) -> str:
    """The URL with `search_path=<schema>` among its options (replacing one it had)."""
    parts = urlsplit(url)
    options = [(k, v) for k, v in parse_qsl(parts.query) if k != "search_path"]
    return urlunsplit(parts._replace(query=urlencode([*options, ("search_path", schema)])))


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def probe(url: str) -> str | None:
    """None if the server answers a query; else why not, in one line."""
    try:
        conn = await asyncpg.connect(url, timeout=PROBE_TIMEOUT)
        try:
            await conn.fetchval("SELECT 1", timeout=PROBE_TIMEOUT)
        finally:
            await conn.close()
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return None


@asynccontextmanager
async def fresh_schema(url: str, label: str) -> AsyncIterator[str]:
    """A new empty schema, dropped on exit; yields the URL whose search_path names it."""
    name = f"{SCHEMA_PREFIX}{label}_{secrets.token_hex(4)}".replace("-", "_")
    conn = await asyncpg.connect(url, timeout=PROBE_TIMEOUT)
    try:
        await conn.execute(f"CREATE SCHEMA {_quote(name)}")
    finally:
        await conn.close()
    try:
        yield with_search_path(url, name)
    finally:
        conn = await asyncpg.connect(url, timeout=PROBE_TIMEOUT)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {_quote(name)} CASCADE")
        finally:
            await conn.close()
