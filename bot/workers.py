"""Background workers and the group that starts and stops them together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, Protocol, TypeVar

from storage import StoreError

log = logging.getLogger(__name__)

T = TypeVar("T")


class Worker(Protocol):
    """A long-running job; `run` returns soon after `stopping` is set."""

    name: str

    async def run(self, stopping: asyncio.Event) -> None: ...


class WorkerGroup:
    """Runs workers as tasks; a worker that crashes is logged and restarted after a pause."""

    def __init__(self, workers: Sequence[Worker], *, restart_delay: float = 1.0) -> None:
        self._workers = list(workers)
        self._restart_delay = restart_delay
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def running(self) -> bool:
        """Every worker's task is alive and no stop was asked for."""
        return (
            (bool(self._tasks) or not self._workers)
            and not self._stopping.is_set()
            and all(not t.done() for t in self._tasks)
        )

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._supervise(worker), name=f"worker:{worker.name}")
            for worker in self._workers
        ]

    async def stop(self, grace: float = 10.0) -> None:
        """Ask every worker to finish its current item; cancel those still busy after `grace`."""
        self._stopping.set()
        if not self._tasks:
            return
        _done, pending = await asyncio.wait(self._tasks, timeout=grace)
        for task in pending:
            log.warning("worker %s still busy after %.0f s; cancelling", task.get_name(), grace)
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _supervise(self, worker: Worker) -> None:
        while not self._stopping.is_set():
            try:
                await worker.run(self._stopping)
            except Exception:
                log.exception("worker %s crashed; restarting", worker.name)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._restart_delay)
            else:
                return


class PeriodicWorker:
    """Calls `job` every `interval` seconds until stopped."""

    def __init__(self, name: str, job: Callable[[], Awaitable[object]], *, interval: float) -> None:
        self.name = name
        self._job = job
        self._interval = interval

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            started = time.monotonic()
            await self._job()
            remaining = self._interval - (time.monotonic() - started)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), max(remaining, 0.0))


STORE_RETRY_SECONDS = 1.0


class QueueSlots(Generic[T]):
    """`concurrency` loops that claim items from a durable queue and handle them one by one.

    Between items a loop sleeps until woken (new work), until the next item is due, or for
    `idle_poll` seconds. A queue that cannot be read (the database busy or locked) is read
    again shortly: nothing was claimed, so nothing is lost, and the other slots' work in
    flight goes on.
    """

    def __init__(
        self,
        name: str,
        *,
        claim: Callable[[], Awaitable[T | None]],
        handle: Callable[[T], Awaitable[None]],
        next_due: Callable[[], Awaitable[float | None]],
        concurrency: int,
        idle_poll: float,
        clock: Callable[[], float],
    ) -> None:
        self._name = name
        self._claim = claim
        self._handle = handle
        self._next_due = next_due
        self._concurrency = concurrency
        self._idle_poll = idle_poll
        self._clock = clock
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """New work is queued: stop waiting."""
        self._wake.set()

    async def run(self, stopping: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as group:
            for slot in range(self._concurrency):
                group.create_task(self._loop(stopping), name=f"{self._name}-slot-{slot}")

    async def _loop(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                item = await self._claim()
                due = None if item is not None else await self._next_due()
            except StoreError as exc:
                log.warning("%s: cannot read the queue (%s); trying again shortly", self._name, exc)
                await _sleep_unless(stopping, STORE_RETRY_SECONDS)
                continue
            if item is not None:
                await self._handle(item)
                continue
            self._wake.clear()
            delay = self._idle_poll if due is None else due - self._clock()
            waiters = [
                asyncio.ensure_future(self._wake.wait()),
                asyncio.ensure_future(stopping.wait()),
            ]
            await asyncio.wait(
                waiters,
                timeout=min(max(0.0, delay), self._idle_poll),
                return_when=asyncio.FIRST_COMPLETED,
            )
            for waiter in waiters:
                waiter.cancel()


async def _sleep_unless(stopping: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)
