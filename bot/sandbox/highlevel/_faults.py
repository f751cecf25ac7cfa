"""Fault injection settings and HighLevel's per-location rate limit."""

from __future__ import annotations

import random
import time
from collections import deque
from dataclasses import dataclass
from typing import Literal

__all__ = ["FaultDecision", "Faults", "RateLimitState", "SlidingWindowLimiter"]


@dataclass
class Faults:
    """What the simulator does wrong on purpose. Mutable: change fields while it runs.

    ``scope="all"`` applies the faults to every API request (an outage hits look-ups too);
    ``scope="sends"`` limits them to ``POST /conversations/messages``. ``store_then_500`` only
    ever applies to sends: nothing else stores anything a client could duplicate.
    Counters (``*_next``) are consumed one per affected request; rates draw from the
    simulator's seeded RNG, so a given seed gives the same faults for the same requests.
    """

    latency: float = 0.0  # seconds added before every affected response
    burst_429: int = 0  # the next N affected requests get 429
    error_rate: float = 0.0  # share of affected requests that get a 5xx (nothing stored)
    error_next: int = 0  # the next N affected requests get a 5xx
    error_status: int = 500
    hang_rate: float = 0.0  # share of affected requests held for hang_seconds (nothing stored)
    hang_next: int = 0
    hang_seconds: float = 300.0
    store_then_500_rate: float = 0.0  # sends stored (webhook fired) but answered 500
    store_then_500_next: int = 0
    scope: Literal["all", "sends"] = "all"


@dataclass(frozen=True)
class FaultDecision:
    hang: bool = False
    status_429: bool = False
    server_error: bool = False
    store_then_500: bool = False


def decide(faults: Faults, rng: random.Random, *, is_send: bool) -> FaultDecision | None:
    """Pick this request's faults; None when the request is outside ``faults.scope``."""
    if faults.scope == "sends" and not is_send:
        return None
    hang = _take(faults, "hang_next") or _roll(rng, faults.hang_rate)
    status_429 = not hang and _take(faults, "burst_429")
    server_error = not (hang or status_429) and (
        _take(faults, "error_next") or _roll(rng, faults.error_rate)
    )
    store_then_500 = (
        is_send
        and not (hang or status_429 or server_error)
        and (_take(faults, "store_then_500_next") or _roll(rng, faults.store_then_500_rate))
    )
    return FaultDecision(hang, status_429, server_error, store_then_500)


def _take(
    faults: Faults, counter: Literal["hang_next", "burst_429", "error_next", "store_then_500_next"]
) -> bool:
    remaining: int = getattr(faults, counter)
    if remaining <= 0:
        return False
    setattr(faults, counter, remaining - 1)
    return True


def _roll(rng: random.Random, rate: float) -> bool:
    # Draw only for a non-zero rate so enabling one fault does not shift another's sequence.
    return rate > 0 and rng.random() < rate


@dataclass(frozen=True)
class RateLimitState:
    allowed: bool
    limit: int
    remaining: int
    interval_ms: int
    daily_limit: int
    daily_remaining: int

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit-Daily": str(self.daily_limit),
            "X-RateLimit-Daily-Remaining": str(self.daily_remaining),
            "X-RateLimit-Interval-Milliseconds": str(self.interval_ms),
            "X-RateLimit-Max": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
        }


class SlidingWindowLimiter:
    """At most ``max_requests`` per ``interval_ms`` (sliding window) and ``daily`` per day.

    Rejected requests do not count, so a client that backs off gets through after the window.
    """

    def __init__(self, max_requests: int, interval_ms: int, daily: int) -> None:
        self.max_requests = max_requests
        self.interval_ms = interval_ms
        self.daily = daily
        self._starts: deque[float] = deque()
        self._day_started = time.monotonic()
        self._day_count = 0

    def _forget_old(self, now: float) -> None:
        if now - self._day_started >= 86_400:
            self._day_started, self._day_count = now, 0
        horizon = now - self.interval_ms / 1000
        while self._starts and self._starts[0] <= horizon:
            self._starts.popleft()

    def hit(self) -> RateLimitState:
        now = time.monotonic()
        self._forget_old(now)
        allowed = len(self._starts) < self.max_requests and self._day_count < self.daily
        if allowed:
            self._starts.append(now)
            self._day_count += 1
        return self.state(allowed)

    def state(self, allowed: bool = True) -> RateLimitState:
        self._forget_old(time.monotonic())
        return RateLimitState(
            allowed=allowed,
            limit=self.max_requests,
            remaining=max(0, self.max_requests - len(self._starts)),
            interval_ms=self.interval_ms,
            daily_limit=self.daily,
            daily_remaining=max(0, self.daily - self._day_count),
        )
