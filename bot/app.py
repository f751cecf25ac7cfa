"""Builds the bridge from settings: store, HighLevel client, Bolt app and workers."""

from __future__ import annotations

import logging
import time

import aiohttp
import httpx
from slack_bolt.async_app import AsyncApp
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

import handlers
from bot.contacts import ContactDirectory
from bot.deps import Deps
from bot.highlevel import HighLevelClient
from bot.inbound import InboundService, InboundWorker
from bot.outbound import OutboundService, OutboxWorker, SendPresenter
from bot.pacing import ChannelPacer
from bot.polling import InboundPoller
from bot.settings import Settings
from bot.slack_posts import SlackPoster
from bot.webhook_auth import WebhookVerifier
from bot.workers import PeriodicWorker, Worker, WorkerGroup
from handlers.webhooks import WebhookEndpoint
from storage import Store, open_store

log = logging.getLogger(__name__)

PURGE_INTERVAL_SECONDS = 3600.0


def build_slack_client(
    settings: Settings, *, pace_posts: bool = False, session: aiohttp.ClientSession | None = None
) -> AsyncWebClient:
    """The Web API client: SLACK_API_URL is the seam to a fake Slack.

    With `pace_posts` the caller paces per channel and handles 429 itself (`SlackPoster`);
    otherwise slack_sdk waits out a 429's Retry-After and tries again. Without a `session`
    slack_sdk opens and closes a connection (TLS handshake and all) for every call.
    """
    retry_handlers: list[AsyncRetryHandler] = [AsyncConnectionErrorRetryHandler(max_retry_count=2)]
    if not pace_posts:
        retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=5))
    return AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=settings.slack_api_url,
        timeout=15,
        retry_handlers=retry_handlers,
        session=session,
    )


def highlevel_timeout(settings: Settings) -> httpx.Timeout:
    """GHL_TIMEOUT_SECONDS for the answer; connecting never waits longer than 5 s."""
    seconds = settings.ghl_timeout_seconds
    return httpx.Timeout(connect=min(5.0, seconds), read=seconds, write=seconds, pool=10.0)


def build_bolt_app(settings: Settings, client: AsyncWebClient) -> AsyncApp:
    """The Bolt app; request verification is on (Socket Mode requests skip it by design)."""
    secret = settings.slack_signing_secret
    return AsyncApp(
        client=client,
        signing_secret=secret.get_secret_value() if secret else "",
        request_verification_enabled=True,
        process_before_response=False,
    )


class Bridge:
    """Everything `ghl-bridge serve` runs; `create` builds it, `start`/`aclose` run it."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store,
        highlevel: HighLevelClient,
        slack_client: AsyncWebClient,
        bolt_app: AsyncApp,
        workers: WorkerGroup,
        webhooks: WebhookEndpoint,
    ) -> None:
        self.settings = settings
        self.store = store
        self.highlevel = highlevel
        self.slack_client = slack_client
        self.bolt_app = bolt_app
        self.workers = workers
        self.webhooks = webhooks
        self._started = False

    @classmethod
    async def create(cls, settings: Settings) -> Bridge:
        """Open the store (applying migrations) and wire every part from `settings`."""
        store = await open_store(settings.database_url)
        highlevel = HighLevelClient(
            token=settings.ghl_api_token,
            location_id=settings.ghl_location_id,
            base_url=settings.ghl_api_url,
            timeout=highlevel_timeout(settings),
        )
        # One keep-alive connection pool for every Web API call (Bolt's per-request clients
        # reuse the session of `slack_client` too); closed in `aclose`.
        slack_session = aiohttp.ClientSession()
        slack_client = build_slack_client(settings, session=slack_session)
        poster = SlackPoster(
            build_slack_client(settings, pace_posts=True, session=slack_session),
            ChannelPacer(rate_per_second=settings.slack_post_rate),
        )
        presenter = SendPresenter(store=store, poster=poster)
        outbox = OutboxWorker(store=store, highlevel=highlevel, presenter=presenter)
        contacts = ContactDirectory(highlevel)
        outbound = OutboundService(
            store=store,
            highlevel=highlevel,
            contacts=contacts,
            poster=poster,
            presenter=presenter,
            location_id=settings.ghl_location_id,
            wake_worker=outbox.wake,
        )
        inbound_worker = InboundWorker(
            store=store,
            poster=poster,
            presenter=presenter,
            contacts=contacts,
            location_id=settings.ghl_location_id,
            inbox_channel=settings.slack_inbox_channel,
        )
        inbound = InboundService(store=store, wake_worker=inbound_worker.wake)
        webhooks = WebhookEndpoint(WebhookVerifier(settings.ghl_webhook_public_key), inbound)
        bolt_app = build_bolt_app(settings, slack_client)
        handlers.register_all(
            bolt_app, Deps(settings=settings, outbound=outbound, contacts=contacts)
        )
        workers: list[Worker] = [
            outbox,
            inbound_worker,
            PeriodicWorker(
                "purge-deliveries",
                lambda: store.purge_expired(time.time()),
                interval=PURGE_INTERVAL_SECONDS,
            ),
        ]
        if settings.ghl_poll_seconds > 0:
            workers.append(
                InboundPoller(
                    highlevel=highlevel,
                    inbound=inbound,
                    store=store,
                    interval=settings.ghl_poll_seconds,
                )
            )
        return cls(
            settings,
            store=store,
            highlevel=highlevel,
            slack_client=slack_client,
            bolt_app=bolt_app,
            workers=WorkerGroup(workers),
            webhooks=webhooks,
        )

    def start(self) -> None:
        self.workers.start()
        self._started = True

    async def healthy(self) -> bool:
        """The database answers and every worker runs."""
        if not self._started or not self.workers.running:
            return False
        try:
            await self.store.ping()
        except Exception:
            log.warning("health check: the database did not answer", exc_info=True)
            return False
        return True

    async def aclose(self) -> None:
        """Stop the workers (finishing in-flight items), then close clients and the database."""
        await self.workers.stop()
        self._started = False
        await self.highlevel.aclose()
        if self.slack_client.session is not None:
            await self.slack_client.session.close()
        await self.store.close()
