"""Bolt's OAuth state store over the bridge's store: a random state per install attempt,
single use and short-lived, shared by every instance (the redirect may reach another one)."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from logging import Logger
from typing import Any

from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore

from storage import Store

DEFAULT_EXPIRATION_SECONDS = 600.0


class BridgeOAuthStateStore(AsyncOAuthStateStore):
    """slack_sdk's AsyncOAuthStateStore on the bridge's SQLite or PostgreSQL store.

    `clock` must be the store's (expiry is set here and checked by the store).
    """

    def __init__(
        self,
        store: Store,
        *,
        expiration_seconds: float = DEFAULT_EXPIRATION_SECONDS,
        clock: Callable[[], float] = time.time,
        logger: Logger | None = None,
    ) -> None:
        if not expiration_seconds > 0:
            raise ValueError("an OAuth state lives a positive number of seconds")
        self._store = store
        self._expiration_seconds = float(expiration_seconds)
        self._clock = clock
        self._logger = logger or logging.getLogger(__name__)

    @property
    def logger(self) -> Logger:
        return self._logger

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        # Expired states are swept here, so the table holds only the live ones without a
        # job of its own (one indexed DELETE per install attempt).
        await self._store.purge_expired_oauth_states()
        state = secrets.token_urlsafe(32)
        await self._store.issue_oauth_state(state, self._clock() + self._expiration_seconds)
        return state

    async def async_consume(self, state: str) -> bool:
        consumed = await self._store.consume_oauth_state(state)
        if not consumed:
            self.logger.debug("An OAuth state was unknown, used already, or expired")
        return consumed
