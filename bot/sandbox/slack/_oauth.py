"""The install side of the sandbox Slack: more workspaces, the OAuth v2 authorize seam,
``oauth.v2.access``, ``auth.revoke`` and uninstalling with its Events API callbacks.

``SlackSimulator`` mixes this in; the state lives in ``Installs`` (``_installs.py``).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
from aiohttp import web

from bot.sandbox.slack._envelopes import event_envelope
from bot.sandbox.slack._installs import Installs, OAuthCounters
from bot.sandbox.slack._models import Enterprise, JsonDict
from bot.sandbox.slack._workspace import SlackWorkspace

logger = logging.getLogger(__name__)

_USER_AGENT = "Slackbot 1.0 (+https://api.slack.com/robots)"
# Who "clicked Allow" when the workspace has nobody a test added.
DEFAULT_INSTALLER = "U0INSTALLER"


@dataclass(frozen=True)
class EventDelivery:
    """One Events API callback the simulator POSTed to ``events_url``."""

    event_type: str
    event_id: str
    envelope: JsonDict
    status: int | None
    """HTTP status of the app's answer; None when the request failed (``error`` says why)."""
    error: str | None = None


def _with_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = f"{parts.query}&{urlencode(params)}" if parts.query else urlencode(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _signature(signing_secret: str, timestamp: int, body: str) -> str:
    # Imported late: driver.py imports simulator.py, which imports this module.
    from bot.sandbox.slack.driver import slack_signature

    return slack_signature(signing_secret, timestamp, body)


class InstallSide:
    """Workspaces beyond the first, OAuth v2 and uninstall (mixed into ``SlackSimulator``)."""

    installs: Installs
    signing_secret: str
    verification_token: str
    events_url: str | None
    oauth_redirect_uri: str | None
    # From SlackWorkspace / SlackSimulator:
    team_id: str
    app_id: str
    bot_name: str
    post_rate_per_second: float
    post_burst: int
    trigger_ttl_seconds: float
    file_base_url: str | None

    @property
    def base_url(self) -> str:  # pragma: no cover - SlackSimulator defines it
        raise NotImplementedError

    # ------------------------------------------------------------------ workspaces

    def add_workspace(
        self,
        team_id: str,
        name: str,
        *,
        domain: str | None = None,
        bot_token: str | None = None,
        bot_user_id: str | None = None,
        bot_id: str | None = None,
        admins: Iterable[str] = (),
        enterprise_id: str | None = None,
        enterprise_name: str | None = None,
    ) -> SlackWorkspace:
        """Another workspace with the app installed: its own users, channels and bot token
        (``bot_token_for(team_id)``; default ``xoxb-<team_id>-sandbox``). With
        ``enterprise_id`` it belongs to that Enterprise Grid organization (named
        ``enterprise_name``, default ``Org <enterprise_id>``), and says so where Slack does."""
        if enterprise_name is not None and enterprise_id is None:
            raise ValueError("enterprise_name needs an enterprise_id")
        suffix = team_id.removeprefix("T")
        workspace = SlackWorkspace(
            team_id=team_id,
            team_domain=domain or name.lower().replace(" ", "-"),
            team_name=name,
            bot_user_id=bot_user_id or f"U0BOT{suffix}",
            bot_id=bot_id or f"B0BOT{suffix}",
            app_id=self.app_id,
            bot_name=self.bot_name,
            post_rate_per_second=self.post_rate_per_second,
            post_burst=self.post_burst,
            trigger_ttl_seconds=self.trigger_ttl_seconds,
            admins=admins,
            enterprise=(
                Enterprise(enterprise_id, enterprise_name or f"Org {enterprise_id}")
                if enterprise_id
                else None
            ),
        )
        # File URLs point at the running simulator (None until start(), which fills it in).
        workspace.file_base_url = self.file_base_url
        self.installs.add(workspace, bot_token or f"xoxb-{team_id}-sandbox")
        return workspace

    def workspace(self, team_id: str) -> SlackWorkspace:
        """The workspace ``team_id`` (the simulator itself for its own team); KeyError if none."""
        return self.installs.get(team_id)

    @property
    def workspaces(self) -> list[SlackWorkspace]:
        """Every workspace, the simulator's own first."""
        return list(self.installs.workspaces.values())

    def bot_token_for(self, team_id: str) -> str:
        """The workspace's seeded (non-expiring) bot token."""
        return next(
            value
            for value, issued in self.installs.tokens.items()
            if issued.team_id == team_id and issued.source == "static"
        )

    def live_tokens(self, team_id: str | None = None) -> list[str]:
        """Bot tokens that work now, seeded and issued (of one workspace, or all)."""
        return self.installs.live_tokens(team_id)

    @property
    def oauth_counters(self) -> OAuthCounters:
        return self.installs.counters

    def expire_token(self, token: str) -> None:
        """Make ``token`` expired now (it answers ``token_expired`` from here on)."""
        self.installs.expire(token)

    def advance_clock(self, seconds: float) -> None:
        """Move the clock that token and code expiry read ``seconds`` forward."""
        self.installs.clock_offset += seconds

    # ------------------------------------------------------------------ OAuth v2

    @property
    def client_id(self) -> str:
        """The app's Client ID (``SLACK_CLIENT_ID`` of an app installing through this Slack)."""
        return self.installs.client_id

    @property
    def client_secret(self) -> str:
        """The app's Client Secret (``SLACK_CLIENT_SECRET``)."""
        return self.installs.client_secret

    @property
    def authorize_url(self) -> str:
        """Where ``SLACK_AUTHORIZE_URL`` should point: answers 302 straight to redirect_uri."""
        return f"{self.base_url}oauth/v2/authorize"

    async def _handle_authorize(self, request: web.Request) -> web.Response:
        """The person clicks "Allow" at once: no page, a 302 back with a code.

        ``team=T…`` picks the workspace (default: the first), ``user=U…`` the installer,
        ``deny=1`` makes the person click "Cancel" (``error=access_denied``), and
        ``enterprise=E…`` (with ``enterprise_name=``) makes it an org-wide install of that
        Enterprise Grid organization.
        """
        query = request.query
        client_id = query.get("client_id", "")
        if client_id != self.installs.client_id:
            return web.Response(status=400, text="invalid_client_id")
        # Without one, Slack sends the person to the app's configured Redirect URL.
        given_redirect = query.get("redirect_uri")
        redirect_uri = given_redirect or self.oauth_redirect_uri
        if not redirect_uri:
            return web.Response(status=400, text="bad_redirect_uri")
        team_id = query.get("team") or next(iter(self.installs.workspaces))
        if team_id not in self.installs.workspaces:
            return web.Response(status=400, text="team_not_found")
        state = query.get("state")
        params: dict[str, str] = {}
        if query.get("deny") in {"1", "true"}:
            params["error"] = "access_denied"
        else:
            workspace = self.installs.get(team_id)
            enterprise = _org_wide(workspace, query.get("enterprise"), query.get("enterprise_name"))
            params["code"] = self.installs.issue_code(
                client_id=client_id,
                team_id=team_id,
                redirect_uri=given_redirect,
                scope=query.get("scope"),
                user_id=query.get("user") or _first_person(workspace),
                enterprise=enterprise,
            )
        if state is not None:
            params["state"] = state
        raise web.HTTPFound(_with_query(redirect_uri, params))

    def _identity_of(self, token: str | None, body: JsonDict) -> JsonDict:
        """``auth.test``'s answer for ``token``: an org-wide install's token also names its
        organization, and ``url`` is the organization's (Bolt stores it as enterprise_url)."""
        enterprise = self.installs.enterprise_of(token) if token is not None else None
        if enterprise is None:
            return body
        return body | {
            "url": f"https://{enterprise.domain}.enterprise.slack.com/",
            "enterprise_id": enterprise.id,
            "is_enterprise_install": True,
        }

    def _auth_revoke(self, token: str, args: JsonDict) -> JsonDict:
        """``auth.revoke`` for the (already authenticated) calling token."""
        test = str(args.get("test", "")).lower() in {"1", "true"}
        if not test:
            self.installs.revoke(token)
        return {"ok": True, "revoked": not test}

    # ------------------------------------------------------------------ uninstall

    async def uninstall(self, team_id: str) -> list[EventDelivery]:
        """The workspace removes the app: its tokens stop working (``token_revoked``) and,
        with ``events_url`` set, ``app_uninstalled`` then ``tokens_revoked`` are POSTed there,
        signed with ``signing_secret``. Returns what was delivered (nothing without a URL)."""
        workspace = self.installs.get(team_id)
        self.installs.revoke_team(team_id)
        if self.events_url is None:
            return []
        events: list[JsonDict] = [
            {"type": "app_uninstalled"},
            {"type": "tokens_revoked", "tokens": {"bot": [workspace.bot_user_id]}},
        ]
        deliveries: list[EventDelivery] = []
        async with httpx.AsyncClient(timeout=10.0) as client:
            for event in events:
                envelope = self.event_envelope(workspace, event)
                deliveries.append(await self._deliver(client, self.events_url, envelope))
        return deliveries

    def event_envelope(self, workspace: SlackWorkspace, event: JsonDict) -> JsonDict:
        """Slack's ``event_callback`` envelope for ``event`` in ``workspace``."""
        event_time = int(time.time())
        return event_envelope(
            workspace,
            {**event, "event_ts": f"{event_time}.{secrets.randbelow(10**6):06d}"},
            token=self.verification_token,
            team_id=workspace.team_id,
            api_app_id=workspace.app_id,
            event_id=f"Ev{secrets.token_hex(5).upper()}",
            event_time=event_time,
        )

    async def _deliver(
        self, client: httpx.AsyncClient, url: str, envelope: JsonDict
    ) -> EventDelivery:
        body = json.dumps(envelope)
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": _USER_AGENT,
            "X-Slack-Request-Timestamp": str(timestamp),
            "X-Slack-Signature": _signature(self.signing_secret, timestamp, body),
        }
        event_type = str(envelope["event"]["type"])
        try:
            response = await client.post(url, content=body.encode(), headers=headers)
        except httpx.HTTPError as exc:
            logger.debug("Slack simulator: %s delivery failed: %s", event_type, exc)
            return EventDelivery(event_type, envelope["event_id"], envelope, None, repr(exc))
        return EventDelivery(event_type, envelope["event_id"], envelope, response.status_code)


def _org_wide(
    workspace: SlackWorkspace, enterprise_id: str | None, name: str | None
) -> Enterprise | None:
    """The organization an authorize link installs org-wide into (None: just the workspace);
    unnamed, it is the workspace's own organization's name when the ids match."""
    if not enterprise_id:
        return None
    own = workspace.enterprise
    default = own.name if own is not None and own.id == enterprise_id else f"Org {enterprise_id}"
    return Enterprise(enterprise_id, name or default)


def _first_person(workspace: SlackWorkspace) -> str:
    people = [user.id for user in workspace.users() if not user.is_bot]
    return people[0] if people else DEFAULT_INSTALLER
