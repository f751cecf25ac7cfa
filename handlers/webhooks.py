"""`POST /ghl/webhooks`: verify, store, answer — processing happens off the request path."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from aiohttp import web

from bot.highlevel import HighLevelError
from bot.inbound import InboundService
from bot.webhook_auth import WebhookRejected, WebhookVerifier
from storage import StoreError

log = logging.getLogger(__name__)

# HighLevel retries only on 429 (NOTES.md §4): when we cannot store an event, 429 asks for it
# again instead of losing it.
RETRY_AFTER_SECONDS = "5"
# A Marketplace app may send us every other location's traffic: count it, log it now and then.
NOT_SERVED_LOG_INTERVAL_SECONDS = 60.0
_LOCATIONS_NAMED = 5
_LOCATION_ID_SHOWN = 40
# The Marketplace app's own events: a sub-account installed or uninstalled it.
APP_EVENTS = frozenset({"INSTALL", "UNINSTALL"})
# The answers to a stored (or duplicate) webhook, encoded once rather than per request.
_ANSWERS = {stored: json.dumps({"ok": True, "stored": stored}).encode() for stored in (True, False)}


class NotServedTally:
    """Counts webhooks for locations this bridge does not serve; logs one INFO line with the
    count (and a few of the location ids, never a body) when the first arrives and then at most
    once per `interval`."""

    def __init__(
        self,
        *,
        interval: float = NOT_SERVED_LOG_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval = interval
        self._clock = clock
        self._locations: Counter[str] = Counter()
        self._next_line: float | None = None
        self.total = 0

    def add(self, location_id: object) -> None:
        self.total += 1
        self._locations[_shown_location(location_id)] += 1
        now = self._clock()
        if self._next_line is None or now >= self._next_line:
            self.flush(now)

    def flush(self, now: float | None = None) -> None:
        """Log what was counted since the last line (if anything)."""
        count = sum(self._locations.values())
        if count:
            named = ", ".join(
                f"{location} ({n})" for location, n in self._locations.most_common(_LOCATIONS_NAMED)
            )
            more = len(self._locations) - _LOCATIONS_NAMED
            log.info(
                "ignored %d webhook(s) for locations this bridge does not serve: %s%s",
                count,
                named,
                f" and {more} more" if more > 0 else "",
            )
            self._locations.clear()
        self._next_line = (self._clock() if now is None else now) + self._interval


def _shown_location(location_id: object) -> str:
    if location_id is None:
        return "no locationId"
    if not isinstance(location_id, str):
        return f"a {type(location_id).__name__} locationId"
    shown = location_id if location_id.isprintable() else ascii(location_id)
    if len(shown) > _LOCATION_ID_SHOWN:
        shown = shown[:_LOCATION_ID_SHOWN] + "…"
    return shown


class ServedCheck(Protocol):
    """Which sub-accounts' events are ours (`bot.tenancy.SubAccounts`)."""

    async def serves(self, event: Mapping[str, Any]) -> bool: ...
    async def webhook_seen(self, location_id: str) -> None: ...


class AppEventHandler(Protocol):
    """Carries out an INSTALL or UNINSTALL event (`bot.tenancy.install.OAuthInstaller`)."""

    async def app_event(self, event_type: str, payload: Mapping[str, Any]) -> None: ...


class WebhookEndpoint:
    """The aiohttp handler for HighLevel webhooks."""

    def __init__(
        self,
        verifier: WebhookVerifier,
        inbound: InboundService,
        served: ServedCheck,
        *,
        app_events: AppEventHandler | None = None,
        not_served: NotServedTally | None = None,
    ) -> None:
        self._verifier = verifier
        self._inbound = inbound
        self._served = served
        self._app_events = app_events
        self.not_served = not_served or NotServedTally()

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()  # the exact bytes that were signed; never re-serialised
        try:
            webhook = self._verifier.verify(raw, request.headers)
        except WebhookRejected as exc:
            log.info("rejected a HighLevel webhook: %s", exc.reason)
            return web.json_response({"error": exc.reason}, status=401)
        if webhook.event_type in APP_EVENTS:
            return await self._app_event(webhook.event_type, webhook.payload)
        if not await self._served.serves(webhook.payload):
            # Genuine, but another sub-account's (or nobody's): never stored, never shown. 200,
            # because anything else makes HighLevel retry (429) or give up noisily.
            self.not_served.add(webhook.payload.get("locationId"))
            return web.json_response({"ok": True, "stored": False, "ignored": "not_served"})
        try:
            stored = await self._inbound.accept_webhook(
                webhook.webhook_id, webhook.event_type, webhook.payload, raw
            )
        except StoreError as exc:
            log.warning(
                "could not store webhook %s (%s); asking HighLevel to retry",
                webhook.webhook_id,
                exc,
            )
            return web.json_response(
                {"error": "busy"}, status=429, headers={"Retry-After": RETRY_AFTER_SECONDS}
            )
        with contextlib.suppress(StoreError):  # a nicety for /highlevel status; it is stored
            await self._served.webhook_seen(webhook.payload["locationId"])
        return web.Response(body=_ANSWERS[stored], content_type="application/json", charset="utf-8")

    async def _app_event(self, event_type: str, payload: Mapping[str, Any]) -> web.Response:
        if self._app_events is None:
            # A bridge without the Marketplace app has no installs to keep track of.
            return web.json_response({"ok": True, "stored": False, "ignored": "no_oauth"})
        try:
            await self._app_events.app_event(event_type, payload)
        except (StoreError, HighLevelError) as exc:
            # Carried out before the answer, so a failure asks HighLevel to send it again.
            log.warning(
                "could not carry out a HighLevel %s event (%s); asking for it again",
                event_type,
                exc,
            )
            return web.json_response(
                {"error": "busy"}, status=429, headers={"Retry-After": RETRY_AFTER_SECONDS}
            )
        return web.json_response({"ok": True, "stored": False, "handled": event_type})
