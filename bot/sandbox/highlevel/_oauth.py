"""HighLevel's OAuth 2.0 server, simulated: codes, access and refresh tokens, PITs, revocation.

No HTTP here (``_oauth_routes`` has it). Error wording follows node-oauth2-server, whose
``Invalid token: access token is invalid`` HighLevel's gateway answers already.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from ._errors import ApiError

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "AuthCode",
    "OAuthCounters",
    "OAuthError",
    "OAuthServer",
    "SimToken",
    "app_id_of",
]

# Published sandbox-only credentials: they open nothing but this simulator.
DEFAULT_CLIENT_ID = "sbxapp000000000000000001-sbxclient"
DEFAULT_CLIENT_SECRET = "sandbox-client-secret-000000000000"  # noqa: S105
SANDBOX_USER_ID = "sbxUser0000000000001"
CODE_TTL_SECONDS = 600.0

UserType = Literal["Location", "Company"]
TokenKind = Literal["pit", "access", "refresh"]


def app_id_of(client_id: str) -> str:
    """Marketplace client ids are ``<appId>-<suffix>``; installedLocations wants the appId."""
    return client_id.split("-", 1)[0]


class OAuthError(Exception):
    """An RFC 6749 error answer of ``POST /oauth/token``: ``{error, error_description}``."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.body = {"error": error, "error_description": description}


def invalid_grant(what: str) -> OAuthError:
    return OAuthError(400, "invalid_grant", f"Invalid grant: {what}")


def invalid_request(description: str) -> OAuthError:
    return OAuthError(400, "invalid_request", f"Invalid request: {description}")


@dataclass
class SimToken:
    """A bearer or refresh token and what it may reach."""

    value: str
    kind: TokenKind
    user_type: UserType
    company_id: str
    location_id: str | None  # None for Company tokens
    scope: str = ""
    expires_at: float | None = None  # time.monotonic(); None never expires (PIT, refresh)
    revoked: bool = False
    approved_locations: list[str] = field(default_factory=list)  # Company tokens
    used_at: float | None = None  # refresh tokens: when exchanged (single use)
    answer: dict[str, Any] | None = None  # refresh tokens: what their exchange answered
    requests: int = 0  # API requests made with it (access tokens and PITs)

    @property
    def resource_id(self) -> str:
        """What HighLevel's rate limit counts against: the location, else the company."""
        return self.location_id or self.company_id

    def expired(self) -> bool:
        return self.expires_at is not None and time.monotonic() >= self.expires_at


@dataclass
class AuthCode:
    value: str
    client_id: str
    redirect_uri: str
    scope: str
    user_type: UserType
    location_id: str | None
    approved_locations: list[str]
    expires_at: float
    used: bool = False


@dataclass
class OAuthCounters:
    """For tests: what the OAuth server did (``refresh_token_reuses`` should stay 0)."""

    codes_issued: int = 0
    codes_exchanged: int = 0
    code_rejections: int = 0  # unknown, reused or expired codes presented
    tokens_issued: int = 0  # access tokens: code exchanges, refreshes, locationToken
    refreshes: int = 0  # successful refresh_token grants
    refresh_token_reuses: int = 0  # an already-used refresh token presented again
    refresh_grace_answers: int = 0  # reuses answered from the grace window instead
    location_tokens: int = 0  # POST /oauth/locationToken successes
    invalid_client: int = 0


class OAuthServer:
    """Marketplace app credentials, codes and tokens of one simulated agency."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        company_id: str,
        token_ttl: int,
        refresh_grace_seconds: float = 0.0,
    ) -> None:
        if token_ttl < 1:
            raise ValueError("token_ttl must be at least 1 second")
        self.client_id = client_id
        self.client_secret = client_secret
        self.company_id = company_id
        self.token_ttl = token_ttl
        # HighLevel answers concurrent refreshes of one token within 30 s alike; off by default
        # so that a bridge reusing a refresh token is seen, not forgiven.
        self.refresh_grace_seconds = refresh_grace_seconds
        self.tokens: dict[str, SimToken] = {}
        self.codes: dict[str, AuthCode] = {}
        self.counters = OAuthCounters()
        self.scopes_requested: list[str] = []  # the `scope` of each chooselocation

    @property
    def app_id(self) -> str:
        return app_id_of(self.client_id)

    # ------------------------------------------------------------------ bearer tokens

    def authenticate(self, header: str | None) -> SimToken:
        """The token behind ``Authorization: Bearer …``, else ApiError 401."""
        value = header[7:] if header and header.startswith("Bearer ") else None
        token = self.tokens.get(value) if value else None
        if token is None or token.kind == "refresh":
            raise ApiError.unauthorized("Invalid token: access token is invalid")
        if token.revoked or token.expired():
            # What HighLevel answers for an expired or revoked OAuth token (HLD#213).
            raise ApiError.unauthorized("Invalid JWT")
        token.requests += 1
        return token

    def revoke(self, *, location_id: str | None = None, company: bool = False) -> int:
        """Revoke OAuth tokens (not PITs) of a location, or of the company. Returns how many."""
        revoked = 0
        for token in self.tokens.values():
            if token.kind == "pit" or token.revoked:
                continue
            if (company and token.user_type == "Company") or (
                location_id is not None and token.location_id == location_id
            ):
                token.revoked = True
                revoked += 1
        return revoked

    # ------------------------------------------------------------------ codes

    def issue_code(
        self,
        *,
        redirect_uri: str,
        scope: str,
        user_type: UserType,
        location_id: str | None,
        approved_locations: list[str],
    ) -> str:
        value = secrets.token_hex(20)
        self.codes[value] = AuthCode(
            value,
            self.client_id,
            redirect_uri,
            scope,
            user_type,
            location_id,
            approved_locations,
            time.monotonic() + CODE_TTL_SECONDS,
        )
        self.counters.codes_issued += 1
        self.scopes_requested.append(scope)
        return value

    # ------------------------------------------------------------------ POST /oauth/token

    def token_endpoint(self, form: dict[str, str]) -> dict[str, Any]:
        """Both grants of ``POST /oauth/token``. Raises OAuthError."""
        grant_type = form.get("grant_type", "")
        for name in ("client_id", "client_secret", "grant_type"):
            if not form.get(name):
                raise invalid_request(f"missing parameter: `{name}`")
        if form["client_id"] != self.client_id or not secrets.compare_digest(
            form["client_secret"], self.client_secret
        ):
            self.counters.invalid_client += 1
            raise OAuthError(401, "invalid_client", "Invalid client: client is invalid")
        if grant_type == "authorization_code":
            return self._exchange_code(form)
        if grant_type == "refresh_token":
            return self._refresh(form)
        raise OAuthError(
            400, "unsupported_grant_type", "Unsupported grant type: `grant_type` is invalid"
        )

    def _exchange_code(self, form: dict[str, str]) -> dict[str, Any]:
        if not form.get("code"):
            raise invalid_request("missing parameter: `code`")
        code = self.codes.get(form["code"])
        if code is None or code.used or time.monotonic() >= code.expires_at:
            self.counters.code_rejections += 1
            raise invalid_grant("authorization code is invalid")
        if form.get("redirect_uri") and form["redirect_uri"] != code.redirect_uri:
            self.counters.code_rejections += 1
            raise invalid_request("`redirect_uri` is invalid")
        code.used = True
        self.counters.codes_exchanged += 1
        return self._grant(
            code.user_type, code.location_id, code.scope, list(code.approved_locations)
        )

    def _refresh(self, form: dict[str, str]) -> dict[str, Any]:
        if not form.get("refresh_token"):
            raise invalid_request("missing parameter: `refresh_token`")
        old = self.tokens.get(form["refresh_token"])
        if old is None or old.kind != "refresh" or old.revoked:
            raise invalid_grant("refresh token is invalid")
        if old.used_at is not None:
            within_grace = time.monotonic() - old.used_at < self.refresh_grace_seconds
            if within_grace and old.answer is not None:
                self.counters.refresh_grace_answers += 1
                return dict(old.answer)
            self.counters.refresh_token_reuses += 1
            raise invalid_grant("refresh token is invalid")
        old.used_at = time.monotonic()
        answer = self._grant(
            old.user_type, old.location_id, old.scope, list(old.approved_locations)
        )
        old.answer = dict(answer)
        self.counters.refreshes += 1
        return answer

    def _grant(
        self,
        user_type: UserType,
        location_id: str | None,
        scope: str,
        approved_locations: list[str],
    ) -> dict[str, Any]:
        """GetAccessCodeSuccessfulResponseDto with a new access and refresh token."""
        access = self._new_access(user_type, location_id, scope, approved_locations)
        refresh = SimToken(
            "sbxrt-" + secrets.token_urlsafe(32),
            "refresh",
            user_type,
            self.company_id,
            location_id,
            scope,
            approved_locations=approved_locations,
        )
        self.tokens[refresh.value] = refresh
        answer: dict[str, Any] = {
            "access_token": access.value,
            "token_type": "Bearer",
            "expires_in": self.token_ttl,
            "refresh_token": refresh.value,
            "scope": scope,
            "userType": user_type,
            "companyId": self.company_id,
            "userId": SANDBOX_USER_ID,
            "isBulkInstallation": user_type == "Company",
        }
        if user_type == "Location":
            answer["locationId"] = location_id
        else:
            answer["approvedLocations"] = approved_locations
            answer["installToFutureLocations"] = False
            answer["approveAllLocations"] = True
        return answer

    def _new_access(
        self,
        user_type: UserType,
        location_id: str | None,
        scope: str,
        approved_locations: list[str] | None = None,
    ) -> SimToken:
        access = SimToken(
            "sbxat-" + secrets.token_urlsafe(32),
            "access",
            user_type,
            self.company_id,
            location_id,
            scope,
            expires_at=time.monotonic() + self.token_ttl,
            approved_locations=approved_locations or [],
        )
        self.tokens[access.value] = access
        self.counters.tokens_issued += 1
        return access

    # ------------------------------------------------------------------ POST /oauth/locationToken

    def location_token(self, company_token: SimToken, location_id: str) -> dict[str, Any]:
        """A Location access token minted with a Company token (no refresh token: the spec)."""
        access = self._new_access("Location", location_id, company_token.scope)
        self.counters.location_tokens += 1
        return {
            "access_token": access.value,
            "token_type": "Bearer",
            "expires_in": self.token_ttl,
            "scope": company_token.scope,
            "locationId": location_id,
            "userId": SANDBOX_USER_ID,
            "appId": self.app_id,
            "userType": "Location",
            "companyId": self.company_id,
        }
