"""Fixtures of the Slack install tests: real stores on SQLite and PostgreSQL (the storage
tests' `backend`), and a cipher with a fresh key."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from bot.slack_install.installation_store import BridgeInstallationStore
from bot.tenancy.crypto import TokenCipher, generate_key
from storage import Store
from tests.storage._support import Backend, FakeClock
from tests.storage.conftest import backend, clock, db_path  # noqa: F401 - fixtures used here


@pytest.fixture
async def store(backend: Backend, clock: FakeClock) -> AsyncIterator[Store]:  # noqa: F811
    async with backend.new_store(clock) as opened:
        yield opened


@pytest.fixture
def cipher() -> TokenCipher:
    return TokenCipher(SecretStr(generate_key()))


@pytest.fixture
def installations(store: Store, cipher: TokenCipher) -> BridgeInstallationStore:
    return BridgeInstallationStore(store, cipher)
