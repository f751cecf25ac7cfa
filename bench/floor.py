"""The yardstick for webhook ingest: the least a server must do to accept a HighLevel webhook.

aiohttp, the Ed25519 check of ``x-ghl-signature`` over the raw body, the webhook id read from
the JSON, and one INSERT and COMMIT per request into the backend the bridge is measured on:
SQLite (WAL, ``synchronous = NORMAL``, as the bridge's store, on the event loop's own thread)
or PostgreSQL (one autocommitted INSERT through an asyncpg pool as large as the bridge's).
The bridge's ingest is judged as a ratio to this, measured in the same run with the same load
generator and the same signed bodies. Run as ``python -m bench.floor`` with
``GHL_WEBHOOK_PUBLIC_KEY`` (PEM) and ``FLOOR_DATABASE`` (a file path, or a postgresql:// URL
whose ``search_path`` names the schema) in the environment; it prints ``listening on URL`` and
serves until SIGTERM. Several may share one PostgreSQL schema.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable

import asyncpg
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

SIGNATURE_HEADER = "x-ghl-signature"
POSTGRES_POOL_SIZE = 8  # the bridge's PostgresStore pool
# Any constant: floors starting together on one database create their table one at a time.
_CREATE_LOCK = 0x6768_6CF0

# Stores one webhook (id, raw body) durably before the answer goes out.
Keep = Callable[[str, bytes], Awaitable[None]]


def open_database(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS webhooks (webhook_id TEXT PRIMARY KEY, body BLOB NOT NULL,"
        " received_at REAL NOT NULL)"
    )
    return db


def sqlite_keeper(db: sqlite3.Connection) -> Keep:
    async def keep(webhook_id: str, body: bytes) -> None:
        db.execute("BEGIN")
        db.execute(
            "INSERT OR IGNORE INTO webhooks (webhook_id, body, received_at) VALUES (?, ?, ?)",
            (webhook_id, body, time.time()),
        )
        db.execute("COMMIT")

    return keep


async def open_postgres(url: str) -> asyncpg.Pool[asyncpg.Record]:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=POSTGRES_POOL_SIZE)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _CREATE_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_floor_webhooks (webhook_id TEXT PRIMARY KEY,"
            " body BYTEA NOT NULL, received_at DOUBLE PRECISION NOT NULL)"
        )
    return pool


def postgres_keeper(pool: asyncpg.Pool[asyncpg.Record]) -> Keep:
    async def keep(webhook_id: str, body: bytes) -> None:
        await pool.execute(
            "INSERT INTO bench_floor_webhooks (webhook_id, body, received_at)"
            " VALUES ($1, $2, $3) ON CONFLICT (webhook_id) DO NOTHING",
            webhook_id,
            body,
            time.time(),
        )

    return keep


def build_floor_app(public_key: Ed25519PublicKey, keep: Keep) -> web.Application:
    """POST /ghl/webhooks: 401 unless signed, 400 unless JSON with a webhookId, else stored."""

    async def webhooks(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            signature = base64.b64decode(request.headers.get(SIGNATURE_HEADER, ""), validate=True)
            public_key.verify(signature, body)
        except (binascii.Error, ValueError, InvalidSignature):
            return web.Response(status=401)
        try:
            webhook_id = str(json.loads(body)["webhookId"])
        except (ValueError, KeyError, TypeError):
            return web.Response(status=400)
        await keep(webhook_id, body)
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/ghl/webhooks", webhooks)
    return app


async def serve_floor(host: str = "127.0.0.1", port: int = 0) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    key = load_pem_public_key(os.environ["GHL_WEBHOOK_PUBLIC_KEY"].encode("ascii"))
    if not isinstance(key, Ed25519PublicKey):
        raise SystemExit("GHL_WEBHOOK_PUBLIC_KEY is not an Ed25519 public key")
    database = os.environ["FLOOR_DATABASE"]
    sqlite_db: sqlite3.Connection | None = None
    pool: asyncpg.Pool[asyncpg.Record] | None = None
    if database.startswith(("postgresql://", "postgres://")):
        pool = await open_postgres(database)
        keep = postgres_keeper(pool)
    else:
        sqlite_db = open_database(database)
        keep = sqlite_keeper(sqlite_db)
    runner = web.AppRunner(build_floor_app(key, keep), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_host, bound_port = runner.addresses[0][:2]
    print(f"listening on http://{bound_host}:{bound_port}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        if pool is not None:
            await pool.close()
        if sqlite_db is not None:
            sqlite_db.close()


def main() -> int:
    asyncio.run(serve_floor())
    return 0


if __name__ == "__main__":
    sys.exit(main())
