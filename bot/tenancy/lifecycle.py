"""LostAccess: what happens when a sub-account's HighLevel access is gone (its refresh token
refused, the app uninstalled, a fresh token answered 401): never silent.

The sub-account stops being served at once, its sends still waiting are shown as not sent,
and its Slack channels (linked ones and its inbox) are told once, across every instance, with
the way to reconnect it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from bot.outbound.presenter import SendPresenter
from bot.posting.errors import SlackPostError
from bot.posting.poster import SlackPosters
from bot.tenancy.accounts import SubAccounts
from bot.tenancy.install import OAuthInstaller
from bot.tenancy.routing import ChannelRouting
from bot.ui.tenancy_builder import access_lost_message
from bot.ui.thread_builder import PostStatus
from storage import Store

log = logging.getLogger(__name__)


class LostAccess:
    """Carries out the loss of a sub-account's access (`TokenKeeper`'s `on_access_lost`)."""

    def __init__(
        self,
        *,
        store: Store,
        accounts: SubAccounts,
        routing: ChannelRouting,
        slack: SlackPosters,
        presenter: SendPresenter,
        reconnect_url: str | None,
    ) -> None:
        self._store = store
        self._accounts = accounts
        self._routing = routing
        self._slack = slack
        self._presenter = presenter
        self._reconnect_url = reconnect_url

    async def access_lost(self, location_id: str, reason: str) -> None:
        record = await self._store.get_location(location_id)
        name = (record.name if record is not None else None) or location_id
        self._accounts.forget(location_id)
        log.warning("HighLevel sub-account %s is disconnected: %s", location_id, reason)
        unsent = await self._store.fail_unsent_for_location(
            location_id, f"HighLevel access to {name} was lost ({reason}); not sent"
        )
        for entry in unsent:
            await self._presenter.show(entry, PostStatus.FAILED, error=entry.last_error)
        if not await self._store.claim_disconnect_notice(location_id):
            return  # another instance (or an earlier call) told the channels already
        channels: list[tuple[str | None, str]] = [
            (link.team_id, link.channel_id)
            for link in await self._store.list_channel_links(location_id=location_id)
        ]
        inbox = await self._routing.inbox(location_id)
        if inbox is not None and inbox.channel_id not in {channel for _, channel in channels}:
            channels.append((inbox.team_id, inbox.channel_id))
        text, blocks = access_lost_message(
            name, reason, reconnect_url=self._reconnect_url, unsent=len(unsent)
        )
        for team_id, channel_id in channels:
            try:
                await (await self._slack.poster(team_id)).post(channel_id, text, blocks)
            except SlackPostError as exc:
                log.warning(
                    "could not tell %s that sub-account %s is disconnected: %s",
                    channel_id,
                    location_id,
                    exc.error,
                )


class AppEvents:
    """The Marketplace app's INSTALL and UNINSTALL webhooks (`WebhookEndpoint.app_event`)."""

    def __init__(self, installer: OAuthInstaller, accounts: SubAccounts) -> None:
        self._installer = installer
        self._accounts = accounts

    async def app_event(self, event_type: str, payload: Mapping[str, Any]) -> None:
        if event_type == "INSTALL":
            if await self._installer.on_install_event(payload) is not None:
                await self._accounts.reload()
        elif event_type == "UNINSTALL":
            # Each location lost is carried out by LostAccess (through the token keeper).
            await self._installer.on_uninstall_event(payload)
