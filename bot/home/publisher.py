"""HomePublisher: each person's Home tab published at most once per few seconds.

Slack limits views.publish per person and app (Tier 4-ish, and rapid repeats for one person
are throttled). A request while a publish is waiting or in flight is folded into the next
one; the next one is made no sooner than `interval` after the last, with data read when it is
made, so several requests in a burst cost one publish that shows the newest state. A publish
Slack refused with `ratelimited` is made again after its Retry-After, never dropped.

Per instance: several instances behind one load balancer each keep their own pace.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_SECONDS = 3.0
# Past this many people remembered, those whose last publish is older than the interval are
# forgotten (their next request publishes at once anyway).
PRUNE_AT = 1_000

Key = tuple[str, str]  # (team id, user id)


class RateLimited(Exception):
    """Slack refused a publish with `ratelimited`: try again after `retry_after` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"ratelimited, retry after {retry_after:g} s")
        self.retry_after = retry_after


@dataclass(slots=True)
class _Person:
    dirty: bool = False
    # Loop time before which the next publish may not be made.
    not_before: float = -1e18
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class HomePublisher:
    """Runs `publish(team_id, user_id)` for each request, coalesced and paced per person."""

    def __init__(
        self,
        publish: Callable[[str, str], Awaitable[None]],
        *,
        interval: float = DEFAULT_INTERVAL_SECONDS,
        track: Callable[[asyncio.Task[Any]], None] | None = None,
    ) -> None:
        """`publish` raises `RateLimited` for Slack's rate limit; anything else it raises is
        logged and the request dropped. `track` is told of each task started (so a stop
        waits for it, or cancels it)."""
        self._publish = publish
        self._interval = interval
        self._track = track
        self._people: dict[Key, _Person] = {}

    def request(self, team_id: str, user_id: str) -> None:
        """Publish this person's Home tab soon (at once, unless one was published less than
        `interval` ago or is being published now)."""
        key = (team_id, user_id)
        person = self._people.get(key)
        if person is None:
            self._prune()
            person = self._people[key] = _Person()
        person.dirty = True
        if person.task is None or person.task.done():
            person.task = asyncio.create_task(self._run(key, person), name="home-publish")
            if self._track is not None:
                self._track(person.task)

    async def _run(self, key: Key, person: _Person) -> None:
        loop = asyncio.get_running_loop()
        while person.dirty:
            wait = person.not_before - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            person.dirty = False
            try:
                await self._publish(*key)
            except RateLimited as exc:
                # The data may have changed meanwhile: it is read again when it is made.
                log.info(
                    "views.publish for %s rate limited; publishing again in %.1f s",
                    key[1],
                    exc.retry_after,
                )
                person.dirty = True
                person.not_before = loop.time() + max(exc.retry_after, self._interval)
                continue
            except Exception:
                log.exception("the Home tab of %s in %s could not be published", key[1], key[0])
            person.not_before = loop.time() + self._interval

    def _prune(self) -> None:
        if len(self._people) < PRUNE_AT:
            return
        now = asyncio.get_running_loop().time()
        for key, person in list(self._people.items()):
            idle = person.task is None or person.task.done()
            if idle and not person.dirty and person.not_before <= now:
                del self._people[key]
