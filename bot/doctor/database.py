"""The database checks: DATABASE_URL opens and takes a write; what came in lately."""

from __future__ import annotations

import asyncio
import os
import time

from bot.doctor.base import DATABASE, INBOUND, Check, _one_line, describe_age
from bot.health import DATABASE_FIX, POSTGRES_FIX
from bot.inbound.polling import LAST_SUCCESS_KEY
from bot.settings import Settings
from storage import (
    LATEST_VERSION,
    Store,
    StoreError,
    is_postgres_url,
    open_store,
    parse_sqlite_url,
    redact_url,
)

DOCTOR_KV_KEY = "doctor:last_run"
# Written by InboundPoller.poll_once (bot/inbound/polling.py) after each successful pass.


async def _store_checks(settings: Settings) -> list[Check]:
    shown, existed = await asyncio.to_thread(_database_location, settings.database_url)
    if is_postgres_url(settings.database_url):
        fix = POSTGRES_FIX
    else:
        fix = f"{DATABASE_FIX} (sqlite:////absolute/path)"
    try:
        store = await open_store(settings.database_url)
    except StoreError as exc:
        return [Check(DATABASE, False, f"cannot open {shown}: {_one_line(exc)}", fix)]
    try:
        version = await store.schema_version()
        if version != LATEST_VERSION:
            return [
                Check(
                    DATABASE,
                    False,
                    f"{shown} has schema version {version}, this program needs {LATEST_VERSION}",
                    "run this ghl-bridge's serve once to migrate it, or point DATABASE_URL "
                    "elsewhere",
                )
            ]
        try:
            # The write `serve` makes at start-up and /healthz makes while it runs.
            await store.check_writable()
        except StoreError as exc:
            return [Check(DATABASE, False, f"cannot write to {shown} ({_one_line(exc)})", fix)]
        stamp = repr(time.time())
        await store.kv_set(DOCTOR_KV_KEY, stamp)
        if await store.kv_get(DOCTOR_KV_KEY) != stamp:
            return [Check(DATABASE, False, f"{shown} did not keep a test write", fix)]
        created = "" if existed else " (created just now: there was no database)"
        sharing = " (shared by every instance on it)" if store.shared else ""
        checks = [
            Check(DATABASE, True, f"{shown} writable, schema version {version}{created}{sharing}"),
            await _inbound_check(store, settings),
        ]
    except StoreError as exc:
        return [Check(DATABASE, False, f"{shown}: {_one_line(exc)}", fix)]
    finally:
        await store.close()
    return checks


def _database_location(database_url: str) -> tuple[str, bool]:
    """The database file as an absolute path (a PostgreSQL URL without its password), and
    whether it exists already (always, for PostgreSQL: the database must be there)."""
    if is_postgres_url(database_url):
        return redact_url(database_url), True
    path = parse_sqlite_url(database_url)
    if path == ":memory:":  # what parse_sqlite_url names an in-memory database
        return path, True
    return os.path.abspath(path), os.path.exists(path)


async def _inbound_check(store: Store, settings: Settings, now: float | None = None) -> Check:
    at = time.time() if now is None else now
    last_webhook = await store.last_inbound_at("webhook")
    last_polled = await store.last_inbound_at("poll")
    poll_success = await _kv_float(store, LAST_SUCCESS_KEY)
    if settings.ghl_poll_seconds:
        polling = f"polling every {settings.ghl_poll_seconds} s"
        if poll_success is not None:
            polling += f", last poll {describe_age(poll_success, at)}"
    else:
        polling = "polling off"
    if settings.ghl_poll_seconds == 0 and last_webhook is None:
        return Check(
            INBOUND,
            False,
            "no webhook has ever arrived and polling is off (GHL_POLL_SECONDS=0)",
            "nothing can bring customer replies in: set GHL_POLL_SECONDS (e.g. 30) or point "
            "HighLevel webhooks at https://YOUR-HOST/ghl/webhooks",
        )
    if last_webhook is None and last_polled is None:
        return Check(INBOUND, True, f"no inbound yet; {polling}")
    return Check(
        INBOUND,
        True,
        f"last webhook {_age_or_never(last_webhook, at)}, "
        f"last message by polling {_age_or_never(last_polled, at)}; {polling}",
    )


async def _kv_float(store: Store, key: str) -> float | None:
    raw = await store.kv_get(key)
    try:
        return float(raw) if raw else None
    except ValueError:
        return None


def _age_or_never(when: float | None, now: float) -> str:
    return "never" if when is None else describe_age(when, now)
