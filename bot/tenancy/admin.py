"""SubAccountAdmin: what `/highlevel link`, `inbox`, `from` and `status` do, apart from Slack.

The handler parses, checks that the person may, and shows the outcome; this finds the
sub-account a person named, changes the routing and gathers what `status` shows.

With per-workspace routing (`ChannelRouting.per_workspace`) a workspace's admin works with
the sub-accounts of that workspace and those of none yet: linking one of the latter, or making
a channel its inbox, claims it for the workspace. Another workspace's sub-accounts behave as
if they did not exist.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from bot.tenancy.accounts import SubAccounts
from bot.tenancy.routing import ChannelRouting
from storage import ChannelLink, LocationRecord

# Quotes a person may put around a name (Slack turns typed quotes into curly ones).
_QUOTES = "`\"'\u201c\u201d\u2018\u2019"


@dataclass(frozen=True, slots=True)
class Match:
    """The sub-account a name or id names: `record`, else the ones it could mean."""

    record: LocationRecord | None
    candidates: tuple[LocationRecord, ...] = ()  # several matched (ambiguous)


def match_sub_account(records: Sequence[LocationRecord], query: str) -> Match:
    """The record `query` names: its exact id, else its name (case-insensitive), else a name
    it is the start of, when only one is."""
    wanted = query.strip().strip(_QUOTES).strip()
    if not wanted:
        return Match(None)
    for record in records:
        if record.location_id == wanted:
            return Match(record)
    folded = wanted.casefold()
    for kind in ("exact", "prefix"):
        found = tuple(
            record
            for record in records
            if record.name
            and (
                record.name.casefold() == folded
                if kind == "exact"
                else record.name.casefold().startswith(folded)
            )
        )
        if len(found) == 1:
            return Match(found[0])
        if found:
            return Match(None, found)
    return Match(None)


@dataclass(frozen=True, slots=True)
class LinkOutcome:
    """What `/highlevel link <query>` came to."""

    # "taken": another workspace claimed it between the look-up and the claim.
    kind: Literal["linked", "unknown", "ambiguous", "none_connected", "taken"]
    record: LocationRecord | None = None
    # "unknown": the connected sub-accounts; "ambiguous": the ones the query could mean.
    choices: tuple[LocationRecord, ...] = ()
    previous: str | None = None  # the location the channel was linked to before, if another
    already: bool = False  # it was linked to this one already


@dataclass(frozen=True, slots=True)
class InboxOutcome:
    """What `/highlevel inbox` came to."""

    # "claim_first": none belongs to this workspace, and `choices` belong to none yet;
    # "taken": another workspace claimed the channel's sub-account first.
    kind: Literal["set", "link_first", "none_connected", "claim_first", "taken"]
    record: LocationRecord | None = None
    # "link_first": the connected sub-accounts; "claim_first": those of no workspace.
    choices: tuple[LocationRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class SenderOutcome:
    """What `/highlevel from [address|clear]` came to."""

    # "shown": nothing changed; "set" / "cleared": the default From address changed.
    kind: Literal["shown", "set", "cleared", "link_first", "none_connected", "claim_first", "taken"]
    record: LocationRecord | None = None  # as it is now
    # "link_first": the connected sub-accounts; "claim_first": those of no workspace.
    choices: tuple[LocationRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class AccountStatus:
    """One sub-account as `/highlevel status` shows it."""

    record: LocationRecord
    links: tuple[ChannelLink, ...]
    inbox_channel_id: str | None  # its own inbox, else the default one, else None
    default_inbox: bool  # inbox_channel_id is SLACK_INBOX_CHANNEL, not its own
    unowned: bool = False  # per workspace: it belongs to no workspace yet (any may claim it)


class SubAccountAdmin:
    """Links channels, sets inboxes and reports on every sub-account."""

    def __init__(self, routing: ChannelRouting, accounts: SubAccounts) -> None:
        self._routing = routing
        self._accounts = accounts

    def _visible(self, team_id: str, records: Sequence[LocationRecord]) -> list[LocationRecord]:
        """The records the workspace's admin may see: all of them, or, per workspace, its own
        and those of no workspace yet."""
        if not self._routing.per_workspace:
            return list(records)
        return [r for r in records if r.slack_team_id is None or r.slack_team_id == team_id]

    async def _claimed(self, location_id: str, team_id: str) -> bool:
        """Per workspace: the sub-account is the workspace's (claimed now if it was no one's)."""
        if not self._routing.per_workspace:
            return True
        return await self._routing.claim(location_id, team_id) == team_id

    async def link(self, team_id: str, channel_id: str, query: str, *, user_id: str) -> LinkOutcome:
        """Link the channel to the connected sub-account `query` names, if exactly one (an
        empty query names none: "unknown", with the ones it could name)."""
        connected = self._visible(team_id, await self._accounts.connected(fresh=True))
        if not connected:
            return LinkOutcome("none_connected")
        match = match_sub_account(connected, query)
        if match.record is None:
            if match.candidates:
                return LinkOutcome("ambiguous", choices=match.candidates)
            return LinkOutcome("unknown", choices=tuple(connected))
        if not await self._claimed(match.record.location_id, team_id):
            return LinkOutcome("taken")
        before = await self._routing.route(team_id, channel_id)
        previous = before.location_id if before.linked else None
        await self._routing.link(team_id, channel_id, match.record.location_id, linked_by=user_id)
        return LinkOutcome(
            "linked",
            record=match.record,
            previous=previous if previous != match.record.location_id else None,
            already=previous == match.record.location_id,
        )

    async def _channel_account(self, team_id: str, channel_id: str) -> InboxOutcome:
        """The channel's sub-account (linked, or the only one) as a "set" outcome with its
        record, not claimed yet; else why there is none."""
        route = await self._routing.route(team_id, channel_id)
        if route.location_id is None:
            if route.choices:
                return InboxOutcome("link_first", choices=route.choices)
            if self._routing.per_workspace:
                connected = await self._accounts.connected(fresh=True)
                unclaimed = tuple(r for r in connected if r.slack_team_id is None)
                if unclaimed:
                    return InboxOutcome("claim_first", choices=unclaimed)
            return InboxOutcome("none_connected")
        record = await self._accounts.get(route.location_id)
        if record is None:
            # Linked to a sub-account that is disconnected now: still its inbox once it is back.
            everything = await self._routing.every_sub_account()
            record = next((r for r in everything if r.location_id == route.location_id), None)
        if record is None:
            return InboxOutcome("none_connected")
        return InboxOutcome("set", record=record)

    async def set_inbox(self, team_id: str, channel_id: str) -> InboxOutcome:
        """New conversations of the channel's sub-account (linked, or the only one) open here."""
        found = await self._channel_account(team_id, channel_id)
        record = found.record
        if record is None:
            return found
        if not await self._claimed(record.location_id, team_id):
            return InboxOutcome("taken")
        await self._routing.set_inbox(record.location_id, team_id, channel_id)
        return found

    async def default_sender(
        self, team_id: str, channel_id: str, *, change: bool = False, email_from: str | None = None
    ) -> SenderOutcome:
        """The default From address of the channel's sub-account (linked, or the only one);
        with `change`, set it to `email_from` first (None clears it)."""
        found = await self._channel_account(team_id, channel_id)
        record = found.record
        if record is None:
            kind = "none_connected" if found.kind == "set" else found.kind
            return SenderOutcome(kind, choices=found.choices)
        if not change:
            return SenderOutcome("shown", record=record)
        if not await self._claimed(record.location_id, team_id):
            return SenderOutcome("taken")
        await self._accounts.set_email_from(record.location_id, email_from)
        return SenderOutcome(
            "set" if email_from is not None else "cleared",
            record=dataclasses.replace(record, email_from=email_from),
        )

    async def overview(self, team_id: str | None = None) -> list[AccountStatus]:
        """Every sub-account the bridge knows, connected or not, with its channels.

        Per workspace, with `team_id`: that workspace's sub-accounts and those of none yet,
        with only its own channels (the default inbox is another workspace's to show).
        """
        records = await self._routing.every_sub_account()
        links = await self._routing.links()
        default = self._routing.default_inbox
        if not self._routing.per_workspace or team_id is None:
            return [
                AccountStatus(
                    record=record,
                    links=tuple(link for link in links if link.location_id == record.location_id),
                    inbox_channel_id=record.inbox_channel_id or default,
                    default_inbox=not record.inbox_channel_id and default is not None,
                )
                for record in records
            ]
        return [
            AccountStatus(
                record=record,
                links=tuple(
                    link
                    for link in links
                    if link.location_id == record.location_id and link.team_id == team_id
                ),
                inbox_channel_id=record.inbox_channel_id
                if record.inbox_team_id == team_id
                else None,
                default_inbox=False,
                unowned=record.slack_team_id is None,
            )
            for record in self._visible(team_id, records)
        ]
