"""ChannelRouting: which sub-account a Slack channel works with, and where a sub-account's new
conversations open their threads.

A channel linked with `/highlevel link` belongs to that sub-account. An unlinked channel works
with the only connected sub-account when there is one; with several, the person chooses (the
composer's sub-account select), or links the channel.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.tenancy.accounts import SubAccounts
from storage import ChannelLink, LocationRecord, Store


@dataclass(frozen=True, slots=True)
class Route:
    """The answer for one channel: its sub-account, or the ones to choose from."""

    location_id: str | None
    linked: bool  # the channel is linked to it (rather than it being the only one)
    choices: tuple[LocationRecord, ...] = ()  # when location_id is None


@dataclass(frozen=True, slots=True)
class Inbox:
    """Where a sub-account's new conversations open their threads."""

    channel_id: str
    team_id: str | None  # None: the default inbox (SLACK_INBOX_CHANNEL), in the bot's workspace


class ChannelRouting:
    """Channel → sub-account, and sub-account → inbox channel."""

    def __init__(
        self, store: Store, accounts: SubAccounts, *, default_inbox: str | None = None
    ) -> None:
        self._store = store
        self._accounts = accounts
        self._default_inbox = default_inbox

    @property
    def default_inbox(self) -> str | None:
        """SLACK_INBOX_CHANNEL: the inbox of a sub-account that has none of its own."""
        return self._default_inbox

    async def route(self, team_id: str, channel_id: str) -> Route:
        """The sub-account `channel_id` works with (a linked one that lost its connection
        counts as linked: the send is refused with why, not sent from another account)."""
        link = await self._store.get_channel_link(team_id, channel_id)
        if link is not None:
            return Route(link.location_id, linked=True)
        connected = await self._accounts.connected()
        if len(connected) == 1:
            return Route(connected[0].location_id, linked=False)
        return Route(None, linked=False, choices=tuple(connected))

    async def inbox(self, location_id: str) -> Inbox | None:
        """The sub-account's own inbox channel, else SLACK_INBOX_CHANNEL, else None."""
        record = await self._accounts.get(location_id)
        if record is not None and record.inbox_channel_id:
            return Inbox(record.inbox_channel_id, record.inbox_team_id)
        if self._default_inbox:
            return Inbox(self._default_inbox, None)
        return None

    # -- changing the routing (`/highlevel link`, `/highlevel inbox`) ----------------------

    async def link(
        self, team_id: str, channel_id: str, location_id: str, *, linked_by: str
    ) -> ChannelLink:
        """`channel_id` belongs to `location_id` from now on (replacing any earlier link)."""
        return await self._store.link_channel(team_id, channel_id, location_id, linked_by=linked_by)

    async def set_inbox(self, location_id: str, team_id: str, channel_id: str) -> None:
        """New conversations of `location_id` open their threads in `channel_id`."""
        await self._store.set_location_inbox(location_id, team_id, channel_id)
        # This instance routes the next new conversation here at once; the others within
        # SubAccounts.RELOAD_SECONDS.
        await self._accounts.reload()

    async def links(self) -> list[ChannelLink]:
        """Every channel link, of every sub-account."""
        return await self._store.list_channel_links()

    async def every_sub_account(self) -> list[LocationRecord]:
        """Every sub-account the store knows, connected or not (ordered by name, id)."""
        return await self._store.list_locations()
