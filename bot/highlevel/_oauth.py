"""HighLevel's OAuth 2.0 endpoints (apps/oauth.json): code exchange, refresh, and an agency
(Company) token's installed locations and location tokens.

Tokens and codes are secrets: they travel as ``SecretStr``, and nothing here logs them or puts
them in an error message (HighLevel's error text is kept; it names no token).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from ._client import DEFAULT_TIMEOUT, USER_AGENT
from ._errors import (
    AuthError,
    HighLevelError,
    InvalidGrantError,
    UnavailableError,
    error_for_status,
)
from ._transport import AiohttpTransport
from ._wire import _try_json

__all__ = ["OAUTH_VERSION", "HighLevelOAuth", "InstalledLocation", "TokenGrant"]

logger = logging.getLogger("bot.highlevel.oauth")

OAUTH_VERSION = "2021-07-28"
"""Version header of /oauth/installedLocations, /oauth/locationToken and /locations/{id}
(/oauth/token has none)."""

# Failures before a connection existed: HighLevel never saw the request (see _client).
_NEVER_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
)
_PAGE = 100  # installedLocations page size; the default is 20


@dataclass(frozen=True)
class TokenGrant:
    """What /oauth/token or /oauth/locationToken handed out."""

    access_token: SecretStr
    refresh_token: SecretStr | None  # None for a location token minted from a Company token
    expires_in: float
    user_type: Literal["Location", "Company"]
    location_id: str | None
    company_id: str | None
    scope: str
    approved_locations: tuple[str, ...] = ()


@dataclass(frozen=True)
class InstalledLocation:
    location_id: str
    name: str


class HighLevelOAuth:
    """Client of HighLevel's OAuth endpoints for one Marketplace app (client id and secret).

    Errors are the ``HighLevelError`` tree: ``InvalidGrantError`` for a used/revoked refresh
    token or a bad code, ``AuthError`` for bad client credentials or a refused agency token,
    ``UnavailableError`` without an answer. ``may_have_acted`` is True when HighLevel may have
    carried out a token request we got no good answer to (a refresh may then have consumed the
    refresh token).
    """

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: SecretStr,
        base_url: str,
        timeout: httpx.Timeout | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not client_id or not client_secret.get_secret_value():
            raise ValueError("client_id and client_secret are required")
        self._client_id = client_id
        self._client_secret = client_secret
        self._http = httpx.AsyncClient(
            base_url=base_url,
            timeout=timeout if timeout is not None else DEFAULT_TIMEOUT,
            transport=transport if transport is not None else AiohttpTransport(max_connections=5),
            headers={"Accept": "application/json", "User-Agent": USER_AGENT},
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def exchange_code(self, code: str, *, redirect_uri: str) -> TokenGrant:
        """POST /oauth/token, grant_type=authorization_code."""
        if not code:
            raise InvalidGrantError("no authorization code given")
        body = await self._token(
            {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        )
        return _grant(body, "/oauth/token")

    async def refresh(self, refresh_token: SecretStr, *, user_type: str) -> TokenGrant:
        """POST /oauth/token, grant_type=refresh_token. The refresh token is single-use: the
        answer's new one must be stored before anything else happens."""
        body = await self._token(
            {
                "grant_type": "refresh_token",
                "refresh_token": refresh_token.get_secret_value(),
                "user_type": user_type,
            }
        )
        return _grant(body, "/oauth/token")

    async def installed_locations(
        self,
        company_token: SecretStr,
        *,
        company_id: str,
        app_id: str,
        location_id: str | None = None,
    ) -> list[InstalledLocation]:
        """GET /oauth/installedLocations (isInstalled=true), every page; ``location_id`` narrows
        it to that one location (to learn its name)."""
        found: list[InstalledLocation] = []
        skip = 0
        while True:
            params: dict[str, str] = {
                "companyId": company_id,
                "appId": app_id,
                "isInstalled": "true",
                "skip": str(skip),
                "limit": str(_PAGE),
            }
            if location_id:
                params["locationId"] = location_id
            body = await self._send(
                "GET",
                "/oauth/installedLocations",
                params=params,
                headers=_api_headers(company_token),
                write=False,
            )
            page = body.get("locations") if isinstance(body, dict) else None
            if not isinstance(page, list):
                raise _unexpected("/oauth/installedLocations", "no 'locations' list")
            for item in page:
                if isinstance(item, dict) and isinstance(item.get("_id"), str) and item["_id"]:
                    name = item.get("name")
                    found.append(
                        InstalledLocation(item["_id"], name if isinstance(name, str) else "")
                    )
            count = body.get("count")
            skip += len(page)
            if len(page) < _PAGE or (isinstance(count, int | float) and skip >= count):
                return found

    async def location_token(
        self, company_token: SecretStr, *, company_id: str, location_id: str
    ) -> TokenGrant:
        """POST /oauth/locationToken: a Location token minted from the agency's token."""
        body = await self._send(
            "POST",
            "/oauth/locationToken",
            data={"companyId": company_id, "locationId": location_id},
            headers=_api_headers(company_token),
            write=True,
        )
        grant = _grant(body, "/oauth/locationToken", default_user_type="Location")
        if grant.location_id is None:
            grant = _with_location(grant, location_id)
        return grant

    async def location_name(self, access_token: SecretStr, location_id: str) -> str | None:
        """GET /locations/{locationId} (apps/locations.json, scope locations.readonly): the
        sub-account's name, which a Location token's answer lacks; None when it has none."""
        body = await self._send(
            "GET",
            f"/locations/{quote(location_id, safe='')}",
            headers=_api_headers(access_token),
            write=False,
        )
        location = body.get("location") if isinstance(body, dict) else None
        if not isinstance(location, dict):
            raise _unexpected("/locations/{locationId}", "no 'location' object")
        name = location.get("name")
        return (name.strip() or None) if isinstance(name, str) else None

    # ----------------------------------------------------------------------------------------

    async def _token(self, fields: dict[str, str]) -> Any:
        form = {
            "client_id": self._client_id,
            "client_secret": self._client_secret.get_secret_value(),
            **fields,
        }
        # Form-encoded and without a Version header, as apps/oauth.json has it.
        return await self._send("POST", "/oauth/token", data=form, headers={}, write=True)

    async def _send(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str],
        write: bool,
        params: dict[str, str] | None = None,
        data: dict[str, str] | None = None,
    ) -> Any:
        try:
            response = await self._http.request(
                method, path, params=params, data=data, headers=headers
            )
        except httpx.RequestError as exc:
            never_sent = isinstance(exc, _NEVER_SENT)
            logger.info("HighLevel %s %s failed: %s", method, path, type(exc).__name__)
            # The exception text names only the URL (no token travels in a URL here).
            raise UnavailableError(
                f"HighLevel unreachable ({type(exc).__name__})",
                may_have_acted=write and not never_sent,
            ) from exc
        logger.debug("HighLevel %s %s -> %d", method, path, response.status_code)
        body = _try_json(response)
        status = response.status_code
        if 200 <= status < 300:
            if body is None:
                raise _unexpected(path, "body is not JSON", may_have_acted=write)
            return body
        error = body.get("error") if isinstance(body, dict) else None
        message = _message(body, response)
        trace_id = body.get("traceId") if isinstance(body, dict) else None
        trace_id = trace_id if isinstance(trace_id, str) else None
        if status == 400 and error == "invalid_grant":
            raise InvalidGrantError(message, status_code=status, trace_id=trace_id)
        if status == 401 and error == "invalid_client":
            raise AuthError(
                f"HighLevel refused the app's client id/secret: {message}",
                status_code=status,
                trace_id=trace_id,
            )
        raise error_for_status(
            status,
            message,
            trace_id=trace_id,
            may_have_acted=write and status >= 500,
            retry_after=0.0,
        )


def _api_headers(token: SecretStr) -> dict[str, str]:
    return {"Authorization": f"Bearer {token.get_secret_value()}", "Version": OAUTH_VERSION}


def _grant(body: Any, path: str, *, default_user_type: str | None = None) -> TokenGrant:
    # A 2xx we cannot use still means HighLevel acted: a refresh token is spent.
    if not isinstance(body, dict):
        raise _unexpected(path, "body is not an object", may_have_acted=True)
    access = body.get("access_token")
    if not isinstance(access, str) or not access:
        raise _unexpected(path, "no access_token", may_have_acted=True)
    refresh = body.get("refresh_token")
    expires_in = body.get("expires_in")
    if not isinstance(expires_in, int | float) or isinstance(expires_in, bool) or expires_in <= 0:
        raise _unexpected(path, "no positive expires_in", may_have_acted=True)
    user_type = body.get("userType", default_user_type)
    if user_type not in ("Location", "Company"):
        raise _unexpected(path, "userType is neither Location nor Company", may_have_acted=True)
    approved = body.get("approvedLocations")
    return TokenGrant(
        access_token=SecretStr(access),
        refresh_token=SecretStr(refresh) if isinstance(refresh, str) and refresh else None,
        expires_in=float(expires_in),
        user_type="Location" if user_type == "Location" else "Company",
        location_id=_text(body.get("locationId")),
        company_id=_text(body.get("companyId")),
        scope=_text(body.get("scope")) or "",
        approved_locations=tuple(x for x in approved if isinstance(x, str))
        if isinstance(approved, list)
        else (),
    )


def _with_location(grant: TokenGrant, location_id: str) -> TokenGrant:
    return TokenGrant(
        access_token=grant.access_token,
        refresh_token=grant.refresh_token,
        expires_in=grant.expires_in,
        user_type=grant.user_type,
        location_id=location_id,
        company_id=grant.company_id,
        scope=grant.scope,
        approved_locations=grant.approved_locations,
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _message(body: Any, response: httpx.Response) -> str:
    if isinstance(body, dict):
        for key in ("error_description", "message"):
            value = body.get(key)
            if isinstance(value, list):
                return "; ".join(str(item) for item in value)
            if isinstance(value, str) and value:
                return value
        if isinstance(body.get("error"), str):
            return str(body["error"])
    return f"HighLevel answered HTTP {response.status_code} {response.reason_phrase}".rstrip()


def _unexpected(path: str, detail: str, *, may_have_acted: bool = False) -> HighLevelError:
    return HighLevelError(
        f"unexpected response from HighLevel ({path}): {detail}", may_have_acted=may_have_acted
    )
