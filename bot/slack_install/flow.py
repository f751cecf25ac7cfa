"""Slack's install flow, the Bolt way: `GET /slack/install` sends the person to Slack's
authorize page (SLACK_AUTHORIZE_URL), `GET /slack/oauth_redirect` exchanges the code at
`{SLACK_API_URL}oauth.v2.access` and stores the install (tokens encrypted).

Org-wide installs (Enterprise Grid) are refused with a page saying to install the app into
each workspace: the bridge keys everything (threads, links, allowlists, budgets) by workspace,
and an org-wide install's requests would each need resolving to one.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from slack_bolt.error import BoltError
from slack_bolt.oauth.async_callback_options import (
    AsyncCallbackOptions,
    AsyncFailureArgs,
    AsyncSuccessArgs,
)
from slack_bolt.oauth.async_oauth_flow import AsyncOAuthFlow
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.oauth.installation_store.models.installation import Installation
from slack_sdk.web.async_client import AsyncWebClient

from bot.settings import Settings
from bot.slack_install.installation_store import BridgeInstallationStore
from bot.slack_install.state_store import BridgeOAuthStateStore
from bot.ui.oauth_pages import slack_installed_page, slack_not_installed_page

log = logging.getLogger(__name__)

INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"

# The bot scopes the app asks for: exactly manifest.yml's (tests/slack_install keeps them equal).
BOT_SCOPES: tuple[str, ...] = (
    "commands",
    "chat:write",
    "reactions:write",
    "channels:read",
    "groups:read",
    "im:read",
    "mpim:read",
    "channels:history",
    "groups:history",
    "im:history",
    "mpim:history",
    "users:read",
    "users:read.email",
    "files:read",
    "files:write",
)

ORG_WIDE_REFUSED = (
    "HighLevel Bridge cannot be installed for a whole Enterprise Grid organization. Install "
    "it into each workspace that should use it instead."
)
# Bolt's failure reasons, in words a person installing the app understands.
_REASONS = {
    "access_denied": "The install was cancelled in Slack, so nothing was installed.",
    "invalid_browser": (
        "This browser did not keep the install's cookie (it must start and end in the same "
        "browser). Start again from the link below."
    ),
    "invalid_state": (
        "This install link was used already or is older than ten minutes. Start again from "
        "the link below."
    ),
    "missing_code": "Slack sent no authorization code back. Start again from the link below.",
    "invalid_code": (
        "Slack did not accept the authorization (an old or reused link, or the app's client "
        "id or secret is wrong). Start again from the link below."
    ),
    "storage_error": "The install could not be saved; nothing was installed. Try again shortly.",
}

Installed = Callable[[Installation], Awaitable[None]]


class OrgWideInstallRefused(BoltError):
    """An Enterprise Grid org-wide install, which this app does not take."""


class BridgeOAuthFlow(AsyncOAuthFlow):
    """Bolt's flow, refusing org-wide installs before anything is stored, and telling the
    bridge of each new install (`on_installed`)."""

    def __init__(
        self,
        *,
        client: AsyncWebClient,
        settings: AsyncOAuthSettings,
        on_installed: Installed | None = None,
    ) -> None:
        super().__init__(client=client, logger=log, settings=settings)
        self._on_installed = on_installed

    async def store_installation(
        self, request: AsyncBoltRequest, installation: Installation
    ) -> None:
        if installation.is_enterprise_install:
            log.warning(
                "refused an org-wide install for Enterprise Grid org %s", installation.enterprise_id
            )
            raise OrgWideInstallRefused(ORG_WIDE_REFUSED)
        await super().store_installation(request, installation)
        log.info(
            "installed into Slack workspace %s (%s)",
            installation.team_id,
            installation.team_name or "no name",
        )
        if self._on_installed is not None:
            await self._on_installed(installation)


def build_oauth_flow(
    settings: Settings,
    *,
    client: AsyncWebClient,
    installation_store: BridgeInstallationStore,
    state_store: BridgeOAuthStateStore,
    on_installed: Installed | None = None,
) -> BridgeOAuthFlow:
    """The flow for SLACK_CLIENT_ID / SLACK_CLIENT_SECRET; `client` reaches SLACK_API_URL."""
    assert settings.slack_client_id and settings.slack_client_secret  # noqa: S101 - caller checks
    install_url = f"{settings.public_url}{INSTALL_PATH}"
    highlevel_connect = settings.oauth_enabled

    async def success(args: AsyncSuccessArgs) -> BoltResponse:
        return _html(
            200,
            slack_installed_page(args.installation.team_name, highlevel_connect=highlevel_connect),
        )

    async def failure(args: AsyncFailureArgs) -> BoltResponse:
        if isinstance(args.error, OrgWideInstallRefused):
            reason, status = ORG_WIDE_REFUSED, 403
        else:
            reason = _REASONS.get(args.reason, "Slack's install did not complete.")
            log.info("a Slack install did not complete: %s", args.reason)
            # Bolt suggests 200 for a cancel and 500 for a storage error: a cancelled or
            # refused install is the request's, a storage error the database's (try again).
            status = 503 if args.reason == "storage_error" else 400
        return _html(status, slack_not_installed_page(reason, install_url=install_url))

    oauth_settings = AsyncOAuthSettings(
        client_id=settings.slack_client_id,
        client_secret=settings.slack_client_secret.get_secret_value(),
        scopes=list(BOT_SCOPES),
        user_scopes=[],
        redirect_uri=settings.slack_redirect_uri,
        install_path=INSTALL_PATH,
        redirect_uri_path=REDIRECT_PATH,
        # The link goes straight to Slack: one click less than Bolt's "Add to Slack" page.
        install_page_rendering_enabled=False,
        authorization_url=settings.slack_authorize_url,
        callback_options=AsyncCallbackOptions(success=success, failure=failure),
        installation_store=installation_store,
        state_store=state_store,
    )
    return BridgeOAuthFlow(client=client, settings=oauth_settings, on_installed=on_installed)


def _html(status: int, page: str) -> BoltResponse:
    return BoltResponse(
        status=status, body=page, headers={"Content-Type": "text/html; charset=utf-8"}
    )
