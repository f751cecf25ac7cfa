"""SubAccounts: the HighLevel sub-accounts (locations) this bridge serves, each with its own
HighLevel client and contact directory.

A sub-account is connected by a Private Integration Token (GHL_API_TOKEN with GHL_LOCATION_ID)
or through the Marketplace app (OAuth, `bot.tenancy.install`); either way it has a row in the
store, so every instance knows the same set. Every piece of work names its location (an outbox
entry, a thread, an inbound event), and takes the client of that location from here: one
sub-account's token never touches another's contacts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from bot.contacts import ContactDirectory
from bot.highlevel import HighLevelClient
from storage import LocationRecord, Store

# How stale the set of connected sub-accounts may be on an instance that did not see the
# change itself (another instance connected or lost one).
RELOAD_SECONDS = 5.0
# An event naming a location this instance does not know makes it look again, at most this
# often (a flood of foreign webhooks must not become a flood of reads).
MISS_RELOAD_SECONDS = 0.5
# "Last webhook" of `/highlevel status` is written at most this often per sub-account and
# instance: a write per webhook would double the cost of taking one in.
SEEN_WRITE_SECONDS = 60.0


class UnknownSubAccountError(LookupError):
    """No connected sub-account has this location id."""


class SubAccounts:
    """The connected sub-accounts, their clients, and the cache that keeps webhooks cheap."""

    def __init__(
        self,
        store: Store,
        make_client: Callable[[str], HighLevelClient],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._make_client = make_client
        self._clock = clock
        self._clients: dict[str, HighLevelClient] = {}
        self._contacts: dict[str, ContactDirectory] = {}
        self._connected: dict[str, LocationRecord] = {}
        self._loaded_at = -1e18
        self._reload_lock = asyncio.Lock()
        self._webhook_noted: dict[str, float] = {}

    # -- clients ---------------------------------------------------------------------------

    def client(self, location_id: str) -> HighLevelClient:
        """The HighLevel client of `location_id` (made on first use, then kept)."""
        if not location_id:
            raise UnknownSubAccountError("no location id")
        client = self._clients.get(location_id)
        if client is None:
            client = self._clients[location_id] = self._make_client(location_id)
        return client

    def contacts(self, location_id: str) -> ContactDirectory:
        """The contact directory (and its cache) of `location_id`."""
        directory = self._contacts.get(location_id)
        if directory is None:
            directory = self._contacts[location_id] = ContactDirectory(self.client(location_id))
        return directory

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        self._contacts = {}
        for client in clients:
            await client.aclose()

    # -- which sub-accounts are connected ----------------------------------------------------

    async def connected(self, *, fresh: bool = False) -> list[LocationRecord]:
        """The connected sub-accounts, by name; `fresh` reads the store now."""
        await self._maybe_reload(force=fresh)
        return sorted(self._connected.values(), key=lambda r: (r.name or "", r.location_id))

    async def get(self, location_id: str) -> LocationRecord | None:
        """A connected sub-account, or None."""
        await self._maybe_reload()
        record = self._connected.get(location_id)
        if record is None and self._clock() - self._loaded_at >= MISS_RELOAD_SECONDS:
            await self._maybe_reload(force=True)
            record = self._connected.get(location_id)
        return record

    async def serves(self, event: Mapping[str, Any]) -> bool:
        """The event names (`locationId`) a connected sub-account."""
        location_id = event.get("locationId")
        return isinstance(location_id, str) and await self.get(location_id) is not None

    async def webhook_seen(self, location_id: str) -> None:
        """A webhook of the sub-account was taken in (kept for `/highlevel status`)."""
        now = self._clock()
        if now - self._webhook_noted.get(location_id, -1e18) < SEEN_WRITE_SECONDS:
            return
        self._webhook_noted[location_id] = now
        await self._store.note_location_seen(location_id, webhook_at=time.time())

    async def set_email_from(self, location_id: str, email_from: str | None) -> None:
        """The sub-account's default From address (None: HighLevel's own default)."""
        await self._store.set_location_email_from(location_id, email_from)
        # This instance sends from it at once; the others within RELOAD_SECONDS.
        await self.reload()

    def label(self, location_id: str) -> str:
        """How people see a sub-account: its name, else its id."""
        record = self._connected.get(location_id)
        return (record.name if record is not None and record.name else None) or location_id

    def forget(self, location_id: str) -> None:
        """This instance saw the sub-account disconnect: stop serving it now."""
        self._connected.pop(location_id, None)

    async def reload(self) -> None:
        """Read the connected set now (after this instance connected one)."""
        await self._maybe_reload(force=True)

    async def _maybe_reload(self, *, force: bool = False) -> None:
        if not force and self._clock() - self._loaded_at < RELOAD_SECONDS:
            return
        started = self._clock()
        async with self._reload_lock:
            if self._loaded_at >= started:
                return  # another caller read it while this one waited
            records = await self._store.list_locations(status="connected")
            self._connected = {record.location_id: record for record in records}
            self._loaded_at = self._clock()
