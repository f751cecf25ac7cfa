"""ChannelRouting: which sub-account a Slack channel works with, and where a sub-account's new
conversations open their threads.

A channel linked with `/highlevel link` belongs to that sub-account. An unlinked channel works
with the only connected sub-account when there is one; with several, the person chooses (the
composer's sub-account select), or links the channel.

With `per_workspace` (the app installed in several Slack workspaces) a sub-account belongs to
one workspace (`LocationRecord.slack_team_id`) and only that workspace's channels see it: a
workspace's routes, choices and inboxes hold its own sub-accounts only. One that belongs to no
workspace yet is offered to nobody until a workspace admin claims it (`/highlevel link`).
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
        self,
        store: Store,
        accounts: SubAccounts,
        *,
        default_inbox: str | None = None,
        per_workspace: bool = False,
    ) -> None:
        self._store = store
        self._accounts = accounts
        self._default_inbox = default_inbox
        self._per_workspace = per_workspace

    @property
    def per_workspace(self) -> bool:
        """Whether each sub-account belongs to one Slack workspace (see the module docstring)."""
        return self._per_workspace

    @property
    def default_inbox(self) -> str | None:
        """SLACK_INBOX_CHANNEL: the inbox of a sub-account that has none of its own."""
        return self._default_inbox

    async def route(self, team_id: str, channel_id: str) -> Route:
        """The sub-account `channel_id` works with (a linked one that lost its connection
        counts as linked: the send is refused with why, not sent from another account)."""
        link = await self._store.get_channel_link(team_id, channel_id)
        if link is not None and await self._link_counts(team_id, link):
            return Route(link.location_id, linked=True)
        connected = await self._accounts.connected()
        if self._per_workspace:
            connected = [r for r in connected if r.slack_team_id == team_id]
        if len(connected) == 1:
            return Route(connected[0].location_id, linked=False)
        return Route(None, linked=False, choices=tuple(connected))

    async def _link_counts(self, team_id: str, link: ChannelLink) -> bool:
        if not self._per_workspace:
            return True
        # Linking claims the sub-account for the channel's workspace, so a link to another
        # workspace's sub-account is older than that rule: it is ignored, never followed.
        # Read from the store, not the cache: the owner must be the current one.
        record = await self._store.get_location(link.location_id)
        return record is not None and record.slack_team_id in (None, team_id)

    async def may_use(self, team_id: str, location_id: str) -> bool:
        """Whether a channel of workspace `team_id` may work with the sub-account (always,
        without per_workspace): it belongs to that workspace, or to none and one of the
        workspace's channels is linked to it. For a choice made in a form, which a person
        could forge."""
        if not self._per_workspace:
            return True
        record = await self._store.get_location(location_id)
        if record is None or record.slack_team_id not in (None, team_id):
            return False
        if record.slack_team_id == team_id:
            return True
        links = await self._store.list_channel_links(location_id=location_id)
        return any(link.team_id == team_id for link in links)

    async def inbox(self, location_id: str) -> Inbox | None:
        """The sub-account's own inbox channel, else SLACK_INBOX_CHANNEL, else None.

        With per_workspace, a sub-account that belongs to a workspace has only its own inbox,
        and only in that workspace: SLACK_INBOX_CHANNEL is the default workspace's.
        """
        record = await self._accounts.get(location_id)
        if self._per_workspace and record is not None and record.slack_team_id is not None:
            if record.inbox_channel_id and record.inbox_team_id == record.slack_team_id:
                return Inbox(record.inbox_channel_id, record.inbox_team_id)
            return None
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

    async def claim(self, location_id: str, team_id: str) -> str | None:
        """The sub-account belongs to workspace `team_id` from now on, unless it belongs to
        one already; its owner after the call (None: the store does not know it)."""
        owner = await self._store.claim_location(location_id, team_id)
        if owner is not None:
            # This instance routes by the new owner at once; the others within
            # SubAccounts.RELOAD_SECONDS (until then they offer it to nobody, as before).
            await self._accounts.reload()
        return owner

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
