"""The store methods and rows of tenancy_api.md that TokenKeeper and OAuthInstaller use, as
protocols: both backends' stores (storage/_tenancy.py) satisfy them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

__all__ = ["Auth", "CompanyRow", "LocationRow", "Scope", "TokenRow", "TokenStore"]

Scope = Literal["location", "company"]
Auth = Literal["pit", "location", "company"]


class TokenRow(Protocol):
    @property
    def status(self) -> str: ...
    @property
    def access_token(self) -> str | None: ...
    @property
    def refresh_token(self) -> str | None: ...
    @property
    def expires_at(self) -> float | None: ...
    @property
    def obtained_at(self) -> float | None: ...
    @property
    def token_version(self) -> int: ...


class LocationRow(TokenRow, Protocol):
    @property
    def location_id(self) -> str: ...
    @property
    def name(self) -> str | None: ...
    @property
    def company_id(self) -> str | None: ...
    @property
    def auth(self) -> str: ...
    @property
    def disconnected_reason(self) -> str | None: ...


class CompanyRow(TokenRow, Protocol):
    @property
    def company_id(self) -> str: ...


class TokenStore(Protocol):
    """The store methods of tenancy_api.md this package uses (both backends have them)."""

    async def get_location(self, location_id: str, /) -> LocationRow | None: ...
    async def list_locations(
        self, *, status: Literal["connected", "disconnected"] | None = None
    ) -> Sequence[LocationRow]: ...
    async def save_location(
        self,
        location_id: str,
        /,
        *,
        auth: Auth,
        name: str | None = None,
        company_id: str | None = None,
        access_token: str | None = None,
        refresh_token: str | None = None,
        expires_at: float | None = None,
    ) -> LocationRow: ...
    async def set_location_name(self, location_id: str, name: str, /) -> None: ...
    async def disconnect_location(self, location_id: str, reason: str, /) -> bool: ...
    async def get_company(self, company_id: str, /) -> CompanyRow | None: ...
    async def save_company(
        self,
        company_id: str,
        /,
        *,
        name: str | None = None,
        access_token: str,
        refresh_token: str,
        expires_at: float,
    ) -> CompanyRow: ...
    async def disconnect_company(self, company_id: str, reason: str, /) -> bool: ...
    async def begin_token_refresh(
        self, scope: Scope, key: str, /, *, seen_version: int, lease_seconds: float
    ) -> bool: ...
    async def finish_token_refresh(
        self,
        scope: Scope,
        key: str,
        /,
        *,
        access_token: str,
        refresh_token: str | None,
        expires_at: float,
    ) -> int: ...
    async def abandon_token_refresh(self, scope: Scope, key: str, /) -> None: ...
