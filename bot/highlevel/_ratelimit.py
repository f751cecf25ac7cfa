"""Client-side limiter shaped like HighLevel's burst limit (100 requests / 10 s per location)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import ClassVar

from bot.cluster.budget import BudgetExhausted, SharedBudget, WindowShape, highlevel_key

from ._errors import RateLimitedError

__all__ = ["RateLimiter"]

logger = logging.getLogger("bot.highlevel")

DEFAULT_MAX_REQUESTS = 100
DEFAULT_INTERVAL_SECONDS = 10.0

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class RateLimiter:
    """Sliding-window limiter: at most ``max_requests`` starts per ``interval`` seconds.

    Call ``acquire()`` before each request: it waits until the request fits, so the client waits
    instead of walking into a 429. When the request is over, ``settle()`` moves its stamp to that
    moment, since the server counted it on arrival, somewhere in between. ``observe_headers()``
    lets the server's ``X-RateLimit-*`` headers correct our count, and ``block_for()`` stops
    everyone after a 429.

    HighLevel counts per app and location, so all clients of one location must share one limiter:
    use ``RateLimiter.for_location()``. It uses no asyncio locks (check-and-record happens without
    an ``await`` in between), so one instance may serve several event loops in turn, e.g. tests.

    Several instances of the bridge share the location's limit through ``budget`` (the store's
    window of permit starts ``budget_key``, shaped by ``WindowShape.under``): a request first
    fits this process's window, then takes a permit of the shared one. A 429 holds the shared
    budget too, so the other instances stop with this one.
    """

    _registry: ClassVar[dict[str, RateLimiter]] = {}

    def __init__(
        self,
        *,
        max_requests: int = DEFAULT_MAX_REQUESTS,
        interval: float = DEFAULT_INTERVAL_SECONDS,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        budget: SharedBudget | None = None,
        budget_key: str | None = None,
    ) -> None:
        if budget is not None and not budget_key:
            raise ValueError("a shared budget needs its key")
        if max_requests < 1:
            raise ValueError("max_requests must be at least 1")
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.max_requests = max_requests
        self.interval = interval
        self._clock = clock
        self._sleep = sleep
        # Start times of requests still inside the window, oldest first. Entries added from a
        # server's "Remaining" header are stamped "now" because we cannot know when the server
        # counted them; that can only make us wait longer, never send into a 429.
        self._starts: deque[float] = deque()
        self._blocked_until = 0.0
        self.budget = budget
        self.budget_key = budget_key or ""
        # The end of the last block the shared budget has been told of (see block_for).
        self._shared_block_until = 0.0

    @classmethod
    def for_location(
        cls,
        location_id: str,
        *,
        max_requests: int = DEFAULT_MAX_REQUESTS,
        interval: float = DEFAULT_INTERVAL_SECONDS,
        budget: SharedBudget | None = None,
    ) -> RateLimiter:
        """The process-wide limiter of ``location_id`` (created on first use).

        With ``budget``, it also keeps to the location's budget shared with other instances.
        """
        limiter = cls._registry.get(location_id)
        if limiter is None:
            limiter = cls(max_requests=max_requests, interval=interval)
            cls._registry[location_id] = limiter
        # Set or cleared on every call: a limiter must not keep the budget (and the store
        # behind it) of a bridge that has closed, e.g. one built earlier in the same process.
        limiter.budget = budget
        limiter.budget_key = highlevel_key(location_id) if budget is not None else ""
        return limiter

    @property
    def shared_shape(self) -> WindowShape:
        """The shared window that keeps all instances together under the server's."""
        return WindowShape.under(self.max_requests, self.interval)

    def _prune(self, now: float) -> None:
        while self._starts and self._starts[0] <= now - self.interval:
            self._starts.popleft()

    def wait_time(self) -> float:
        """Seconds until a request may start (0 if it may start now)."""
        now = self._clock()
        self._prune(now)
        wait = max(0.0, self._blocked_until - now)
        if len(self._starts) >= self.max_requests:
            # The (len - max + 1)-th oldest start must leave the window first.
            index = len(self._starts) - self.max_requests
            wait = max(wait, self._starts[index] + self.interval - now)
        return wait

    async def acquire(self, *, max_wait: float | None = None) -> float:
        """Wait until a request fits, then count it; returns its stamp for ``settle()``.

        Raises ``RateLimitedError`` (never sent, ``may_have_acted=False``) instead of waiting
        longer than ``max_wait`` seconds, so a long server-imposed block cannot hang a caller.
        """
        began = self._clock()
        if self.budget is None:
            return await self._acquire_here(max_wait)
        await self._share_block()
        stamp = await self._acquire_here(max_wait)
        left = None if max_wait is None else max(0.0, max_wait - (self._clock() - began))
        try:
            waited = await self.budget.take(self.budget_key, self.shared_shape, max_wait=left)
        except BudgetExhausted as exc:
            self._forget(stamp)
            raise RateLimitedError(
                f"HighLevel rate limit shared by all instances: would have to wait "
                f"{exc.wait:.1f} s (more than the allowed {max_wait or 0.0:.1f} s)",
                retry_after=exc.wait,
            ) from None
        except BaseException:
            self._forget(stamp)
            raise
        if waited <= 0:
            return stamp
        # It starts now, not when this process's window let it through.
        self._forget(stamp)
        started = self._clock()
        self._starts.append(started)  # not earlier than any stamp held: order is kept
        return started

    async def _acquire_here(self, max_wait: float | None) -> float:
        """This process's window: wait until the request fits it, then count it."""
        while True:
            wait = self.wait_time()
            if wait <= 0:
                started = self._clock()
                self._starts.append(started)
                return started
            if max_wait is not None and wait > max_wait:
                raise RateLimitedError(
                    f"HighLevel rate limit: would have to wait {wait:.1f} s "
                    f"(more than the allowed {max_wait:.1f} s)",
                    retry_after=wait,
                )
            logger.debug("rate limiter: waiting %.3f s", wait)
            await self._sleep(wait)

    def _forget(self, started: float) -> None:
        with contextlib.suppress(ValueError):  # already gone from the window
            self._starts.remove(started)

    async def _share_block(self) -> None:
        """Hold the shared budget for what is left of a block from a 429 it was not told of."""
        if self.budget is None or self._blocked_until <= self._shared_block_until:
            return
        self._shared_block_until = self._blocked_until
        left = self._blocked_until - self._clock()
        if left > 0:
            await self.budget.hold(self.budget_key, self.shared_shape, left)

    def settle(self, started: float) -> None:
        """A request stamped ``started`` by ``acquire()`` is over: count it from now on.

        The server counted it when it arrived, after we stamped it (a new connection's handshake
        alone can take a while); counting from its start would reopen our window before the
        server's and send into a 429.
        """
        self._forget(started)
        self._starts.append(self._clock())  # not earlier than any stamp held: order is kept

    def observe_headers(self, headers: Mapping[str, str]) -> None:
        """Correct our view from ``X-RateLimit-Max/-Remaining/-Interval-Milliseconds``."""
        limit = _header_number(headers, "X-RateLimit-Max")
        if limit is not None and limit >= 1:
            self.max_requests = int(limit)
        interval_ms = _header_number(headers, "X-RateLimit-Interval-Milliseconds")
        if interval_ms is not None and interval_ms > 0:
            self.interval = interval_ms / 1000.0
        remaining = _header_number(headers, "X-RateLimit-Remaining")
        if remaining is None:
            return
        now = self._clock()
        self._prune(now)
        ours = self.max_requests - len(self._starts)
        # Believe the server only when it is stricter than we are: other processes (or a restart)
        # may have spent budget we do not know about.
        missing = min(ours - max(0, int(remaining)), self.max_requests)
        if missing > 0:
            logger.debug(
                "rate limiter: server reports %d remaining, we thought %d", remaining, ours
            )
            self._starts.extend([now] * missing)

    def block_for(self, seconds: float) -> None:
        """After a 429: let no request start for ``seconds`` (other instances: from the next
        ``acquire``, which tells the shared budget)."""
        self._blocked_until = max(self._blocked_until, self._clock() + max(0.0, seconds))


def _header_number(headers: Mapping[str, str], name: str) -> float | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None
