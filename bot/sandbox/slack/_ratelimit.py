"""Token bucket behind Slack's "about one message per second per channel" limit."""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class TokenBucket:
    """Refills ``rate_per_second`` tokens a second up to ``burst``; a post takes one."""

    def __init__(
        self,
        rate_per_second: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_second <= 0 or burst < 1:
            raise ValueError("rate_per_second must be > 0 and burst >= 1")
        self._rate = rate_per_second
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()

    def try_take(self) -> int | None:
        """Take a token; when none is left, the whole seconds to wait (``Retry-After``, >= 1)."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return None
        return max(1, math.ceil((1.0 - self._tokens) / self._rate))
