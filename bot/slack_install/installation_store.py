"""Bolt's installation store over the bridge's store: slack_sdk's Installation and Bot objects
in, tokens encrypted with TOKEN_ENCRYPTION_KEY before they reach the store, decrypted on the
way out. Enterprise Grid org-wide installs are keyed by their enterprise (team None).

Beyond slack_sdk's interface it offers the bot token refresh lease (`async_find_bot_version`,
`async_begin_bot_refresh`, ...): with token rotation, one instance at a time refreshes a
workspace's bot token, the others wait for its result.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from logging import Logger
from typing import Any

from pydantic import SecretStr
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.models.installation import Installation

from bot.tenancy.crypto import TokenCipher
from storage import SlackInstallation, SlackInstallationRecord, Store


@dataclass(frozen=True, slots=True)
class BotState:
    """A stored bot with its token_version, and when its current token was stored."""

    bot: Bot
    version: int
    stored_at: float


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


class BridgeInstallationStore(AsyncInstallationStore):
    """slack_sdk's AsyncInstallationStore on the bridge's SQLite or PostgreSQL store."""

    def __init__(self, store: Store, cipher: TokenCipher, *, logger: Logger | None = None) -> None:
        self._store = store
        self._cipher = cipher
        self._logger = logger or logging.getLogger(__name__)

    @property
    def logger(self) -> Logger:
        return self._logger

    # ---------------------------------------------------------------- tokens

    def _seal(self, token: str | None) -> str | None:
        return None if token is None else self._cipher.encrypt(SecretStr(token))

    def _open(self, stored: str | None) -> str | None:
        return None if stored is None else self._cipher.decrypt(stored).get_secret_value()

    # ---------------------------------------------------------------- slack_sdk interface

    async def async_save(self, installation: Installation) -> None:
        await self._store.save_slack_installation(self._sealed_installation(installation))

    async def async_save_bot(self, bot: Bot) -> None:
        if bot.bot_token is None:
            # As slack_sdk's own stores do: nothing to keep without a token.
            self.logger.debug("Skipped saving a bot without a bot token")
            return
        await self._store.save_slack_bot(self._sealed_bot(bot))

    async def async_find_bot(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        is_enterprise_install: bool | None = False,
    ) -> Bot | None:
        found = await self.async_find_bot_version(
            enterprise_id=enterprise_id,
            team_id=team_id,
            is_enterprise_install=is_enterprise_install,
        )
        return None if found is None else found[0]

    async def async_find_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> Installation | None:
        record = await self._store.find_slack_installation(
            enterprise_id,
            team_id,
            user_id=user_id,
            is_enterprise_install=bool(is_enterprise_install),
        )
        return None if record is None else self._installation(record)

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        await self._store.delete_slack_bot(enterprise_id, team_id)

    async def async_delete_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
    ) -> None:
        await self._store.delete_slack_installation(enterprise_id, team_id, user_id=user_id)

    async def async_delete_all(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        # One statement rather than the interface's delete_bot then delete_installation:
        # an uninstall leaves nothing half-deleted.
        await self._store.delete_slack_workspace(enterprise_id, team_id)

    # ---------------------------------------------------------------- bot token refresh

    async def async_find_bot_version(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        is_enterprise_install: bool | None = False,
    ) -> tuple[Bot, int] | None:
        """The workspace's bot and its token_version (what a refresh lease is taken on)."""
        found = await self.async_find_bot_state(
            enterprise_id=enterprise_id,
            team_id=team_id,
            is_enterprise_install=is_enterprise_install,
        )
        return None if found is None else (found.bot, found.version)

    async def async_find_bot_state(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        is_enterprise_install: bool | None = False,
    ) -> BotState | None:
        """The workspace's bot, its token_version, and when its token was stored."""
        record = await self._store.find_slack_bot(
            enterprise_id, team_id, is_enterprise_install=bool(is_enterprise_install)
        )
        if record is None:
            return None
        return BotState(self._bot(record), record.token_version, record.updated_at)

    async def async_begin_bot_refresh(
        self, bot: Bot, *, seen_version: int, lease_seconds: float
    ) -> bool:
        """True: this instance refreshes `bot`'s token now; False: another did or does."""
        return await self._store.begin_slack_token_refresh(
            bot.enterprise_id,
            None if bot.is_enterprise_install else bot.team_id,
            seen_version=seen_version,
            lease_seconds=lease_seconds,
        )

    async def async_finish_bot_refresh(self, refreshed: Bot) -> int:
        """Store the refreshed bot's tokens and end the lease; the new token_version.
        ConflictError when the lease was lost (nothing stored)."""
        if refreshed.bot_token is None:
            raise ValueError("a refreshed bot has a bot token")
        return await self._store.finish_slack_token_refresh(
            refreshed.enterprise_id,
            None if refreshed.is_enterprise_install else refreshed.team_id,
            bot_token=self._cipher.encrypt(SecretStr(refreshed.bot_token)),
            bot_refresh_token=self._seal(refreshed.bot_refresh_token),
            bot_token_expires_at=_float(refreshed.bot_token_expires_at),
        )

    async def async_abandon_bot_refresh(self, bot: Bot) -> None:
        await self._store.abandon_slack_token_refresh(
            bot.enterprise_id, None if bot.is_enterprise_install else bot.team_id
        )

    # ---------------------------------------------------------------- mapping

    def _sealed_installation(self, installation: Installation) -> SlackInstallation:
        return SlackInstallation(
            enterprise_id=installation.enterprise_id,
            team_id=None if installation.is_enterprise_install else installation.team_id,
            installed_at=float(installation.installed_at),
            is_enterprise_install=bool(installation.is_enterprise_install),
            enterprise_name=installation.enterprise_name,
            enterprise_url=installation.enterprise_url,
            team_name=installation.team_name,
            app_id=installation.app_id,
            token_type=installation.token_type,
            bot_id=installation.bot_id,
            bot_user_id=installation.bot_user_id,
            bot_scopes=tuple(installation.bot_scopes or ()),
            bot_token=self._seal(installation.bot_token),
            bot_refresh_token=self._seal(installation.bot_refresh_token),
            bot_token_expires_at=_float(installation.bot_token_expires_at),
            bot_installed_at=float(installation.installed_at),
            user_id=installation.user_id or None,
            user_scopes=tuple(installation.user_scopes or ()),
            user_token=self._seal(installation.user_token),
            user_refresh_token=self._seal(installation.user_refresh_token),
            user_token_expires_at=_float(installation.user_token_expires_at),
            incoming_webhook_url=self._seal(installation.incoming_webhook_url),
            incoming_webhook_channel=installation.incoming_webhook_channel,
            incoming_webhook_channel_id=installation.incoming_webhook_channel_id,
            incoming_webhook_configuration_url=installation.incoming_webhook_configuration_url,
            custom_values_json=json.dumps(installation.custom_values or {}),
        )

    def _sealed_bot(self, bot: Bot) -> SlackInstallation:
        return SlackInstallation(
            enterprise_id=bot.enterprise_id,
            team_id=None if bot.is_enterprise_install else bot.team_id,
            installed_at=float(bot.installed_at),
            is_enterprise_install=bool(bot.is_enterprise_install),
            enterprise_name=bot.enterprise_name,
            team_name=bot.team_name,
            app_id=bot.app_id,
            bot_id=bot.bot_id,
            bot_user_id=bot.bot_user_id,
            bot_scopes=tuple(bot.bot_scopes or ()),
            bot_token=self._seal(bot.bot_token),
            bot_refresh_token=self._seal(bot.bot_refresh_token),
            bot_token_expires_at=_float(bot.bot_token_expires_at),
            bot_installed_at=float(bot.installed_at),
            custom_values_json=json.dumps(bot.custom_values or {}),
        )

    def _installation(self, record: SlackInstallationRecord) -> Installation:
        stored = record.installation
        return Installation(
            app_id=stored.app_id,
            enterprise_id=stored.enterprise_id,
            enterprise_name=stored.enterprise_name,
            enterprise_url=stored.enterprise_url,
            team_id=stored.team_id,
            team_name=stored.team_name,
            bot_token=self._open(stored.bot_token),
            bot_id=stored.bot_id,
            bot_user_id=stored.bot_user_id,
            bot_scopes=list(stored.bot_scopes),
            bot_refresh_token=self._open(stored.bot_refresh_token),
            bot_token_expires_at=_int(stored.bot_token_expires_at),
            user_id=stored.user_id or "",
            user_token=self._open(stored.user_token),
            user_scopes=list(stored.user_scopes),
            user_refresh_token=self._open(stored.user_refresh_token),
            user_token_expires_at=_int(stored.user_token_expires_at),
            incoming_webhook_url=self._open(stored.incoming_webhook_url),
            incoming_webhook_channel=stored.incoming_webhook_channel,
            incoming_webhook_channel_id=stored.incoming_webhook_channel_id,
            incoming_webhook_configuration_url=stored.incoming_webhook_configuration_url,
            is_enterprise_install=stored.is_enterprise_install,
            token_type=stored.token_type,
            installed_at=stored.installed_at,
            custom_values=json.loads(stored.custom_values_json),
        )

    def _bot(self, record: SlackInstallationRecord) -> Bot:
        stored = record.installation
        bot_token = self._open(stored.bot_token)
        if bot_token is None:
            raise ValueError("a stored bot lacks its token")
        return Bot(
            app_id=stored.app_id,
            enterprise_id=stored.enterprise_id,
            enterprise_name=stored.enterprise_name,
            team_id=stored.team_id,
            team_name=stored.team_name,
            bot_token=bot_token,
            bot_id=stored.bot_id or "",
            bot_user_id=stored.bot_user_id or "",
            bot_scopes=list(stored.bot_scopes),
            bot_refresh_token=self._open(stored.bot_refresh_token),
            bot_token_expires_at=_int(stored.bot_token_expires_at),
            is_enterprise_install=stored.is_enterprise_install,
            installed_at=stored.bot_installed_at or stored.installed_at,
            custom_values=json.loads(stored.custom_values_json),
        )
