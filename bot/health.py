"""What `/healthz` and start-up check beyond "the process answers": the database takes writes."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Any, Protocol

from storage import Store, StoreError, is_postgres_url, open_store, redact_url

log = logging.getLogger(__name__)

DATABASE_FIX = (
    "make the file and its folder writable by the user running ghl-bridge (and give its disk "
    "free space), or point DATABASE_URL elsewhere"
)
POSTGRES_FIX = (
    "check that PostgreSQL runs at that address, that the user may connect to the database and "
    "create tables in it, and the password in DATABASE_URL"
)


class HealthSource(Protocol):
    """A part of the bridge that can say, in one line, why it does not work (None: it does)."""

    def problem(self) -> str | None: ...


async def open_writable_store(
    database_url: str, *, instance_id: str | None = None, lease_seconds: float | None = None
) -> Store:
    """Open the store and prove it takes a write; StoreError says why not and what to do.

    SQLite opens a file it may not write read-only without a word, so without the test write a
    bridge on a read-only database would start, then refuse every webhook and crash its workers.
    """
    fix = POSTGRES_FIX if is_postgres_url(database_url) else DATABASE_FIX
    options: dict[str, Any] = {"instance_id": instance_id}
    if lease_seconds is not None:
        options["lease_seconds"] = lease_seconds
    try:
        store = await open_store(database_url, **options)
    except StoreError as exc:
        raise StoreError(f"{exc}: {fix}") from exc
    try:
        await store.check_writable()
    except StoreError as exc:
        await store.close()
        shown = redact_url(database_url) if is_postgres_url(database_url) else _sqlite_path(store)
        raise StoreError(f"cannot write to the database {shown!r} ({exc}): {fix}") from exc
    return store


def _sqlite_path(store: Store) -> str:
    return str(getattr(store, "path", "?"))


class DatabaseProbe:
    """Whether the database takes a write, asked of the store at most every `min_interval` s.

    `/healthz` is unauthenticated and polled: a write per call would let a flood of probes queue
    writes in front of the workers'. A probe still waiting (the database locked by another
    program, up to the store's busy timeout) is not waited for beyond `answer_within`: the last
    answer stands meanwhile, so a health check answers quickly whatever the database does.
    """

    def __init__(
        self,
        store: Store,
        *,
        min_interval: float = 1.0,
        answer_within: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._min_interval = min_interval
        self._answer_within = answer_within
        self._clock = clock
        self._problem: str | None = None  # start-up proved a write
        self._checked_at = -math.inf
        self._probe: asyncio.Task[None] | None = None

    async def problem(self) -> str | None:
        """None when the last write went through; else why it did not, in one line."""
        if self._probe is None and self._clock() - self._checked_at >= self._min_interval:
            self._probe = asyncio.create_task(self._run(), name="health:database")
        probe = self._probe
        if probe is not None:
            await asyncio.wait({probe}, timeout=self._answer_within)
        return self._problem

    async def _run(self) -> None:
        try:
            await self._store.check_writable()
        except StoreError as exc:
            problem = f"the database cannot be written ({' '.join(str(exc).split())})"
            if problem != self._problem:
                log.warning("health: %s", problem)
            self._problem = problem
        else:
            if self._problem is not None:
                log.info("health: the database takes writes again")
            self._problem = None
        finally:
            self._checked_at = self._clock()
            self._probe = None
