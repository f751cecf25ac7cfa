"""LeaseKeeper: renews this instance's claims and takes over those of dead instances."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

from storage import Store, Takeover

log = logging.getLogger(__name__)


class TakeoverObserver(Protocol):
    def lease_takeovers(self, kind: str, count: int) -> None: ...


class LeaseKeeper:
    """Every third of a lease: renew what this instance holds, then take over expired claims.

    Renewing at a third leaves two missed renewals of slack before a live instance's claim
    could be taken. Taken-over sends are handed to `on_sends_taken` (reconciled before anyone
    may resend them) with the finished sends whose outcome may not be shown yet, taken-over
    inbound events to `on_events_taken` (they are queued again).
    """

    name = "lease-keeper"

    def __init__(
        self,
        store: Store,
        *,
        on_sends_taken: Callable[[Takeover], None],
        on_events_taken: Callable[[], None],
        observer: TakeoverObserver | None = None,
    ) -> None:
        self._store = store
        self._on_sends_taken = on_sends_taken
        self._on_events_taken = on_events_taken
        self._observer = observer

    async def run(self, stopping: asyncio.Event) -> None:
        interval = self._store.lease_seconds / 3
        while not stopping.is_set():
            await self.tick()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), interval)

    async def tick(self) -> Takeover:
        """One renewal and one look for expired claims."""
        await self._store.renew_leases()
        taken = await self._store.take_over_expired()
        if self._observer is not None:
            self._observer.lease_takeovers("send", taken.sends)
            self._observer.lease_takeovers("inbound", taken.events)
        if taken.sends or taken.unshown:
            self._on_sends_taken(taken)
        if taken.events:
            self._on_events_taken()
        return taken
