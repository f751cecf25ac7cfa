"""Finding (or creating) the HighLevel contact a person means, with a short cache."""

from __future__ import annotations

import asyncio
import time
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


@dataclass(frozen=True, slots=True)
class ResolvedContact:
    contact: Contact
    created: bool


class ContactNotFoundError(LookupError):
    """No contact has that id in this location; the message says so for a person."""


class ContactDirectory:
    """Resolves recipients to contacts; a burst of sends to one number costs one lookup."""

    def __init__(
        self,
        highlevel: HighLevelClient,
        *,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._highlevel = highlevel
        self._ttl = ttl_seconds
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, Contact]] = {}
        # Concurrent lookups of one recipient share one request.
        self._inflight: dict[tuple[str, str], asyncio.Future[ResolvedContact]] = {}

    async def resolve(self, recipient: Recipient, *, create: bool = True) -> ResolvedContact:
        """The contact for `recipient`; an unknown phone or email is created when `create`."""
        key = (recipient.kind.value, recipient.value)
        cached = self._cache.get(key)
        if cached is not None and cached[0] > self._clock():
            return ResolvedContact(cached[1], created=False)
        pending = self._inflight.get(key)
        if pending is not None:
            shared = await asyncio.shield(pending)
            return ResolvedContact(shared.contact, created=False)
        future: asyncio.Future[ResolvedContact] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            resolved = await self._lookup(recipient, create=create)
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

    def remember(self, contact: Contact, key: tuple[str, str] | None = None) -> None:
        expires = self._clock() + self._ttl
        keys = {("contact_id", contact.id)}
        if key is not None:
            keys.add(key)
        for cache_key in keys:
            self._cache[cache_key] = (expires, contact)

    def forget(self, contact_id: str) -> None:
        """Drop every cached entry of a contact (after HighLevel told us it changed)."""
        stale = [key for key, (_, contact) in self._cache.items() if contact.id == contact_id]
        for key in stale:
            del self._cache[key]

    async def _lookup(self, recipient: Recipient, *, create: bool) -> ResolvedContact:
        if recipient.kind is RecipientKind.CONTACT_ID:
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
        request = (
            UpsertContactRequest(phone=recipient.value, source="Slack (ghl-bridge)")
            if is_phone
            else UpsertContactRequest(email=recipient.value, source="Slack (ghl-bridge)")
        )
        upserted = await self._highlevel.upsert_contact(request)
        return ResolvedContact(upserted.contact, created=upserted.is_new)
