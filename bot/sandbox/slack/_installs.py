"""Who may call the sandbox Slack: workspaces, the tokens bound to them, and OAuth v2.

Follows docs.slack.dev (authentication/installing-with-oauth, authentication/using-token-rotation,
reference/methods/oauth.v2.access, reference/methods/auth.revoke): a token belongs to exactly one
workspace, an authorization code works once within ten minutes, a refresh token works once, and
an expired rotating token answers ``token_expired`` on every method.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from bot.sandbox.slack._models import Enterprise, JsonDict
from bot.sandbox.slack._workspace import ApiFailure, SlackWorkspace

# docs.slack.dev, installing-with-oauth: "codes expire ten minutes after being issued".
CODE_TTL_SECONDS = 10 * 60
# Slack's rotating tokens last twelve hours.
DEFAULT_TOKEN_TTL_SECONDS = 12 * 60 * 60

TokenSource = Literal["static", "oauth", "refresh"]


@dataclass
class IssuedToken:
    """A bot token the simulator accepts (the value is the dict key; never logged)."""

    team_id: str
    source: TokenSource
    expires_at: float | None = None
    revoked: bool = False
    enterprise: Enterprise | None = None
    """Set for an org-wide install's token (``is_enterprise_install``)."""


@dataclass
class OAuthCounters:
    """What the OAuth side did, for tests to assert on."""

    codes_issued: int = 0
    codes_exchanged: int = 0
    invalid_codes: int = 0
    tokens_issued: int = 0
    refreshes: int = 0
    refresh_token_reuses: int = 0
    tokens_revoked: int = 0


@dataclass
class _Code:
    team_id: str
    client_id: str
    redirect_uri: str | None
    scope: str
    user_id: str
    expires_at: float
    enterprise: Enterprise | None = None
    used: bool = False


@dataclass
class _Refresh:
    team_id: str
    scope: str
    enterprise: Enterprise | None = None
    used: bool = False


def _client_credentials(
    args: Mapping[str, Any], authorization: str | None
) -> tuple[str | None, str | None]:
    """client_id/client_secret from HTTP Basic auth (slack_sdk) or the form (curl)."""
    if authorization and authorization.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(authorization[6:].strip()).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None, None
        client_id, _, client_secret = decoded.partition(":")
        return client_id or None, client_secret or None
    form_id = args.get("client_id")
    form_secret = args.get("client_secret")
    return (str(form_id) if form_id else None, str(form_secret) if form_secret else None)


class Installs:
    """Workspaces by team id, their bot tokens, OAuth codes and refresh tokens."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        token_rotation: bool,
        token_ttl: float,
        default_scope: str,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_rotation = token_rotation
        self.token_ttl = token_ttl
        self.default_scope = default_scope
        self.counters = OAuthCounters()
        self.workspaces: dict[str, SlackWorkspace] = {}
        self.tokens: dict[str, IssuedToken] = {}
        self._codes: dict[str, _Code] = {}
        self._refresh_tokens: dict[str, _Refresh] = {}
        # Added to the wall clock for token and code expiry: tests move time on, never sleep.
        self.clock_offset = 0.0

    def now(self) -> float:
        return time.time() + self.clock_offset

    # ------------------------------------------------------------------ workspaces and tokens

    def add(self, workspace: SlackWorkspace, bot_token: str) -> None:
        if workspace.team_id in self.workspaces:
            raise ValueError(f"workspace {workspace.team_id} already exists")
        self.workspaces[workspace.team_id] = workspace
        self.tokens[bot_token] = IssuedToken(workspace.team_id, "static")

    def get(self, team_id: str) -> SlackWorkspace:
        workspace = self.workspaces.get(team_id)
        if workspace is None:
            raise KeyError(f"no workspace {team_id}; add_workspace() it first")
        return workspace

    def resolve(self, token: str) -> SlackWorkspace:
        """The workspace a bot token belongs to, or the error Slack answers for it."""
        issued = self.tokens.get(token)
        if issued is None:
            raise ApiFailure("invalid_auth")
        if issued.revoked:
            raise ApiFailure("token_revoked")
        if issued.expires_at is not None and self.now() >= issued.expires_at:
            raise ApiFailure("token_expired")
        return self.workspaces[issued.team_id]

    def live_tokens(self, team_id: str | None = None) -> list[str]:
        """Bot tokens that work now (of one workspace, or of all)."""
        now = self.now()
        return [
            value
            for value, issued in self.tokens.items()
            if not issued.revoked
            and (issued.expires_at is None or issued.expires_at > now)
            and (team_id is None or issued.team_id == team_id)
        ]

    def enterprise_of(self, token: str) -> Enterprise | None:
        """The organization an org-wide install's token belongs to (None for the others)."""
        issued = self.tokens.get(token)
        return issued.enterprise if issued is not None else None

    def expire(self, token: str) -> None:
        self.tokens[token].expires_at = self.now()

    def revoke(self, token: str) -> bool:
        issued = self.tokens.get(token)
        if issued is None or issued.revoked:
            return False
        issued.revoked = True
        self.counters.tokens_revoked += 1
        return True

    def revoke_team(self, team_id: str) -> int:
        """Uninstall: every token and refresh token of the workspace stops working."""
        revoked = sum(
            self.revoke(value) for value, issued in self.tokens.items() if issued.team_id == team_id
        )
        for refresh in self._refresh_tokens.values():
            if refresh.team_id == team_id:
                refresh.used = True
        return revoked

    def _new_bot_token(
        self, team_id: str, source: TokenSource, enterprise: Enterprise | None
    ) -> tuple[str, int | None]:
        value = f"xoxb-{team_id}-{secrets.token_hex(12)}"
        expires_in = int(self.token_ttl) if self.token_rotation else None
        expires_at = self.now() + self.token_ttl if self.token_rotation else None
        self.tokens[value] = IssuedToken(team_id, source, expires_at, enterprise=enterprise)
        self.counters.tokens_issued += 1
        return value, expires_in

    # ------------------------------------------------------------------ OAuth v2

    def issue_code(
        self,
        *,
        client_id: str,
        team_id: str,
        redirect_uri: str | None,
        scope: str | None,
        user_id: str,
        enterprise: Enterprise | None = None,
    ) -> str:
        """A code for the authorize redirect, for ``oauth.v2.access`` to exchange once; with
        ``enterprise``, for an org-wide install (still bound to workspace ``team_id`` here)."""
        self.get(team_id)
        code = f"{team_id}.{secrets.token_hex(16)}"
        self._codes[code] = _Code(
            team_id=team_id,
            client_id=client_id,
            redirect_uri=redirect_uri,
            scope=scope or self.default_scope,
            user_id=user_id,
            expires_at=self.now() + CODE_TTL_SECONDS,
            enterprise=enterprise,
        )
        self.counters.codes_issued += 1
        return code

    def oauth_v2_access(self, args: Mapping[str, Any], authorization: str | None) -> JsonDict:
        """``oauth.v2.access``: the success body, or raises ``ApiFailure``."""
        client_id, client_secret = _client_credentials(args, authorization)
        if client_id != self.client_id:
            raise ApiFailure("invalid_client_id")
        if client_secret != self.client_secret:
            raise ApiFailure("bad_client_secret")
        grant_type = str(args.get("grant_type") or "authorization_code")
        if grant_type == "authorization_code":
            return self._exchange_code(args)
        if grant_type == "refresh_token":
            return self._refresh(args)
        raise ApiFailure("invalid_grant_type")

    def _exchange_code(self, args: Mapping[str, Any]) -> JsonDict:
        code = self._codes.get(str(args.get("code") or ""))
        if (
            code is None
            or code.used
            or code.client_id != self.client_id
            or self.now() >= code.expires_at
        ):
            self.counters.invalid_codes += 1
            raise ApiFailure("invalid_code")
        redirect_uri = args.get("redirect_uri")
        # "This must match the originally submitted URI (if one was sent)."
        if code.redirect_uri is not None and redirect_uri and redirect_uri != code.redirect_uri:
            raise ApiFailure("bad_redirect_uri")
        code.used = True
        self.counters.codes_exchanged += 1
        workspace = self.get(code.team_id)
        token, expires_in = self._new_bot_token(workspace.team_id, "oauth", code.enterprise)
        body = self._token_body(workspace, token, code.scope, expires_in, code.enterprise)
        body["authed_user"] = {"id": code.user_id}
        return body

    def _refresh(self, args: Mapping[str, Any]) -> JsonDict:
        value = str(args.get("refresh_token") or "")
        refresh = self._refresh_tokens.get(value)
        if refresh is None or refresh.used:
            if refresh is not None:
                self.counters.refresh_token_reuses += 1
            raise ApiFailure("invalid_refresh_token")
        refresh.used = True
        self.counters.refreshes += 1
        workspace = self.get(refresh.team_id)
        # The access token the refresh token came with keeps working until it expires.
        token, expires_in = self._new_bot_token(workspace.team_id, "refresh", refresh.enterprise)
        return self._token_body(workspace, token, refresh.scope, expires_in, refresh.enterprise)

    def _token_body(
        self,
        workspace: SlackWorkspace,
        token: str,
        scope: str,
        expires_in: int | None,
        enterprise: Enterprise | None,
    ) -> JsonDict:
        body: JsonDict = {
            "ok": True,
            "access_token": token,
            "token_type": "bot",
            "scope": scope,
            "bot_user_id": workspace.bot_user_id,
            "app_id": workspace.app_id,
            "team": {"id": workspace.team_id, "name": workspace.team_name},
            # A workspace of a Grid organization names it; the install is still the workspace's.
            "enterprise": workspace.enterprise.to_api() if workspace.enterprise else None,
            "is_enterprise_install": False,
        }
        if enterprise is not None:
            # docs.slack.dev, oauth.v2.access: an org-wide install names the organization and
            # no team.
            body |= {
                "team": None,
                "enterprise": {"id": enterprise.id, "name": enterprise.name},
                "is_enterprise_install": True,
            }
        if expires_in is not None:
            refresh_token = f"xoxe-1-{secrets.token_hex(24)}"
            self._refresh_tokens[refresh_token] = _Refresh(workspace.team_id, scope, enterprise)
            body["refresh_token"] = refresh_token
            body["expires_in"] = expires_in
        return body
