"""What the composer looks up in HighLevel as a person works: contacts by name, templates,
upcoming appointments and the sub-account's name and time zone.

Answers are kept briefly per sub-account, and identical look-ups in flight are shared, so
a person typing a name costs HighLevel a few requests, inside its rate budget.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from bot.compose.channels import ChannelHistory
from bot.compose.draft import Choice
from bot.highlevel import Contact, HighLevelError, MessageChannel, MessageTemplate
from bot.tenancy.accounts import SubAccounts

log = logging.getLogger(__name__)

_T = TypeVar("_T")

SEARCH_RESULTS = 20
CACHE_SECONDS = 30.0
CACHE_ENTRIES = 2_000
APPOINTMENTS_SHOWN = 10
HISTORY_MESSAGES = 100
SUB_ACCOUNT_MESSAGE_TYPES = {
    "TYPE_WHATSAPP": MessageChannel.WHATSAPP,
    "TYPE_RCS": MessageChannel.RCS,
}


@dataclass(frozen=True, slots=True)
class Place:
    """A sub-account as merge fields and quiet hours need it."""

    name: str
    timezone: str


@dataclass(frozen=True, slots=True)
class NameMatch:
    """Contacts named at the start of a quick send, and the message after the name."""

    contacts: tuple[Contact, ...]
    rest: str


class ComposeAssist:
    """Cached HighLevel look-ups for the composer, per sub-account."""

    def __init__(
        self,
        accounts: SubAccounts,
        *,
        ttl: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._accounts = accounts
        self._ttl = ttl
        self._clock = clock
        self._cache: OrderedDict[tuple[str, ...], tuple[float, Any]] = OrderedDict()
        self._flying: dict[tuple[str, ...], asyncio.Future[Any]] = {}

    async def _cached(self, key: tuple[str, ...], load: Callable[[], Awaitable[_T]]) -> _T:
        now = self._clock()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            self._cache.move_to_end(key)
            value: _T = hit[1]
            return value
        flying = self._flying.get(key)
        if flying is None:
            # A task of its own: a caller that stops waiting (Slack's deadline) does not cancel
            # the look-up, whose answer is kept for the next keystroke.
            flying = asyncio.ensure_future(self._load(key, load))
            self._flying[key] = flying
            flying.add_done_callback(_retrieved)
        shared: _T = await asyncio.shield(flying)
        return shared

    async def _load(self, key: tuple[str, ...], load: Callable[[], Awaitable[_T]]) -> _T:
        try:
            value = await load()
        finally:
            del self._flying[key]
        self._cache[key] = (self._clock() + self._ttl, value)
        while len(self._cache) > CACHE_ENTRIES:
            self._cache.popitem(last=False)
        return value

    async def search(self, location_id: str, query: str) -> tuple[Contact, ...]:
        """Contacts of the sub-account matching `query` (name, phone, email or company)."""
        text = " ".join(query.split()).lower()

        async def load() -> tuple[Contact, ...]:
            client = self._accounts.client(location_id)
            found = await client.search_contacts(text, limit=SEARCH_RESULTS)
            return tuple(found.contacts)

        return await self._cached(("search", location_id, text), load)

    async def named(self, location_id: str, text: str) -> NameMatch:
        """The contacts whose full name starts `text` (case and spacing aside), the longest
        such name winning, and the rest of `text`: `/sendsms Ada Lovelace Running late`."""
        words = text.split()
        if not words:
            return NameMatch((), text)
        lowered = [w.lower() for w in words]
        best: list[Contact] = []
        best_length = 0
        # A query of two words narrows a common first name; one word finds one-word names.
        candidates = {c.id: c for c in await self.search(location_id, " ".join(words[:2]))}
        if len(words) > 1:
            candidates.update({c.id: c for c in await self.search(location_id, words[0])})
        for contact in candidates.values():
            name = _full_name(contact).split()
            if name and lowered[: len(name)] == name and len(name) >= best_length:
                if len(name) > best_length:
                    best, best_length = [], len(name)
                best.append(contact)
        rest = text.strip().split(maxsplit=best_length)[best_length:] if best_length else [text]
        return NameMatch(tuple(best), rest[0] if rest else "")

    async def templates(self, location_id: str) -> tuple[MessageTemplate, ...]:
        """The sub-account's SMS, WhatsApp and email templates."""

        async def load() -> tuple[MessageTemplate, ...]:
            client = self._accounts.client(location_id)
            return tuple(await client.list_templates())

        return await self._cached(("templates", location_id), load)

    async def template(self, location_id: str, template_id: str) -> MessageTemplate | None:
        return next((t for t in await self.templates(location_id) if t.id == template_id), None)

    async def appointments(
        self, location_id: str, contact_id: str, *, now: float | None = None
    ) -> tuple[Choice, ...]:
        """The contact's upcoming appointments, soonest first, as choices."""

        async def load() -> tuple[Choice, ...]:
            client = self._accounts.client(location_id)
            moment = datetime.fromtimestamp(time.time() if now is None else now, UTC)
            upcoming = []
            for appointment in await client.contact_appointments(contact_id):
                start = appointment.start_time
                if start is None or start.tzinfo is None or start < moment:
                    continue
                if (appointment.status or "").lower() in {"cancelled", "invalid"}:
                    continue
                upcoming.append((start, appointment))
            upcoming.sort(key=lambda pair: pair[0])
            return tuple(
                Choice(a.id, f"{a.title or 'Appointment'} · {start:%a %d %b %H:%M} UTC")
                for start, a in upcoming[:APPOINTMENTS_SHOWN]
            )

        return await self._cached(("appointments", location_id, contact_id), load)

    async def history(self, location_id: str, contact_id: str) -> ChannelHistory:
        """The channels the contact's conversation has used (none when there is none)."""

        async def load() -> ChannelHistory:
            client = self._accounts.client(location_id)
            found = await client.search_conversations(contact_id=contact_id, limit=1)
            if not found.conversations:
                return ChannelHistory()
            page = await client.list_messages(found.conversations[0].id, limit=HISTORY_MESSAGES)
            return ChannelHistory.of(list(page.messages))

        return await self._cached(("history", location_id, contact_id), load)

    async def sub_account_channels(self, location_id: str) -> frozenset[MessageChannel]:
        """The channels of SUB_ACCOUNT_CHANNELS the sub-account is seen to have: a
        conversation whose last message went by it (HighLevel has no call that says)."""

        async def load() -> frozenset[MessageChannel]:
            client = self._accounts.client(location_id)
            has: set[MessageChannel] = set()
            for message_type, channel in SUB_ACCOUNT_MESSAGE_TYPES.items():
                found = await client.search_conversations(last_message_type=message_type, limit=1)
                if found.conversations:
                    has.add(channel)
            return frozenset(has)

        return await self._cached(("channels", location_id), load)

    async def place(self, location_id: str) -> Place:
        """The sub-account's name and time zone ("" when HighLevel does not say)."""

        async def load() -> Place:
            record = await self._accounts.get(location_id)
            name = (record.name if record is not None else None) or ""
            try:
                location = await self._accounts.client(location_id).get_location()
            except HighLevelError as exc:
                log.debug("no location details for %s: %s", location_id, exc)
                return Place(name=name, timezone="")
            return Place(name=name or location.name or "", timezone=location.timezone or "")

        return await self._cached(("place", location_id), load)


def _retrieved(future: asyncio.Future[Any]) -> None:
    # Everyone waiting may have given up; the failure is theirs to see, not the loop's log.
    if not future.cancelled():
        future.exception()


def _full_name(contact: Contact) -> str:
    parts = [contact.first_name or "", contact.last_name or ""]
    full = contact.name or " ".join(p for p in parts if p)
    return " ".join(full.split()).lower()
