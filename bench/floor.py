"""The yardstick for webhook ingest: the least a server must do to accept a HighLevel webhook.

aiohttp, the Ed25519 check of ``x-ghl-signature`` over the raw body, the webhook id read from
the JSON, and one SQLite INSERT and COMMIT per request (WAL, ``synchronous = NORMAL``, as the
bridge's store), on the event loop's own thread. The bridge's ingest is judged as a ratio to
this, measured in the same run with the same load generator and the same signed bodies.
Run as ``python -m bench.floor`` with ``GHL_WEBHOOK_PUBLIC_KEY`` (PEM) and ``FLOOR_DATABASE``
(a file path) in the environment; it prints ``listening on URL`` and serves until SIGTERM.
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

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

SIGNATURE_HEADER = "x-ghl-signature"


def open_database(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS webhooks (webhook_id TEXT PRIMARY KEY, body BLOB NOT NULL,"
        " received_at REAL NOT NULL)"
    )
    return db


def build_floor_app(public_key: Ed25519PublicKey, db: sqlite3.Connection) -> web.Application:
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
        db.execute("BEGIN")
        db.execute(
            "INSERT OR IGNORE INTO webhooks (webhook_id, body, received_at) VALUES (?, ?, ?)",
            (webhook_id, body, time.time()),
        )
        db.execute("COMMIT")
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
    db = open_database(os.environ["FLOOR_DATABASE"])
    runner = web.AppRunner(build_floor_app(key, db), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_host, bound_port = runner.addresses[0][:2]
    print(f"listening on http://{bound_host}:{bound_port}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        db.close()


def main() -> int:
    asyncio.run(serve_floor())
    return 0


if __name__ == "__main__":
    sys.exit(main())
