"""What the HighLevel client is given: where a location's token comes from, and who is told
of each request (metrics)."""

from __future__ import annotations

from typing import Protocol

from pydantic import SecretStr


class RequestObserver(Protocol):
    """Told of each HTTP attempt's end (metrics): the location, the HTTP method, how long it
    took and HighLevel's status code (None: no answer). Never the path: it carries ids."""

    def highlevel_request(
        self, *, location_id: str, method: str, seconds: float, status: int | None
    ) -> None: ...


class TokenSource(Protocol):
    """Where a location's access token comes from: a static Private Integration Token, or an
    OAuth token that expires and is refreshed (`bot.tenancy.tokens`)."""

    async def access_token(self) -> SecretStr:
        """The token to send now (refreshed first when it is about to expire)."""
        ...

    async def refreshed(self, rejected: SecretStr) -> SecretStr | None:
        """HighLevel answered 401 to `rejected`: a newer token to try once, or None when there
        is none (the 401 stands). Raises `AccessLostError` when the location's access is gone."""
        ...

    async def refused(self, rejected: SecretStr) -> None:
        """HighLevel answered 401 even to a token fresh from `refreshed`."""
        ...


class StaticToken:
    """A token that never changes (a Private Integration Token): a 401 stands."""

    def __init__(self, token: SecretStr) -> None:
        self._token = token

    async def access_token(self) -> SecretStr:
        return self._token

    async def refreshed(self, rejected: SecretStr) -> SecretStr | None:
        return None

    async def refused(self, rejected: SecretStr) -> None:
        return None
