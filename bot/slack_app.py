"""The Slack side of the bridge, built from settings: the Web API clients, each workspace's
poster and token (`SlackWorkspaces`), the install flow, and the Bolt app."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncApp
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.oauth.installation_store.models.installation import Installation
from slack_sdk.web.async_client import AsyncWebClient

from bot.cluster import SharedBudget
from bot.observability import BridgeMetrics
from bot.posting.pacing import ChannelPacer
from bot.posting.poster import SlackPoster
from bot.settings import Settings
from bot.slack_install.authorize import WorkspaceAuthorize
from bot.slack_install.flow import BridgeOAuthFlow, build_oauth_flow
from bot.slack_install.installation_store import BridgeInstallationStore
from bot.slack_install.state_store import BridgeOAuthStateStore
from bot.slack_install.workspaces import SlackOAuthApp, SlackWorkspaces
from bot.tenancy.crypto import TokenCipher
from storage import Store


def build_slack_client(
    settings: Settings, *, pace_posts: bool = False, session: aiohttp.ClientSession | None = None
) -> AsyncWebClient:
    """The Web API client: SLACK_API_URL is the seam to a fake Slack.

    With `pace_posts` the caller paces per channel and handles 429s and lost answers itself
    (`SlackPoster`: a post whose answer never came is looked for before it is made again, so
    slack_sdk must not re-post blindly after a dropped connection); otherwise slack_sdk retries
    a failed connection and waits out a 429's Retry-After. Without a `session` slack_sdk opens
    and closes a connection (TLS handshake and all) for every call.
    """
    retry_handlers: list[AsyncRetryHandler] = []
    if not pace_posts:
        retry_handlers += [
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
            AsyncRateLimitErrorRetryHandler(max_retry_count=5),
        ]
    token = settings.slack_bot_token
    return AsyncWebClient(
        token=token.get_secret_value() if token is not None else None,
        base_url=settings.slack_api_url,
        timeout=15,
        retry_handlers=retry_handlers,
        session=session,
    )


def build_bolt_app(
    settings: Settings,
    client: AsyncWebClient,
    *,
    oauth_flow: BridgeOAuthFlow | None = None,
    authorize: WorkspaceAuthorize | None = None,
) -> AsyncApp:
    """The Bolt app; request verification is on (Socket Mode requests skip it by design).

    With `oauth_flow` (several workspaces) each request is authorized with its workspace's
    token (`authorize`); otherwise with SLACK_BOT_TOKEN's, as Bolt does for one workspace.
    """
    secret = settings.slack_signing_secret
    # Bolt gives every logger it makes the level of its base logger (without one, the root's),
    # and at INFO it logs whole request bodies, e.g. on a failed signature: its base logger
    # stays at WARNING or above, whatever LOG_LEVEL is.
    bolt_logger = logging.getLogger("slack_bolt")
    bolt_logger.setLevel(max(logging.WARNING, logging.getLevelName(settings.log_level)))
    extra: dict[str, Any] = {}
    if oauth_flow is not None:
        # Each request gets its workspace's token from `authorize`: the app's own client has
        # none (SLACK_BOT_TOKEN, when set, is served through `authorize` too).
        client = AsyncWebClient(
            base_url=client.base_url,
            timeout=client.timeout,
            session=client.session,
            retry_handlers=client.retry_handlers,
        )
        extra = {
            "oauth_flow": oauth_flow,
            # An AsyncAuthorize instance is taken beside an oauth_flow (a function is not).
            "authorize": authorize,
            "user_facing_authorize_error_message": not_installed_text(settings.public_url),
        }
    return AsyncApp(
        client=client,
        signing_secret=secret.get_secret_value() if secret else "",
        request_verification_enabled=True,
        process_before_response=False,
        logger=bolt_logger,
        **extra,
    )


def not_installed_text(public_url: str | None) -> str:
    """What a person in a workspace the app is not installed in (any more) is told."""
    again = f" An admin can install it at {public_url}/slack/install." if public_url else ""
    return f"HighLevel Bridge is not installed in this workspace.{again}"


def slack_workspaces(
    settings: Settings,
    store: Store,
    cipher: TokenCipher | None,
    session: aiohttp.ClientSession,
    budget: SharedBudget | None,
    metrics: BridgeMetrics,
    *,
    on_installed: Callable[[Installation], Awaitable[None]],
) -> tuple[SlackWorkspaces, BridgeInstallationStore | None, BridgeOAuthFlow | None]:
    """Each workspace's poster and token: SLACK_BOT_TOKEN's, the installed ones, or both; and
    the install flow when workspaces install the app (SLACK_CLIENT_ID)."""

    def make_poster(client: AsyncWebClient, team_id: str) -> SlackPoster:
        poster = SlackPoster(
            client,
            ChannelPacer(
                rate_per_second=settings.slack_post_rate,
                budget=budget,
                # The workspace's id keys the channel's shared budget; SLACK_BOT_TOKEN's is
                # learnt once by its poster (auth.test).
                team=team_id or (lambda: poster.team_id()),
            ),
            observer=metrics,
        )
        return poster

    static = (
        build_slack_client(settings, pace_posts=True, session=session)
        if settings.slack_bot_token is not None
        else None
    )
    if not settings.slack_oauth_enabled:
        return SlackWorkspaces(make_poster=make_poster, static_client=static), None, None
    assert cipher is not None and settings.slack_client_id  # noqa: S101 - settings check
    assert settings.slack_client_secret is not None  # noqa: S101
    installs = BridgeInstallationStore(store, cipher)
    # Without a token: oauth.v2.access (the install's code, and refreshing tokens).
    app_client = AsyncWebClient(
        base_url=settings.slack_api_url, timeout=15, session=session, retry_handlers=[]
    )
    workspaces = SlackWorkspaces(
        make_poster=make_poster,
        static_client=static,
        installs=installs,
        store=store,
        app=SlackOAuthApp(settings.slack_client_id, settings.slack_client_secret, app_client),
    )

    flow = build_oauth_flow(
        settings,
        client=app_client,
        installation_store=installs,
        state_store=BridgeOAuthStateStore(store),
        on_installed=on_installed,
    )
    return workspaces, installs, flow
