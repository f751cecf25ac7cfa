"""LeaseKeeper: renews this instance's claims, takes over those of dead instances, and hands
over its own at a graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection
from typing import Protocol

from storage import Store, Takeover

log = logging.getLogger(__name__)

# How often a live instance on a shared database looks whether another one handed its claims
# over (one indexed read): what bounds how long a hand-over waits to be taken.
HAND_OVER_LOOK_SECONDS = 1.0


class TakeoverObserver(Protocol):
    def lease_takeovers(self, kind: str, count: int) -> None: ...


class LeaseKeeper:
    """Every third of a lease: renew what this instance holds, then take over expired claims.

    Renewing at a third leaves two missed renewals of slack before a live instance's claim
    could be taken. Taken-over sends are handed to `on_sends_taken` (reconciled before anyone
    may resend them) with the finished sends whose outcome may not be shown yet, taken-over
    inbound events to `on_events_taken` (they are queued again).

    On a shared database it also looks every HAND_OVER_LOOK_SECONDS for a hand-over by a
    stopping instance (`hand_over`): then it takes over at once what that instance left
    expired, and calls `on_work_returned` for what it put back in the queues.
    """

    name = "lease-keeper"

    def __init__(
        self,
        store: Store,
        *,
        on_sends_taken: Callable[[Takeover], None],
        on_events_taken: Callable[[], None],
        on_work_returned: Callable[[], None] = lambda: None,
        sends_in_flight: Callable[[], Collection[int]] = frozenset,
        observer: TakeoverObserver | None = None,
        look_seconds: float = HAND_OVER_LOOK_SECONDS,
    ) -> None:
        self._store = store
        self._on_sends_taken = on_sends_taken
        self._on_events_taken = on_events_taken
        self._on_work_returned = on_work_returned
        self._sends_in_flight = sends_in_flight
        self._observer = observer
        self._look_seconds = look_seconds
        self._taking_over = True
        # The hand-over mark as of the last take-over, once there was one: a different one
        # means another instance handed its claims over since.
        self._looked = False
        self._seen_hand_over: str | None = None

    def stop_taking_over(self) -> None:
        """This instance is stopping: from now on it only renews its own claims (what it took
        over now, its stopping workers would not finish)."""
        self._taking_over = False

    async def run(self, stopping: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        interval = self._store.lease_seconds / 3
        look = min(interval, self._look_seconds) if self._store.shared else interval
        next_tick = loop.time()
        while not stopping.is_set():
            if loop.time() >= next_tick:
                await self.tick()
                next_tick = loop.time() + interval
            elif await self._handed_over():
                await self._take_over()
            wait = max(0.0, min(look, next_tick - loop.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), wait)

    async def tick(self) -> Takeover:
        """One renewal and one look for expired claims."""
        await self._store.renew_leases()
        return await self._take_over()

    async def _take_over(self) -> Takeover:
        if not self._taking_over:
            return Takeover(sends=0, events=0)
        returned = False
        if self._store.shared:
            # Read before the take-over: whatever a hand-over with this mark left expired,
            # the take-over below sees; a later one changes the mark.
            mark = await self._store.last_hand_over()
            returned = self._looked and mark != self._seen_hand_over
            self._looked, self._seen_hand_over = True, mark
            if returned:
                log.info("another instance handed over its claims on stopping; taking them")
        taken = await self._store.take_over_expired()
        if self._observer is not None:
            self._observer.lease_takeovers("send", taken.sends)
            self._observer.lease_takeovers("inbound", taken.events)
        if taken.sends or taken.unshown:
            self._on_sends_taken(taken)
        if taken.events:
            self._on_events_taken()
        if returned:
            # What it put back in the queues: claimed now rather than at the idle poll.
            self._on_work_returned()
        return taken

    async def _handed_over(self) -> bool:
        """Whether another instance handed over its claims since the last take-over."""
        if not (self._taking_over and self._store.shared):
            return False
        return await self._store.last_hand_over() != self._seen_hand_over

    async def hand_over(self) -> None:
        """At a graceful stop, once the workers are done and nothing renews any more: give
        back every claim, for live instances to take at once rather than after the lease."""
        handed = await self._store.hand_over(may_have_sent=self._sends_in_flight())
        if handed:
            log.info(
                "stopping: handed over %d sends back to the queue (never sent), %d sends for "
                "another instance to settle (in flight or not shown yet: %s), %d inbound "
                "events back to the queue",
                len(handed.requeued_sends),
                len(handed.expired_sends),
                list(handed.expired_sends),
                len(handed.events),
            )
