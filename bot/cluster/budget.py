"""Rate budgets shared by every instance on one database: HighLevel's and Slack's limits.

HighLevel allows 100 requests per 10 s per location, Slack about one post a second per
channel, whichever instance makes them. Each instance keeps its own in-process limiter as
the first (cheap) gate; `SharedBudget` is the second, one round trip per request: a
sliding window of permit starts per location (`WindowShape`, `Store.take_window`) and a
token bucket per channel (`BucketShape`, `Store.take_budget`). When the database does not
answer, an instance keeps to a conservative share of each budget (1/`instances` of its
rate, no burst) rather than sending unlimited, and says so once at WARNING.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from storage import BudgetGrant, StoreError

__all__ = [
    "DEFAULT_INSTANCES",
    "BucketShape",
    "BudgetExhausted",
    "BudgetStore",
    "SharedBudget",
    "WindowShape",
    "highlevel_key",
    "slack_key",
]

log = logging.getLogger(__name__)

# How many instances a budget is split between while the database is away. More instances
# than this, all cut off from the database at once, would overrun it; fewer only go slower.
DEFAULT_INSTANCES = 4
# A take that the database has not answered by then is taken from the local share instead:
# a request must not hang on a stuck database (asyncpg's own timeout is a minute).
DEFAULT_DATABASE_TIMEOUT = 2.0
# After a failure, the database is asked again this long after (one take probes it).
DEFAULT_RETRY_DATABASE_AFTER = 5.0


def highlevel_key(location_id: str) -> str:
    """The budget of HighLevel's per-location limit."""
    return f"ghl:{location_id}"


def slack_key(team_id: str, channel_id: str) -> str:
    """The budget of Slack's per-channel posting rate."""
    return f"slack:{team_id}:{channel_id}"


@dataclass(frozen=True, slots=True)
class BucketShape:
    """A token bucket: `rate` permits a second, up to `burst` at once after a pause."""

    rate: float
    burst: int

    def __post_init__(self) -> None:
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError("rate must be a positive number")
        if self.burst < 1:
            raise ValueError("burst must be at least 1")

    def share(self, instances: int) -> BucketShape:
        """One instance's part of the bucket among `instances`: its rate, no burst."""
        return BucketShape(rate=self.rate / max(1, instances), burst=1)

    def held(self) -> BucketShape:
        """The bucket a hold of this budget is written with."""
        return self


# The margin of a shared window over the server's, as a part of the server's window.
WINDOW_MARGIN = 1 / 20


@dataclass(frozen=True, slots=True)
class WindowShape:
    """At most `limit` permits start in any `window + margin` seconds.

    HighLevel (and its sandbox, bot/sandbox/highlevel/_faults.py) refuses a request when
    `limit` others arrived in the `window` seconds before it. A request arrives some delay
    after its permit starts (the database's answer, event-loop lag, connecting, the clock
    difference between hosts); when those delays differ by at most the margin, `limit`
    permits apart by the window plus the margin arrive apart by more than the window.
    With a margin of a twentieth, 0.5 s of HighLevel's 10 s, each window takes the whole
    limit at once and, run after run, 100 in 10.5 s: 0.95 of the ceiling. A token bucket
    under the same window could give only 0.8 of it and a tenth at once.
    """

    limit: int
    window: float
    margin: float

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError("limit must be at least 1")
        if not (self.window > 0 and math.isfinite(self.window)):
            raise ValueError("window must be a positive number")
        if not (self.margin >= 0 and math.isfinite(self.margin)):
            raise ValueError("margin must be a number of seconds, 0 or more")

    @classmethod
    def under(cls, limit: int, window: float) -> WindowShape:
        """The shared window under a server's `limit` per `window` s (see the class)."""
        return cls(limit=limit, window=window, margin=window * WINDOW_MARGIN)

    @property
    def period(self) -> float:
        return self.window + self.margin

    def share(self, instances: int) -> BucketShape:
        """One instance's part among `instances` when the database is away: a bucket at
        its part of the window's long-run rate, no burst."""
        return BucketShape(rate=self.limit / self.period / max(1, instances), burst=1)

    def held(self) -> BucketShape:
        """The bucket a hold of this budget is written with: no permit before it ends."""
        return BucketShape(rate=self.limit / self.period, burst=1)


Shape = BucketShape | WindowShape


class BudgetStore(Protocol):
    """What a shared budget needs of the store (storage.Store has it)."""

    async def take_budget(
        self,
        key: str,
        *,
        rate: float,
        burst: int,
        max_wait: float | None = None,
        now: float | None = None,
    ) -> BudgetGrant: ...

    async def take_window(
        self,
        key: str,
        *,
        limit: int,
        period: float,
        max_wait: float | None = None,
        now: float | None = None,
    ) -> BudgetGrant: ...

    async def hold_budget(
        self, key: str, *, seconds: float, rate: float, burst: int, now: float | None = None
    ) -> None: ...


class BudgetExhausted(Exception):
    """No permit could start within the wait allowed; `wait` is when one could."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"the next permit starts in {wait:.2f} s")
        self.wait = wait


class _LocalBucket:
    """The same reservation scheme as the store's, in memory (the fallback share)."""

    __slots__ = ("spent_until",)

    def __init__(self) -> None:
        self.spent_until = -math.inf

    def take(self, shape: BucketShape, now: float, max_wait: float | None) -> BudgetGrant:
        cost = 1.0 / shape.rate
        start = max(now, self.spent_until - (shape.burst - 1) * cost)
        if max_wait is not None and start - now > max_wait:
            return BudgetGrant(granted=False, start_at=start, wait=start - now)
        self.spent_until = max(self.spent_until, now) + cost
        return BudgetGrant(granted=True, start_at=start, wait=start - now)

    def hold(self, shape: BucketShape, until: float) -> None:
        self.spent_until = max(self.spent_until, until + (shape.burst - 1) / shape.rate)


class SharedBudget:
    """Permits from the store's token buckets, waited for with asyncio sleeps.

    `clock` and `sleep` (monotonic seconds) time the fallback share and the retries of the
    database; the store's buckets run on the store's own clock.
    """

    def __init__(
        self,
        store: BudgetStore,
        *,
        instances: int = DEFAULT_INSTANCES,
        database_timeout: float = DEFAULT_DATABASE_TIMEOUT,
        retry_database_after: float = DEFAULT_RETRY_DATABASE_AFTER,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if instances < 1:
            raise ValueError("instances must be at least 1")
        self._store = store
        self._instances = instances
        self._database_timeout = database_timeout
        self._retry_database_after = retry_database_after
        self._clock = clock
        self._sleep = sleep
        self._local: dict[str, _LocalBucket] = {}
        self._degraded = False
        self._ask_database_at = -math.inf

    @property
    def degraded(self) -> bool:
        """Whether the database failed last time, so permits come from the local share."""
        return self._degraded

    @property
    def instances(self) -> int:
        return self._instances

    async def take(self, key: str, shape: Shape, *, max_wait: float | None = None) -> float:
        """Wait for a permit of budget `key`; returns the seconds waited.

        BudgetExhausted (having waited nothing, holding nothing) when the permit would start
        later than `max_wait` seconds from now.
        """
        grant = await self._grant(key, shape, max_wait)
        return await self._wait_for(grant)

    async def take_alone(self, key: str, shape: Shape, *, max_wait: float | None = None) -> float:
        """Wait for a permit of this instance's fallback share only (as if the database
        were away): for a caller that cannot name the shared budget right now."""
        grant = self._local_grant(key, shape, max_wait)
        return await self._wait_for(grant)

    async def hold(self, key: str, shape: Shape, seconds: float) -> None:
        """No instance takes a permit of `key` for `seconds` (after the service's 429)."""
        held = shape.held()
        self._local.setdefault(key, _LocalBucket()).hold(held, self._clock() + seconds)
        if not self._may_ask_database():
            return
        try:
            async with asyncio.timeout(self._database_timeout):
                await self._store.hold_budget(
                    key, seconds=seconds, rate=held.rate, burst=held.burst
                )
        except (StoreError, OSError, TimeoutError) as exc:
            self._lost_database(exc)
        else:
            self._found_database()

    async def _wait_for(self, grant: BudgetGrant) -> float:
        if not grant.granted:
            raise BudgetExhausted(grant.wait)
        if grant.wait > 0:
            await self._sleep(grant.wait)
        return max(0.0, grant.wait)

    async def _grant(self, key: str, shape: Shape, max_wait: float | None) -> BudgetGrant:
        if self._may_ask_database():
            try:
                async with asyncio.timeout(self._database_timeout):
                    grant = await self._take_from_store(key, shape, max_wait)
            except (StoreError, OSError, TimeoutError) as exc:
                self._lost_database(exc)
            else:
                self._found_database()
                return grant
        return self._local_grant(key, shape, max_wait)

    async def _take_from_store(self, key: str, shape: Shape, max_wait: float | None) -> BudgetGrant:
        if isinstance(shape, WindowShape):
            return await self._store.take_window(
                key, limit=shape.limit, period=shape.period, max_wait=max_wait
            )
        return await self._store.take_budget(
            key, rate=shape.rate, burst=shape.burst, max_wait=max_wait
        )

    def _local_grant(self, key: str, shape: Shape, max_wait: float | None) -> BudgetGrant:
        bucket = self._local.setdefault(key, _LocalBucket())
        return bucket.take(shape.share(self._instances), self._clock(), max_wait)

    def _may_ask_database(self) -> bool:
        if not self._degraded:
            return True
        now = self._clock()
        if now < self._ask_database_at:
            return False
        # This take probes the database; the others meanwhile keep to the local share.
        self._ask_database_at = now + self._retry_database_after
        return True

    def _lost_database(self, exc: BaseException) -> None:
        self._ask_database_at = self._clock() + self._retry_database_after
        if self._degraded:
            log.debug("shared rate budgets still unavailable: %s", _reason(exc))
            return
        self._degraded = True
        log.warning(
            "shared rate budgets unavailable (%s): this instance keeps to 1/%d of HighLevel's "
            "and Slack's limits until the database answers again",
            _reason(exc),
            self._instances,
        )

    def _found_database(self) -> None:
        if self._degraded:
            self._degraded = False
            log.info("shared rate budgets available again")


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
