"""`/readyz`: whether this instance can take traffic (database writable, schema current)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

from bot.health import DatabaseProbe
from storage import LATEST_VERSION, Store, StoreError


class Readiness:
    """The database takes writes (the same probe as `/healthz`) and its schema is the one this
    program knows: neither older (not migrated) nor newer (another instance, newer than this
    one, migrated it: this one's queries may no longer fit).

    The schema is read at most every `min_interval` s and not waited for beyond `answer_within`
    (a probe still waiting answers "did not answer"), like `DatabaseProbe`'s write.
    """

    def __init__(
        self,
        store: Store,
        database: DatabaseProbe,
        *,
        known_version: int = LATEST_VERSION,
        min_interval: float = 1.0,
        answer_within: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._database = database
        self._known = known_version
        self._min_interval = min_interval
        self._answer_within = answer_within
        self._clock = clock
        self._schema_problem: str | None = None
        self._checked_at = -math.inf
        self._check: asyncio.Task[None] | None = None

    async def problem(self) -> str | None:
        """None when ready; else why not, in one line."""
        problem = await self._database.problem()
        if problem is not None:
            return problem
        if self._check is None and self._clock() - self._checked_at >= self._min_interval:
            self._check = asyncio.create_task(self._check_schema(), name="ready:schema")
        check = self._check
        if check is not None:
            done, _ = await asyncio.wait({check}, timeout=self._answer_within)
            if not done:
                return f"the database did not answer within {self._answer_within:g} s"
        return self._schema_problem

    async def _check_schema(self) -> None:
        try:
            version = await self._store.schema_version()
        except StoreError as exc:
            self._schema_problem = (
                f"the database schema cannot be read ({' '.join(str(exc).split())})"
            )
        else:
            self._schema_problem = self._compare(version)
        finally:
            self._checked_at = self._clock()
            self._check = None

    def _compare(self, version: int) -> str | None:
        if version == self._known:
            return None
        if version > self._known:
            return (
                f"the database schema is version {version}, newer than this program knows "
                f"({self._known}): run the newer version"
            )
        return (
            f"the database schema is version {version}, older than this program needs "
            f"({self._known}): restart it to migrate"
        )
