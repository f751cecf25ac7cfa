"""OAuthInstaller: connecting HighLevel locations through the Marketplace app's OAuth flow.

A Location install hands us that location's token (with its own refresh token). A Company
(agency) install hands us the agency's token: every location the app is installed in gets a
Location token minted from it (POST /oauth/locationToken), and so do locations the app is
installed in later, as their INSTALL webhooks arrive.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote, urlencode

from pydantic import SecretStr

from bot.highlevel._errors import HighLevelError
from bot.highlevel._oauth import HighLevelOAuth, TokenGrant
from bot.tenancy.tokens import TokenKeeper
from storage import Store

__all__ = [
    "BRIDGE_SCOPES",
    "NAME_LOOKUP_SECONDS",
    "InstallOutcome",
    "OAuthInstaller",
]

logger = logging.getLogger("bot.tenancy.install")

# The scopes the bridge's calls need (docs/oauth/Scopes.md, and each path's `security` in
# apps/conversations.json and apps/contacts.json), nothing more:
BRIDGE_SCOPES: tuple[str, ...] = (
    # GET /conversations/search and GET /conversations/{id}: a contact's conversation, polling.
    "conversations.readonly",
    # GET /conversations/messages/{id}, GET /conversations/{id}/messages, and the
    # InboundMessage/OutboundMessage webhooks. (GET .../messages/email/{id} declares none.)
    "conversations/message.readonly",
    # POST /conversations/messages (sends), POST .../messages/upload (attachments), DELETE
    # .../messages/{id}/schedule (cancel a scheduled send).
    "conversations/message.write",
    # GET /contacts/search/duplicate and GET /contacts/{id}: recipients by phone or email;
    # POST /contacts/search and GET /contacts/{id}/appointments: the composer's search and
    # "About appointment".
    "contacts.readonly",
    # POST /contacts/upsert: a recipient who is not a contact yet.
    "contacts.write",
    # Agency (Company) installs only: GET /oauth/installedLocations lists the locations ...
    "oauth.readonly",
    # ... and POST /oauth/locationToken mints each one's Location token.
    "oauth.write",
    # GET /locations/{id}: the name of a sub-account connected by a Location install (the
    # token response has none; an agency's installedLocations answer names its locations).
    "locations.readonly",
    # GET /locations/{id}/templates: the composer's templates.
    "locations/templates.readonly",
    # PUT /conversations/{id}: the conversation menu's read / unread and star.
    "conversations.write",
    # GET /users/: the sub-account's users, whom the conversation menu assigns a contact to
    # (PUT /contacts/{id} is contacts.write).
    "users.readonly",
)


NAME_LOOKUP_SECONDS = 2.0
"""How long a Location install waits for the sub-account's name before connecting it unnamed."""


@dataclass(frozen=True)
class InstallOutcome:
    """What an install connected: Location or Company, and the locations as (id, name)."""

    kind: Literal["Location", "Company"]
    locations: list[tuple[str, str | None]]
    failed: list[tuple[str, str]] = field(default_factory=list)
    """(location id, why) of an agency's locations that could not be connected."""
    company_id: str | None = None


class OAuthInstaller:
    """Install URL, authorization-code callback, and INSTALL/UNINSTALL webhook events."""

    def __init__(
        self,
        store: Store,
        oauth: HighLevelOAuth,
        keeper: TokenKeeper,
        *,
        client_id: str,
        marketplace_url: str,
        redirect_uri: str,
        app_id: str,
        scopes: tuple[str, ...] = BRIDGE_SCOPES,
        clock: Callable[[], float] = time.time,
        name_timeout: float = NAME_LOOKUP_SECONDS,
    ) -> None:
        self._store = store
        self._oauth = oauth
        self._keeper = keeper
        self._client_id = client_id
        self._marketplace_url = marketplace_url.rstrip("/")
        self._redirect_uri = redirect_uri
        self._app_id = app_id
        self._scopes = scopes
        self._clock = clock
        self._name_timeout = name_timeout

    def install_url(self) -> str:
        """Where /ghl/install sends people: HighLevel's location chooser for this app."""
        query = urlencode(
            {
                "response_type": "code",
                "redirect_uri": self._redirect_uri,
                "client_id": self._client_id,
                "scope": " ".join(self._scopes),
            },
            quote_via=quote,
        )
        return f"{self._marketplace_url}/oauth/chooselocation?{query}"

    async def complete(self, code: str) -> InstallOutcome:
        """The callback's code: exchange it and connect what it grants.

        Raises InvalidGrantError for a bad, used or expired code, other HighLevelErrors when
        HighLevel fails."""
        started = self._clock()
        grant = await self._oauth.exchange_code(code, redirect_uri=self._redirect_uri)
        if grant.user_type == "Location":
            return await self._connect_location(grant, started)
        return await self._connect_company(grant, started)

    async def _connect_location(self, grant: TokenGrant, started: float) -> InstallOutcome:
        if not grant.location_id or grant.refresh_token is None:
            raise HighLevelError("HighLevel's Location token names no location or refresh token")
        row = await self._store.save_location(
            grant.location_id,
            auth="location",
            company_id=grant.company_id,
            access_token=self._keeper.encrypt(grant.access_token),
            refresh_token=self._keeper.encrypt(grant.refresh_token),
            expires_at=started + grant.expires_in,
        )
        self._keeper.forget(grant.location_id)
        logger.info("HighLevel location %s connected (Location install)", grant.location_id)
        name = await self._location_name(grant.access_token, grant.location_id)
        if name is not None and name != row.name:
            await self._store.set_location_name(grant.location_id, name)
        return InstallOutcome(
            kind="Location",
            locations=[(row.location_id, name or row.name)],
            company_id=grant.company_id,
        )

    async def _location_name(self, access_token: SecretStr, location_id: str) -> str | None:
        """The sub-account's name, best effort: the location is connected either way."""
        try:
            async with asyncio.timeout(self._name_timeout):
                return await self._oauth.location_name(access_token, location_id)
        except (HighLevelError, TimeoutError) as exc:
            # The error names the path and HighLevel's message, never the token.
            why = str(exc) or type(exc).__name__
            logger.info("name of location %s not found: %s", location_id, why)
            return None

    async def _connect_company(self, grant: TokenGrant, started: float) -> InstallOutcome:
        company_id = grant.company_id
        if not company_id or grant.refresh_token is None:
            raise HighLevelError("HighLevel's Company token names no company or refresh token")
        # Stored first: the agency token's refresh token is what keeps every location alive.
        await self._store.save_company(
            company_id,
            access_token=self._keeper.encrypt(grant.access_token),
            refresh_token=self._keeper.encrypt(grant.refresh_token),
            expires_at=started + grant.expires_in,
        )
        installed = await self._oauth.installed_locations(
            grant.access_token, company_id=company_id, app_id=self._app_id
        )
        connected: list[tuple[str, str | None]] = []
        failed: list[tuple[str, str]] = []
        for location in installed:
            try:
                await self._mint(
                    grant.access_token, company_id, location.location_id, location.name
                )
            except HighLevelError as exc:
                logger.warning(
                    "agency %s: location %s not connected: %s",
                    company_id,
                    location.location_id,
                    exc,
                )
                failed.append((location.location_id, str(exc)))
            else:
                connected.append((location.location_id, location.name or None))
        logger.info(
            "HighLevel agency %s connected: %d locations (%d failed)",
            company_id,
            len(connected),
            len(failed),
        )
        return InstallOutcome(
            kind="Company", locations=connected, failed=failed, company_id=company_id
        )

    async def _mint(
        self, company_token: SecretStr, company_id: str, location_id: str, name: str | None
    ) -> None:
        started = self._clock()
        minted = await self._oauth.location_token(
            company_token, company_id=company_id, location_id=location_id
        )
        await self._store.save_location(
            location_id,
            auth="company",
            name=name or None,
            company_id=company_id,
            access_token=self._keeper.encrypt(minted.access_token),
            expires_at=started + minted.expires_in,
        )
        self._keeper.forget(location_id)

    async def on_install_event(self, payload: Mapping[str, Any]) -> InstallOutcome | None:
        """INSTALL webhook: a location of a connected agency gets its token minted. A Location
        install needs nothing here (its token arrives with its callback): None.

        The app id is not checked: HighLevel delivers only this app's events to its webhook
        URL, and ignoring an UNINSTALL over an app id spelt otherwise would be silent."""
        location_id = _text(payload.get("locationId"))
        company_id = _text(payload.get("companyId"))
        if not location_id or not company_id:
            return None
        company = await self._store.get_company(company_id)
        if company is None or company.status != "connected":
            return None
        existing = await self._store.get_location(location_id)
        if existing is not None and existing.status == "connected" and existing.auth != "pit":
            return None  # already connected (by its own install, or earlier)
        company_token = await self._keeper.company_token(company_id)
        name: str | None = None
        try:
            found = await self._oauth.installed_locations(
                company_token, company_id=company_id, app_id=self._app_id, location_id=location_id
            )
            name = next((x.name for x in found if x.location_id == location_id and x.name), None)
        except HighLevelError as exc:  # the name is a nicety; the token is what matters
            logger.info("name of location %s not found: %s", location_id, exc)
        await self._mint(company_token, company_id, location_id, name)
        logger.info("HighLevel location %s connected (agency %s INSTALL)", location_id, company_id)
        return InstallOutcome(
            kind="Company", locations=[(location_id, name)], company_id=company_id
        )

    async def on_uninstall_event(self, payload: Mapping[str, Any]) -> list[str]:
        """UNINSTALL webhook: disconnect the location, or the agency and its minted locations.
        Returns the locations this call disconnected (and told on_access_lost about)."""
        location_id = _text(payload.get("locationId"))
        if location_id:
            lost = await self._keeper.lose_location(location_id, "the app was uninstalled")
            return [location_id] if lost else []
        company_id = _text(payload.get("companyId"))
        if company_id:
            return await self._keeper.lose_company(
                company_id, "the app was uninstalled from the agency"
            )
        return []


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
