"""TokenKeeper: the HighLevel access token of each location, refreshed in time and safely.

HighLevel's refresh tokens are single-use: a refresh answers a new refresh token and the old
one is spent. Two refreshes of one token race, and a new refresh token that is lost is the
location lost. So, for each location (and each agency, scope "company"):

- One refresh at a time: in this process one shared task per row (every caller awaits the
  same refresh, and a caller that is cancelled does not cancel it: a refresh in flight must
  reach the store), and across instances the store's lease on the row (begin_token_refresh
  with the token_version we read). A loser re-reads the row with a short backoff until its
  token_version moves, then uses the new token; when a lease holder died its lease expires and
  the next caller refreshes.
- The new refresh token is committed (finish_token_refresh) before the new access token is
  handed to anyone.
- Refresh ahead of expiry (when less than min(300 s, a quarter of the token's lifetime) is
  left) and after a 401 (only if the stored token is still the refused one).
- invalid_grant: the location is disconnected and ``on_access_lost`` is called (once across
  instances: only by the caller whose disconnect moved the row), then AccessLostError.
- No answer, a 5xx or a timeout: the lease is given back and the error raised; the caller's
  request fails as unavailable and nothing is lost. When HighLevel may have acted (the request
  went out), the refresh token may be spent and the new one never seen by us. HighLevel answers
  a repeat of the same refresh within 30 s with the same new tokens (NOTES.md §5); we do not
  rely on it for correctness, but it makes one prompt retry the only way to recover them, so
  the refresh is retried once at once. A second unknown outcome is not retried blindly: this
  instance leaves that refresh token alone for ``uncertain_cooldown`` seconds (callers get
  UnavailableError), and if it turns out spent, invalid_grant disconnects as above.

Tokens are stored encrypted (TokenCipher); a PIT location's token comes from settings.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeGuard

from pydantic import SecretStr

from bot.highlevel._errors import (
    AccessLostError,
    AuthError,
    HighLevelError,
    InvalidGrantError,
    UnavailableError,
)
from bot.highlevel._oauth import HighLevelOAuth, TokenGrant
from bot.tenancy.crypto import TokenCipher
from bot.tenancy.stored_tokens import StoredTokens, TokenRow, _Cached, _lost_text
from storage import CompanyRecord, LocationRecord, Store, TokenScope

__all__ = ["LocationTokenSource", "TokenKeeper"]

Scope = TokenScope

logger = logging.getLogger("bot.tenancy.tokens")

OnAccessLost = Callable[[str, str], Awaitable[None]]

DEFAULT_LEASE_SECONDS = 30.0
REFRESH_MARGIN = 300.0


class LocationTokenSource:
    """The TokenSource of one location (what HighLevelClient asks for its token)."""

    def __init__(self, keeper: TokenKeeper, location_id: str) -> None:
        self._keeper = keeper
        self._location_id = location_id

    @property
    def location_id(self) -> str:
        return self._location_id

    async def access_token(self) -> SecretStr:
        return await self._keeper.access_token(self._location_id)

    async def refreshed(self, rejected: SecretStr) -> SecretStr | None:
        return await self._keeper.refreshed(self._location_id, rejected)

    async def refused(self, rejected: SecretStr) -> None:
        await self._keeper.refused(self._location_id, rejected)


class TokenKeeper(StoredTokens):
    """Access tokens of every location this bridge serves; see the module docstring."""

    def __init__(
        self,
        store: Store,
        oauth: HighLevelOAuth | None,
        cipher: TokenCipher | None,
        *,
        pit: tuple[str, SecretStr] | None,
        app_id: str | None,
        on_access_lost: OnAccessLost,
        clock: Callable[[], float] = time.time,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        refresh_margin: float = REFRESH_MARGIN,
        recheck_seconds: float = 5.0,
        uncertain_cooldown: float = 30.0,
    ) -> None:
        if (oauth is None) != (cipher is None):
            raise ValueError("OAuth needs both the OAuth client and the token cipher")
        self._store = store
        self._oauth = oauth
        self._cipher = cipher
        self._pit = pit
        self._app_id = app_id
        self._on_access_lost = on_access_lost
        self._clock = clock
        self._lease_seconds = lease_seconds
        self._margin = refresh_margin
        # How long a token read from the store is used without reading the row again: another
        # instance's refresh or disconnect is seen within this (a 401 sees it at once).
        self._recheck = recheck_seconds
        self._uncertain_cooldown = uncertain_cooldown
        self._cache: dict[str, _Cached] = {}
        self._inflight: dict[tuple[Scope, str], asyncio.Task[SecretStr]] = {}
        self._uncertain: dict[tuple[Scope, str], tuple[int, float]] = {}

    @property
    def oauth(self) -> HighLevelOAuth | None:
        return self._oauth

    @property
    def app_id(self) -> str | None:
        return self._app_id

    def source(self, location_id: str) -> LocationTokenSource:
        return LocationTokenSource(self, location_id)

    def encrypt(self, token: SecretStr) -> str:
        return self._oauth_parts()[1].encrypt(token)

    def forget(self, location_id: str) -> None:
        """Drop what this instance remembers of the location's token."""
        self._cache.pop(location_id, None)

    # ------------------------------------------------------------------------------ sources

    async def access_token(self, location_id: str) -> SecretStr:
        """The location's current token, refreshed first when it is about to expire."""
        now = self._clock()
        cached = self._cache.get(location_id)
        if (
            cached is not None
            and now - cached.read_at < self._recheck
            and (cached.expires_at is None or cached.expires_at - now > cached.margin)
        ):
            return cached.token
        row = await self._store.get_location(location_id)
        if row is None or row.auth == "pit":
            return self._pit_token(location_id, row)
        self._require_connected(location_id, row)
        if self._stale(row, None, now):
            return await self._renew("location", location_id, None)
        return self._remember(location_id, row, now)

    async def refreshed(self, location_id: str, rejected: SecretStr) -> SecretStr | None:
        """After a 401 to ``rejected``: a newer token, refreshing only if the stored one is
        still ``rejected``. None for a PIT (it cannot be refreshed: the 401 stands); raises
        AccessLostError when access is gone."""
        self._cache.pop(location_id, None)
        row = await self._store.get_location(location_id)
        if row is None or row.auth == "pit":
            self._pit_token(location_id, row)
            return None
        self._require_connected(location_id, row)
        return await self._renew("location", location_id, rejected)

    async def refused(self, location_id: str, rejected: SecretStr) -> None:
        """A 401 to a token fresh from a refresh: access is lost (disconnect, callback) and
        AccessLostError is raised. Nothing for a PIT or when the stored token moved on."""
        self._cache.pop(location_id, None)
        row = await self._store.get_location(location_id)
        if row is None or row.auth == "pit":
            return
        self._require_connected(location_id, row)
        stored = self._decrypt(row.access_token)
        if stored is None or stored.get_secret_value() != rejected.get_secret_value():
            return  # another refresh happened since: not this token's verdict to give
        reason = "HighLevel refused a freshly refreshed token (HTTP 401 twice)"
        await self.lose_location(location_id, reason)
        raise AccessLostError(
            _lost_text(location_id, reason), location_id=location_id, reason=reason, status_code=401
        )

    async def company_token(self, company_id: str, rejected: SecretStr | None = None) -> SecretStr:
        """The agency's access token (refreshed first when about to expire or ``rejected``)."""
        row = await self._store.get_company(company_id)
        if row is None or row.status != "connected":
            raise AccessLostError(
                f"agency {company_id} is not connected", reason="agency not connected"
            )
        if self._stale(row, rejected, self._clock()):
            return await self._renew("company", company_id, rejected)
        return self._current(row)

    # ------------------------------------------------------------------------------ losing access

    async def lose_location(self, location_id: str, reason: str) -> bool:
        """Disconnect the location; the caller whose disconnect moved it calls on_access_lost."""
        self._cache.pop(location_id, None)
        if not await self._store.disconnect_location(location_id, reason):
            return False
        logger.warning("HighLevel location %s disconnected: %s", location_id, reason)
        await self._notify(location_id, reason)
        return True

    async def lose_company(self, company_id: str, reason: str) -> list[str]:
        """Disconnect the agency and its minted locations; returns the locations told."""
        minted = [
            row.location_id
            for row in await self._store.list_locations(status="connected")
            if row.company_id == company_id and row.auth == "company"
        ]
        for location_id in minted:
            self._cache.pop(location_id, None)
        if not await self._store.disconnect_company(company_id, reason):
            return []
        logger.warning("HighLevel agency %s disconnected: %s", company_id, reason)
        for location_id in minted:
            await self._notify(location_id, reason)
        return minted

    async def _notify(self, location_id: str, reason: str) -> None:
        try:
            await self._on_access_lost(location_id, reason)
        except Exception:  # the disconnect stands; telling people is best effort
            logger.exception("on_access_lost failed for location %s", location_id)

    # ------------------------------------------------------------------------------ renewal

    async def _renew(self, scope: Scope, key: str, rejected: SecretStr | None) -> SecretStr:
        """One shared renewal per row in this process; joining callers get its token."""
        for _ in range(3):
            task = self._inflight.get((scope, key))
            if task is None:
                task = asyncio.create_task(self._renew_row(scope, key, rejected))
                self._inflight[(scope, key)] = task
                task.add_done_callback(self._renewal_done(scope, key))
            token = await asyncio.shield(task)
            # A renewal started before our 401 may hand back the very token refused to us.
            if rejected is None or token.get_secret_value() != rejected.get_secret_value():
                return token
        raise UnavailableError(f"the token of {scope} {key} keeps being refused")

    def _renewal_done(self, scope: Scope, key: str) -> Callable[[asyncio.Task[SecretStr]], None]:
        def done(task: asyncio.Task[SecretStr]) -> None:
            if self._inflight.get((scope, key)) is task:
                del self._inflight[(scope, key)]
            if not task.cancelled():
                task.exception()  # retrieved: every awaiter may have been cancelled

        return done

    async def _renew_row(self, scope: Scope, key: str, rejected: SecretStr | None) -> SecretStr:
        deadline = time.monotonic() + self._lease_seconds * 1.5 + 1.0
        delay = 0.02
        while True:
            row = await self._read(scope, key)
            now = self._clock()
            if not self._stale(row, rejected, now):
                token = self._current(row)
                if scope == "location":
                    self._cache[key] = self._cached(token, row, now)
                return token
            self._check_uncertain(scope, key, row.token_version)
            leased = await self._store.begin_token_refresh(
                scope, key, seen_version=row.token_version, lease_seconds=self._lease_seconds
            )
            if leased:
                return await self._refresh_leased(scope, key, row)
            # Another instance refreshes (or just did): wait for its token_version.
            if time.monotonic() > deadline:
                raise UnavailableError(
                    f"the token refresh of {scope} {key} by another instance did not finish"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def _read(self, scope: Scope, key: str) -> TokenRow:
        row: LocationRecord | CompanyRecord | None
        if scope == "location":
            row = await self._store.get_location(key)
            if row is not None:
                self._require_connected(key, row)
        else:
            row = await self._store.get_company(key)
            if row is not None and row.status != "connected":
                raise AccessLostError(f"agency {key} is disconnected", reason="agency disconnected")
        if row is None:
            raise AccessLostError(f"{scope} {key} is not connected", reason="not connected")
        return row

    async def _refresh_leased(self, scope: Scope, key: str, row: TokenRow) -> SecretStr:
        """Holding the lease: ask HighLevel, commit, and only then hand the token out."""
        cipher = self._oauth_parts()[1]
        started = self._clock()
        try:
            grant = await self._ask(scope, key, row)
        except InvalidGrantError as exc:
            await self._abandon(scope, key)
            reason = f"HighLevel refused the refresh token ({exc.message})"
            if scope == "location":
                await self.lose_location(key, reason)
            else:
                await self.lose_company(key, reason)
            raise AccessLostError(
                _lost_text(key, reason) if scope == "location" else f"agency {key}: {reason}",
                location_id=key if scope == "location" else None,
                reason=reason,
                status_code=exc.status_code,
            ) from exc
        except AuthError:  # AccessLostError, or the app's client id/secret refused
            await self._abandon(scope, key)
            raise
        except HighLevelError as exc:
            await self._abandon(scope, key)
            # Whatever HighLevel did to the refresh, the caller's own request never went out:
            # it must not read as a send that may have happened (may_have_acted).
            raise UnavailableError(
                f"could not refresh the HighLevel token of {scope} {key}: {exc}"
            ) from exc
        except BaseException:
            await self._abandon(scope, key)
            raise
        self._uncertain.pop((scope, key), None)
        expires_at = started + grant.expires_in
        # No new refresh token (never for a refresh; always for a minted location token):
        # keep the stored one, which is None for a minted location.
        refresh = cipher.encrypt(grant.refresh_token) if grant.refresh_token else row.refresh_token
        try:
            await self._store.finish_token_refresh(
                scope,
                key,
                access_token=cipher.encrypt(grant.access_token),
                refresh_token=refresh,
                expires_at=expires_at,
            )
        except Exception as exc:
            # The new refresh token exists only here now. A repeat of the old one within 30 s
            # gets the same answer from HighLevel (NOTES.md §5): the only way back to it.
            logger.error("could not store the refreshed token of %s %s: %r", scope, key, exc)
            await self._abandon(scope, key)
            await self._read(scope, key)  # AccessLostError if it was disconnected meanwhile
            raise UnavailableError(
                f"the refreshed token of {scope} {key} could not be stored"
            ) from exc
        logger.info("refreshed the HighLevel token of %s %s", scope, key)
        if scope == "location":
            lifetime = grant.expires_in
            self._cache[key] = _Cached(
                grant.access_token, expires_at, min(self._margin, lifetime / 4), self._clock()
            )
        return grant.access_token

    async def _ask(self, scope: Scope, key: str, row: TokenRow) -> TokenGrant:
        oauth = self._oauth_parts()[0]
        if scope == "company":
            return await self._refresh_once_more(scope, key, row, "Company")
        if not _is_location(row) or row.auth != "company":
            return await self._refresh_once_more(scope, key, row, "Location")
        company_id = row.company_id
        if not company_id:
            raise InvalidGrantError("a company-minted location without its company")
        company_token = await self.company_token(company_id)
        try:
            return await oauth.location_token(company_token, company_id=company_id, location_id=key)
        except AuthError:
            company_token = await self.company_token(company_id, rejected=company_token)
        try:
            return await oauth.location_token(company_token, company_id=company_id, location_id=key)
        except AuthError as exc:
            # Refused with a fresh agency token: the app is no longer installed there.
            raise InvalidGrantError(exc.message, status_code=exc.status_code) from exc

    async def _refresh_once_more(
        self, scope: Scope, key: str, row: TokenRow, user_type: str
    ) -> TokenGrant:
        oauth = self._oauth_parts()[0]
        refresh_token = self._decrypt(row.refresh_token)
        if refresh_token is None:
            raise InvalidGrantError("no refresh token stored")
        try:
            return await oauth.refresh(refresh_token, user_type=user_type)
        except InvalidGrantError:
            raise
        except HighLevelError as exc:
            if not exc.may_have_acted:
                raise
        # Unknown outcome: the one prompt retry (module docstring).
        logger.warning("token refresh of %s %s: unknown outcome, retrying once", scope, key)
        try:
            return await oauth.refresh(refresh_token, user_type=user_type)
        except InvalidGrantError as exc:
            raise InvalidGrantError(
                f"{exc.message}; an earlier attempt whose answer was lost spent it",
                status_code=exc.status_code,
                trace_id=exc.trace_id,
            ) from exc
        except HighLevelError as exc:
            if exc.may_have_acted:
                until = self._clock() + self._uncertain_cooldown
                self._uncertain[(scope, key)] = (row.token_version, until)
            raise

    def _check_uncertain(self, scope: Scope, key: str, version: int) -> None:
        held = self._uncertain.get((scope, key))
        if held is None:
            return
        seen_version, until = held
        if seen_version != version or self._clock() >= until:
            del self._uncertain[(scope, key)]
            return
        raise UnavailableError(
            f"the last token refreshes of {scope} {key} had unknown outcomes; "
            f"not trying that refresh token again for {until - self._clock():.0f} s"
        )

    async def _abandon(self, scope: Scope, key: str) -> None:
        try:
            await asyncio.shield(self._store.abandon_token_refresh(scope, key))
        except Exception:  # the lease expires by itself
            logger.warning("could not give back the refresh lease of %s %s", scope, key)


def _is_location(row: TokenRow) -> TypeGuard[LocationRecord]:
    return hasattr(row, "auth") and hasattr(row, "location_id")
