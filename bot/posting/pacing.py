"""Pacing Slack posts per channel, so the bridge stays under Slack's limits instead of hitting them.

Slack allows about one ``chat.postMessage`` a second per channel, with short bursts, and answers
429 with ``Retry-After`` beyond that. `ChannelPacer` keeps one token bucket per channel, serves
waiters in the order they came (so a channel's posts keep their order), and after a 429 holds the
channel until Slack's ``Retry-After`` has passed. Several instances keep to one rate per channel
together through a `SharedBudget` (bot/cluster): the same bucket, kept in the database.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from slack_sdk.errors import SlackApiError

from bot.cluster.budget import BucketShape, SharedBudget, slack_key

__all__ = ["ChannelPacer", "slack_retry_after"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

# The workspace's id, or how to learn it (auth.test): the shared budgets are keyed by it.
TeamSource = str | Callable[[], Awaitable[str]]

# Float slack for "has a token" and "hold is over": a sleep of exactly the computed wait must not
# come back a hair short and loop on a wait too small to move the clock.
_EPSILON = 1e-9
# Idle channels are swept once this many are tracked (the threshold then doubles with use).
_SWEEP_FROM = 256


class _Channel:
    """One channel's bucket, its hold, and the locks that keep its waiters in order."""

    __slots__ = ("gate", "held_until", "hold_shared", "tokens", "turn", "updated", "users")

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens = tokens
        self.updated = now
        self.held_until = -math.inf
        self.hold_shared = False  # a hold the shared budget has not been told of yet
        self.gate = asyncio.Lock()  # token taking; asyncio.Lock wakes waiters first-come first
        self.turn = asyncio.Lock()  # whole `paced` calls, so a retried post is not overtaken
        self.users = 0  # tasks inside acquire/paced; such a channel is never forgotten

    def refill(self, now: float, rate: float, burst: float) -> None:
        if now > self.updated:
            self.tokens = min(burst, self.tokens + (now - self.updated) * rate)
            self.updated = now

    def wait_seconds(self, now: float, rate: float, burst: float) -> float:
        """How long until a post may go (0 when it may go now)."""
        if self.held_until - now > _EPSILON:
            return self.held_until - now
        self.refill(now, rate, burst)
        if self.tokens >= 1.0 - _EPSILON:
            return 0.0
        return (1.0 - self.tokens) / rate


class ChannelPacer:
    """A token bucket per Slack channel: ``rate_per_second`` posts a second, bursts of ``burst``.

    ``clock`` and ``sleep`` are injectable for tests; they must agree on the unit (seconds).

    With ``budget`` (several instances on one database), a post takes a token of this process's
    bucket, then a permit of the channel's bucket shared by all instances (same rate and
    burst: together they post as one instance would); ``team`` names the workspace in its key.
    """

    def __init__(
        self,
        rate_per_second: float = 1.0,
        burst: int = 4,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        budget: SharedBudget | None = None,
        team: TeamSource = "",
    ) -> None:
        if not rate_per_second > 0 or not math.isfinite(rate_per_second):
            raise ValueError("rate_per_second must be a positive number")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self._rate = float(rate_per_second)
        self._burst = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._channels: dict[str, _Channel] = {}
        self._sweep_at = _SWEEP_FROM
        self._budget = budget
        self._team = team
        self._team_unknown = False  # told at WARNING once that it could not be learnt
        self._shape = BucketShape(rate=self._rate, burst=burst)

    @property
    def tracked_channels(self) -> int:
        """How many channels the pacer currently remembers (idle ones are forgotten)."""
        return len(self._channels)

    async def acquire(self, channel_id: str) -> None:
        """Wait until one post to ``channel_id`` may go; callers are served in call order."""
        channel = self._enter(channel_id)
        try:
            async with channel.gate:
                if self._budget is not None and channel.hold_shared:
                    await self._share_hold(channel_id, channel, self._budget)
                while True:
                    wait = channel.wait_seconds(self._clock(), self._rate, self._burst)
                    if wait <= 0:
                        channel.tokens -= 1.0
                        break
                    await self._sleep(wait)
                if self._budget is not None:
                    await self._take_shared(channel_id, self._budget)
        finally:
            self._leave(channel)

    async def _take_shared(self, channel_id: str, budget: SharedBudget) -> None:
        team = await self._team_id()
        if team is None:
            await budget.take_alone(slack_key("?", channel_id), self._shape)
        else:
            await budget.take(slack_key(team, channel_id), self._shape)

    async def _share_hold(self, channel_id: str, channel: _Channel, budget: SharedBudget) -> None:
        channel.hold_shared = False
        left = channel.held_until - self._clock()
        team = await self._team_id()
        if left > 0 and team is not None:
            await budget.hold(slack_key(team, channel_id), self._shape, left)

    async def _team_id(self) -> str | None:
        """The workspace's id, learnt once; None while it cannot be learnt."""
        if isinstance(self._team, str):
            return self._team
        try:
            team = await self._team()
        except Exception as exc:
            # Without the key, the post keeps to this instance's fallback share of the channel.
            log = logger.debug if self._team_unknown else logger.warning
            log("no workspace id for the shared Slack budgets yet: %s", exc)
            self._team_unknown = True
            return None
        if not team:
            return None
        self._team = team
        return team

    def hold(self, channel_id: str, seconds: float) -> None:
        """Nobody posts to ``channel_id`` for ``seconds`` (after a 429); then one post, then pace.

        Any burst saved up is dropped. A shorter hold never cuts an existing longer one.
        """
        now = self._clock()
        until = now + max(0.0, seconds)
        channel = self._channel(channel_id, now)
        if until <= channel.held_until:
            return
        channel.held_until = until
        channel.hold_shared = self._budget is not None
        # Drained until `until`, when exactly the retry may go; refilling starts from there.
        channel.tokens = 1.0
        channel.updated = until

    def held_until(self, channel_id: str) -> float | None:
        """The ``clock`` time a hold on ``channel_id`` ends, or None when it is not held."""
        channel = self._channels.get(channel_id)
        if channel is None or channel.held_until <= self._clock():
            return None
        return channel.held_until

    async def paced(
        self,
        channel_id: str,
        call: Callable[[], Awaitable[T]],
        *,
        is_rate_limited: Callable[[BaseException], float | None],
        max_attempts: int = 5,
    ) -> T:
        """Run ``call`` when ``channel_id`` allows it; on a rate limit hold the channel and retry.

        ``is_rate_limited`` gives the seconds to wait for an error that means "not done, rate
        limited" (such as `slack_retry_after`), else None: other errors are raised at once, never
        retried, since the post may have gone through. After ``max_attempts`` rate-limited
        attempts the last error is raised. Calls on one channel run one at a time, in call order,
        so a retried post is not overtaken by the next one.
        """
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        channel = self._enter(channel_id)
        try:
            async with channel.turn:
                for attempt in range(1, max_attempts + 1):
                    await self.acquire(channel_id)
                    try:
                        return await call()
                    except Exception as exc:
                        retry_after = is_rate_limited(exc)
                        if retry_after is None or attempt == max_attempts:
                            raise
                        logger.info(
                            "Slack rate-limited channel %s; holding it %.2f s (attempt %d of %d)",
                            channel_id,
                            retry_after,
                            attempt,
                            max_attempts,
                        )
                        self.hold(channel_id, retry_after)
        finally:
            self._leave(channel)
        raise AssertionError("unreachable: the last attempt returns or raises")

    # ------------------------------------------------------------------ bookkeeping

    def _channel(self, channel_id: str, now: float) -> _Channel:
        channel = self._channels.get(channel_id)
        if channel is None:
            if len(self._channels) >= self._sweep_at:
                self._forget_idle(now)
                self._sweep_at = max(_SWEEP_FROM, 2 * len(self._channels))
            channel = _Channel(self._burst, now)
            self._channels[channel_id] = channel
        return channel

    def _enter(self, channel_id: str) -> _Channel:
        channel = self._channel(channel_id, self._clock())
        channel.users += 1
        return channel

    def _leave(self, channel: _Channel) -> None:
        channel.users -= 1

    def _forget_idle(self, now: float) -> None:
        # A channel nobody is waiting on, not held, with a full bucket is exactly a new one.
        idle = []
        for channel_id, channel in self._channels.items():
            if channel.users or channel.held_until > now:
                continue
            channel.refill(now, self._rate, self._burst)
            if channel.tokens >= self._burst - _EPSILON:
                idle.append(channel_id)
        for channel_id in idle:
            del self._channels[channel_id]


def slack_retry_after(exc: BaseException) -> float | None:
    """Seconds to wait when ``exc`` is Slack's rate limit (HTTP 429), else None.

    Reads ``Retry-After`` from the response; 1 second when it is missing or unreadable.
    """
    if not isinstance(exc, SlackApiError):
        return None
    response = exc.response
    status = getattr(response, "status_code", None)
    data = getattr(response, "data", None)
    error = data.get("error") if isinstance(data, Mapping) else None
    if status != 429 and error != "ratelimited":
        return None
    headers = getattr(response, "headers", None)
    return _retry_after_seconds(headers if isinstance(headers, Mapping) else {})


def _retry_after_seconds(headers: Mapping[str, Any]) -> float:
    value: Any = None
    for name, candidate in headers.items():
        if isinstance(name, str) and name.lower() == "retry-after":
            value = candidate
            break
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return 1.0
    return seconds if math.isfinite(seconds) and seconds >= 0 else 1.0
