"""What TokenKeeper reads of a stored token without asking HighLevel: the token decrypted,
whether it is due for a refresh, this instance's cache of it, a PIT's token, and the text a
person reads when access is lost (mixed into TokenKeeper)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydantic import SecretStr

from bot.highlevel._errors import AccessLostError, AuthError, UnavailableError
from bot.highlevel._oauth import HighLevelOAuth
from bot.tenancy.crypto import TokenCipher
from storage import CompanyRecord, LocationRecord

# What a refresh reads and renews: a sub-account's row or an agency's.
TokenRow = LocationRecord | CompanyRecord

UNKNOWN_LIFETIME = 86_400.0  # HighLevel's access tokens live about a day


@dataclass(frozen=True, slots=True)
class _Cached:
    token: SecretStr
    expires_at: float | None
    margin: float
    read_at: float


class StoredTokens:
    """Mixed into TokenKeeper, whose PIT, OAuth parts, clock, margin and cache it uses."""

    _pit: tuple[str, SecretStr] | None
    _oauth: HighLevelOAuth | None
    _cipher: TokenCipher | None
    _clock: Callable[[], float]
    _margin: float
    _cache: dict[str, _Cached]

    def _stale(self, row: TokenRow, rejected: SecretStr | None, now: float) -> bool:
        token = self._decrypt(row.access_token)
        if token is None:
            return True
        if rejected is not None and token.get_secret_value() == rejected.get_secret_value():
            return True
        if row.expires_at is None:
            return False  # unknown expiry: the 401 tells
        return row.expires_at - now <= self._margin_of(row)

    def _margin_of(self, row: TokenRow) -> float:
        lifetime = UNKNOWN_LIFETIME
        if row.expires_at is not None and row.obtained_at is not None:
            lifetime = max(0.0, row.expires_at - row.obtained_at)
        return min(self._margin, lifetime / 4)

    def _cached(self, token: SecretStr, row: TokenRow, now: float) -> _Cached:
        return _Cached(token, row.expires_at, self._margin_of(row), now)

    def _remember(self, location_id: str, row: LocationRecord, now: float) -> SecretStr:
        token = self._current(row)
        self._cache[location_id] = self._cached(token, row, now)
        return token

    def _pit_token(self, location_id: str, row: LocationRecord | None) -> SecretStr:
        if self._pit is not None and self._pit[0] == location_id:
            if row is not None:
                self._require_connected(location_id, row)
            now = self._clock()
            self._cache[location_id] = _Cached(self._pit[1], None, 0.0, now)
            return self._pit[1]
        raise AccessLostError(
            _lost_text(location_id, "it is not connected"),
            location_id=location_id,
            reason="not connected",
        )

    @staticmethod
    def _require_connected(location_id: str, row: LocationRecord) -> None:
        if row.status != "connected":
            reason = row.disconnected_reason or "disconnected"
            raise AccessLostError(
                f"location {location_id} is disconnected: {reason}",
                location_id=location_id,
                reason=reason,
            )

    def _current(self, row: TokenRow) -> SecretStr:
        token = self._decrypt(row.access_token)
        if token is None:  # callers checked _stale, which says so for a missing token
            raise UnavailableError("no access token stored")
        return token

    def _decrypt(self, stored: str | None) -> SecretStr | None:
        if stored is None:
            return None
        return self._oauth_parts()[1].decrypt(stored)

    def _oauth_parts(self) -> tuple[HighLevelOAuth, TokenCipher]:
        if self._oauth is None or self._cipher is None:
            raise AuthError("OAuth is not configured (GHL_CLIENT_ID, GHL_CLIENT_SECRET)")
        return self._oauth, self._cipher


def _lost_text(location_id: str, reason: str) -> str:
    """What a person reads where a send failed for it (the thread's post, the notice)."""
    return (
        f"HighLevel access to sub-account {location_id} is lost ({reason}); an admin can "
        "reconnect it with /highlevel connect"
    )
