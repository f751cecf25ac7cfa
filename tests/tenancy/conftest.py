"""Fixtures of the tenancy tests: a real OAuth server on 127.0.0.1 and real stores on SQLite
and PostgreSQL (the storage tests' `backend`), each "instance" a store and a TokenKeeper."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
from pydantic import SecretStr

from bot.highlevel import HighLevelOAuth
from bot.tenancy.crypto import TokenCipher, generate_key
from bot.tenancy.install import OAuthInstaller
from bot.tenancy.tokens import DEFAULT_LEASE_SECONDS, TokenKeeper
from tests.storage._support import Backend
from tests.storage.conftest import backend, db_path  # noqa: F401 - fixtures used here
from tests.tenancy._oauth_server import APP_ID, CLIENT_ID, CLIENT_SECRET, OAuthServer, running

REDIRECT_URI = "https://bridge.example/ghl/oauth/callback"


class Lost:
    """on_access_lost: records each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def __call__(self, location_id: str, reason: str) -> None:
        self.calls.append((location_id, reason))


class Instances:
    """Bridge instances on one database: each its own store, OAuth client and TokenKeeper."""

    def __init__(self, database: Backend, server: OAuthServer, stack: AsyncExitStack) -> None:
        self.backend = database
        self.server = server
        self.cipher = TokenCipher(SecretStr(generate_key()))
        self.lost = Lost()
        self._stack = stack
        self._count = 0

    async def new(
        self, *, lease_seconds: float = DEFAULT_LEASE_SECONDS
    ) -> tuple[TokenKeeper, OAuthInstaller]:
        self._count += 1
        store = self.backend.new_store(time.time, instance_id=f"instance-{self._count}")
        await self._stack.enter_async_context(store)
        oauth = HighLevelOAuth(
            client_id=CLIENT_ID, client_secret=SecretStr(CLIENT_SECRET), base_url=self.server.url
        )
        self._stack.push_async_callback(oauth.aclose)
        keeper = TokenKeeper(
            store,
            oauth,
            self.cipher,
            pit=None,
            app_id=APP_ID,
            on_access_lost=self.lost,
            lease_seconds=lease_seconds,
        )
        installer = OAuthInstaller(
            store,
            oauth,
            keeper,
            client_id=CLIENT_ID,
            marketplace_url="https://marketplace.example",
            redirect_uri=REDIRECT_URI,
            app_id=APP_ID,
        )
        return keeper, installer


@pytest.fixture
async def server() -> AsyncIterator[OAuthServer]:
    async with running(OAuthServer()) as started:
        yield started


@pytest.fixture
async def instances(backend: Backend, server: OAuthServer) -> AsyncIterator[Instances]:  # noqa: F811
    async with AsyncExitStack() as stack:
        yield Instances(backend, server, stack)
