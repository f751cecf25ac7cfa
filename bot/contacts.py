"""Finding (or creating) the HighLevel contact a person means, with a short, bounded cache."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from bot.highlevel import (
    Contact,
    HighLevelClient,
    NotFoundError,
    UpsertContactRequest,
    ValidationError,
)
from bot.recipients import Recipient, RecipientKind

DEFAULT_TTL_SECONDS = 60.0
# A cached contact costs a few kB; this bounds the cache to a few MB however many contacts pass.
DEFAULT_MAX_ENTRIES = 1_000

# HighLevel's ids are about 20 letters and digits; this leaves room without letting a huge or
# binary value into a request path.
MAX_ID_LENGTH = 128

CacheKey = tuple[str, str]


def _could_be_an_id(value: str) -> bool:
    return 0 < len(value) <= MAX_ID_LENGTH and value.isprintable() and not value.isspace()


@dataclass(frozen=True, slots=True)
class ResolvedContact:
    contact: Contact
    created: bool


class ContactNotFoundError(LookupError):
    """No contact has that id in this location; the message says so for a person."""


class ContactCache:
    """Contacts by look-up key for `ttl_seconds`, at most `max_entries` of them.

    Least recently used entries go first when it is full; an expired entry is dropped when it is
    read, and all expired entries are swept at most once per `ttl_seconds`, as entries are added.
    """

    def __init__(self, *, ttl_seconds: float, max_entries: int, clock: Callable[[], float]) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._ttl = ttl_seconds
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[CacheKey, tuple[float, Contact]] = OrderedDict()
        self._next_sweep = clock() + ttl_seconds

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: CacheKey) -> Contact | None:
        cached = self._entries.get(key)
        if cached is None:
            return None
        expires, contact = cached
        if expires <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return contact

    def put(self, keys: set[CacheKey], contact: Contact) -> None:
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
        for key in keys:
            self._entries[key] = (now + self._ttl, contact)
            self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def drop_contact(self, contact_id: str) -> None:
        stale = [key for key, (_, contact) in self._entries.items() if contact.id == contact_id]
        for key in stale:
            del self._entries[key]

    def _sweep(self, now: float) -> None:
        expired = [key for key, (expires, _) in self._entries.items() if expires <= now]
        for key in expired:
            del self._entries[key]
        self._next_sweep = now + self._ttl


class ContactDirectory:
    """Resolves recipients to contacts; a burst of sends to one number costs one lookup."""

    def __init__(
        self,
        highlevel: HighLevelClient,
        *,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._highlevel = highlevel
        self._cache = ContactCache(ttl_seconds=ttl_seconds, max_entries=max_entries, clock=clock)
        # Concurrent lookups of one recipient share one request.
        self._inflight: dict[CacheKey, asyncio.Future[ResolvedContact]] = {}

    @property
    def cached_entries(self) -> int:
        """How many look-up keys the cache holds now."""
        return len(self._cache)

    async def resolve(
        self,
        recipient: Recipient,
        *,
        create: bool = True,
        first_name: str = "",
        last_name: str = "",
    ) -> ResolvedContact:
        """The contact for `recipient`; an unknown phone or email is created when `create`
        (with the name given, if any)."""
        key = (recipient.kind.value, recipient.value)
        cached = self._cache.get(key)
        if cached is not None:
            return ResolvedContact(cached, created=False)
        pending = self._inflight.get(key)
        if pending is not None:
            shared = await asyncio.shield(pending)
            return ResolvedContact(shared.contact, created=False)
        future: asyncio.Future[ResolvedContact] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            resolved = await self._lookup(
                recipient, create=create, first_name=first_name, last_name=last_name
            )
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters (if any) re-raise it themselves
            raise
        else:
            future.set_result(resolved)
            self.remember(resolved.contact, key)
            return resolved
        finally:
            del self._inflight[key]

    async def get(self, contact_id: str) -> Contact:
        """A contact by id (cached)."""
        return (await self.resolve(Recipient(RecipientKind.CONTACT_ID, contact_id))).contact

    def remember(self, contact: Contact, key: CacheKey | None = None) -> None:
        keys = {("contact_id", contact.id)}
        if key is not None:
            keys.add(key)
        self._cache.put(keys, contact)

    def forget(self, contact_id: str) -> None:
        """Drop every cached entry of a contact (after HighLevel told us it changed)."""
        self._cache.drop_contact(contact_id)

    async def _lookup(
        self, recipient: Recipient, *, create: bool, first_name: str = "", last_name: str = ""
    ) -> ResolvedContact:
        if recipient.kind is RecipientKind.CONTACT_ID:
            if not _could_be_an_id(recipient.value):
                # Webhooks are signed, not sane: an id no HighLevel contact can have is not sent
                # (a 20,000-character id would not even fit in a URL).
                raise ContactNotFoundError("That is not a HighLevel contact id.")
            try:
                return ResolvedContact(await self._highlevel.get_contact(recipient.value), False)
            except (NotFoundError, ValidationError):
                # The spec gives GET /contacts/{id} no 404: an unknown id is a 400.
                raise ContactNotFoundError(
                    f"No HighLevel contact has the id {recipient.value}."
                ) from None
        is_phone = recipient.kind is RecipientKind.PHONE
        found = await self._highlevel.find_contact(
            phone=recipient.value if is_phone else None,
            email=None if is_phone else recipient.value,
        )
        if found is not None:
            return ResolvedContact(found, created=False)
        if not create:
            raise ContactNotFoundError(f"No HighLevel contact has {recipient.value}.")
        names = {"first_name": first_name or None, "last_name": last_name or None}
        request = (
            UpsertContactRequest(phone=recipient.value, source="Slack (ghl-bridge)", **names)
            if is_phone
            else UpsertContactRequest(email=recipient.value, source="Slack (ghl-bridge)", **names)
        )
        upserted = await self._highlevel.upsert_contact(request)
        return ResolvedContact(upserted.contact, created=upserted.is_new)
