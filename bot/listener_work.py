"""The Slack listeners still at work, so that a stop can wait for them before closing anything."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.listener.async_listener_start_handler import AsyncListenerStartHandler
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

log = logging.getLogger(__name__)

# After the grace, the listeners still running are cancelled; this long is given to their
# unwinding (a store transaction rolling back, an HTTP request being dropped).
CANCEL_WAIT_SECONDS = 2.0


class ListenerWork:
    """Every Slack listener run, tracked from its first line (before its ack) to its end.

    Why Bolt's `listener_start_handler`: with `process_before_response=False`, Bolt 1.30's
    `AsyncioListenerRunner.run` starts each listener with `asyncio.ensure_future(...)`, keeps
    no reference to it, and answers Slack as soon as the listener calls `ack()`; whatever the
    listener does after its ack runs detached, and a stop would close the clients and the
    database under it. The runner's first step inside that detached task, before the listener
    function (so before its ack), is `listener_start_handler.handle`: there,
    `asyncio.current_task()` is the listener's own task. Wrapping each listener function
    instead would break Bolt's argument injection (it reads the function's parameter names)
    and would miss listeners registered anywhere else.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def install(self, app: AsyncApp) -> None:
        """Track every listener `app` runs from now on."""
        app.listener_runner.listener_start_handler = _TrackStart(self)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, grace: float) -> tuple[int, int]:
        """Wait up to `grace` s for every tracked listener; cancel the rest.

        Returns (finished, cancelled). A cancelled listener leaves its compose intent open
        (a cancellation is not a refusal), so the next start finishes it.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, grace)
        finished = 0
        # A loop, not one wait: a listener whose task started just before the HTTP server
        # stopped registers itself on its first step, which may come after this began.
        while self._tasks:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            done, _ = await asyncio.wait(set(self._tasks), timeout=remaining)
            finished += len(done)
        left = set(self._tasks)
        for task in left:
            task.cancel()
        if left:
            await asyncio.wait(left, timeout=CANCEL_WAIT_SECONDS)
        return finished, len(left)


class _TrackStart(AsyncListenerStartHandler):
    def __init__(self, work: ListenerWork) -> None:
        self._work = work

    async def handle(self, request: AsyncBoltRequest, response: BoltResponse | None) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._work.track(task)
