"""MESSAGE_RETENTION_DAYS: the worker that purges old message content from the database.

At start and then every RETENTION_INTERVAL_SECONDS it purges, in batches of RETENTION_BATCH
rows each in its own short transaction (Store.purge_before), the bodies, subjects,
addresses and attachment URLs of finished rows older than the limit, pausing between
batches so that the other workers' writes go first. Idempotent: with several instances each
runs it, and a row is purged once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from storage import Store

log = logging.getLogger(__name__)

RETENTION_INTERVAL_SECONDS = 3600.0
RETENTION_BATCH = 500
# Between two batches: the workers' writes waiting for the database go first.
RETENTION_PAUSE_SECONDS = 0.2

DAY_SECONDS = 86_400.0


class RetentionWorker:
    """Purges message content older than `days` days (a Worker: see bot/workers.py)."""

    name = "purge-messages"

    def __init__(
        self,
        store: Store,
        days: int,
        *,
        clock: Callable[[], float],
        interval: float = RETENTION_INTERVAL_SECONDS,
        batch: int = RETENTION_BATCH,
        pause: float = RETENTION_PAUSE_SECONDS,
    ) -> None:
        self._store = store
        self._days = days
        self._clock = clock
        self._interval = interval
        self._batch = batch
        self._pause = pause

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            await self.purge(stopping)
            await _wait(stopping, self._interval)

    async def purge(self, stopping: asyncio.Event) -> int:
        """One pass: batches until none is left (or the bridge stops); how many rows."""
        cutoff = self._clock() - self._days * DAY_SECONDS
        total = 0
        while not stopping.is_set():
            purged = await self._store.purge_before(cutoff, batch=self._batch)
            total += purged
            if purged == 0:
                break
            await _wait(stopping, self._pause)
        if total:
            log.info("message retention: purged %d rows older than %d days", total, self._days)
        return total


async def _wait(stopping: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)


def describe_retention(days: int | None) -> str:
    """What `doctor` says of the setting."""
    if days is None:
        return "keep everything (MESSAGE_RETENTION_DAYS unset)"
    unit = "day" if days == 1 else "days"
    return f"{days} {unit} (message bodies older are purged hourly)"
