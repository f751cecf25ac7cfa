"""`POST /ghl/webhooks`: verify, store, answer — processing happens off the request path."""

from __future__ import annotations

import logging

from aiohttp import web

from bot.inbound import InboundService
from bot.webhook_auth import WebhookRejected, WebhookVerifier
from storage import StoreError

log = logging.getLogger(__name__)

# HighLevel retries only on 429 (NOTES.md §4): when we cannot store an event, 429 asks for it
# again instead of losing it.
RETRY_AFTER_SECONDS = "5"


class WebhookEndpoint:
    """The aiohttp handler for HighLevel webhooks."""

    def __init__(self, verifier: WebhookVerifier, inbound: InboundService) -> None:
        self._verifier = verifier
        self._inbound = inbound

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()  # the exact bytes that were signed; never re-serialised
        try:
            webhook = self._verifier.verify(raw, request.headers)
        except WebhookRejected as exc:
            log.info("rejected a HighLevel webhook: %s", exc.reason)
            return web.json_response({"error": exc.reason}, status=401)
        try:
            stored = await self._inbound.accept_webhook(
                webhook.webhook_id, webhook.event_type, webhook.payload
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
        return web.json_response({"ok": True, "stored": stored})
