"""Background workers and the group that starts and stops them together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
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


# A crashed worker is restarted after RESTART_DELAY_SECONDS, doubling with each crash in a row
# up to MAX_RESTART_DELAY_SECONDS. After FAILING_AFTER_CRASHES in a row it counts as failing
# (health says so) until a run lasts STABLE_RUN_SECONDS.
RESTART_DELAY_SECONDS = 1.0
MAX_RESTART_DELAY_SECONDS = 60.0
FAILING_AFTER_CRASHES = 3
STABLE_RUN_SECONDS = 10.0


class _Supervision:
    """One worker's crash record: crashes in a row, the last one's kind, the current run."""

    __slots__ = ("crashes", "last_error", "run_started", "worker")

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.crashes = 0
        self.last_error = ""
        self.run_started: float | None = None  # None while waiting to restart


class WorkerGroup:
    """Runs workers as tasks; a worker that crashes is restarted with a growing pause.

    The first crash in a row is logged with its traceback, the next ones in one line with
    their count, so a worker that cannot run (the database read-only, say) neither spins nor
    floods the log. `problem()` says when one keeps failing.
    """

    def __init__(
        self,
        workers: Sequence[Worker],
        *,
        restart_delay: float = RESTART_DELAY_SECONDS,
        max_restart_delay: float = MAX_RESTART_DELAY_SECONDS,
        failing_after: int = FAILING_AFTER_CRASHES,
        stable_after: float = STABLE_RUN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._supervised = [_Supervision(worker) for worker in workers]
        self._restart_delay = restart_delay
        self._max_restart_delay = max_restart_delay
        self._failing_after = failing_after
        self._stable_after = stable_after
        self._clock = clock
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def problem(self) -> str | None:
        """None while every worker runs; else one line saying which does not, and why."""
        if self._stopping.is_set():
            return "stopping"
        if self._supervised and not self._tasks:
            return "the workers have not started"
        for state, task in zip(self._supervised, self._tasks, strict=True):
            name = state.worker.name
            if task.done():
                return f"worker {name} has stopped"
            if self._failing(state):
                return (
                    f"worker {name} keeps failing ({state.crashes} crashes in a row, "
                    f"last: {state.last_error})"
                )
        return None

    def _failing(self, state: _Supervision) -> bool:
        if state.crashes < self._failing_after:
            return False
        # Restarted and running for a while: it works again (its count resets at its next crash).
        started = state.run_started
        return started is None or self._clock() - started < self._stable_after

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._supervise(state), name=f"worker:{state.worker.name}")
            for state in self._supervised
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

    async def _supervise(self, state: _Supervision) -> None:
        name = state.worker.name
        while not self._stopping.is_set():
            started = state.run_started = self._clock()
            try:
                await state.worker.run(self._stopping)
            except Exception as exc:
                state.run_started = None
                if self._clock() - started >= self._stable_after:
                    state.crashes = 0  # it had been working: this is a new run of crashes
                state.crashes += 1
                state.last_error = type(exc).__name__
                delay = min(self._max_restart_delay, self._restart_delay * 2 ** (state.crashes - 1))
                if state.crashes == 1:
                    log.exception("worker %s crashed; restarting in %.0f s", name, delay)
                else:
                    log.warning(
                        "worker %s crashed again (%d times in a row, %s: %s); restarting in %.0f s",
                        name,
                        state.crashes,
                        state.last_error,
                        _one_line(exc),
                        delay,
                    )
                await _sleep_unless(self._stopping, delay)
            else:
                return


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text[:limit] + ("..." if len(text) > limit else "")


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
STORE_RETRY_MAX_SECONDS = 15.0
STORE_FAILURE_LOG_SECONDS = 60.0


class QueueSlots(Generic[T]):
    """`concurrency` loops that claim items from a durable queue and handle them one by one.

    A loop that finds nothing to claim sleeps until woken, until the next item is due, or for
    `idle_poll` seconds. New work wakes the loops (`wake`), and so does every item a loop has
    handled (finished, failed or put back for a retry), since that may free the next item of
    its conversation or change when the next one is due. Items that wait behind one in flight
    therefore cost nothing until it is done: a claim that finds nothing while `next_due` is
    already past means exactly that, and is not tried again until a wake.

    A look that finds nothing is remembered until the next wake: the other slots that the
    same wake set looking take its answer instead of asking the store again. Nothing but a
    wake (and time) can make an item claimable that was not (new work wakes the loops, and
    so does every item handled), so their looks would find the same. A slot that looks
    because its wait ran out (an item's due time, or the idle poll, which is how work from
    elsewhere is found: another instance, a CLI command) always asks the store.

    A queue that cannot be read (the database busy or locked) is read again shortly: nothing
    was claimed, so nothing is lost, and the other slots' work in flight goes on.
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
        self._woken = asyncio.Event()
        # The last look that found nothing: the wake it was made under, the due time it
        # found, and when it looked. None once a look takes an item.
        self._found_nothing: tuple[asyncio.Event, float | None, float] | None = None
        self._store_failures = 0
        self._store_failure_logged_at = -math.inf

    def _store_failed(self, exc: StoreError) -> float:
        """Count a failed read of the queue; returns how long to wait before the next one.

        A database that stays unreadable (read-only, disk full) would otherwise make every slot
        log a line a second for as long as it lasts: the waits double up to a cap, and the
        warning is repeated at most once per STORE_FAILURE_LOG_SECONDS, with the count.
        """
        self._store_failures += 1
        now = time.monotonic()
        if now - self._store_failure_logged_at >= STORE_FAILURE_LOG_SECONDS:
            self._store_failure_logged_at = now
            log.warning(
                "%s: cannot read the queue (%s); %d failed reads so far, trying again shortly",
                self._name,
                exc,
                self._store_failures,
            )
        backoff: float = STORE_RETRY_SECONDS * 2.0 ** min(self._store_failures - 1, 16)
        return min(STORE_RETRY_MAX_SECONDS, backoff)

    def _store_recovered(self) -> None:
        if self._store_failures:
            log.info("%s: the queue is readable again", self._name)
            self._store_failures = 0
            self._store_failure_logged_at = -math.inf

    def wake(self) -> None:
        """The queue changed (new work, or an item handled): every waiting loop looks again."""
        # A fresh Event per wake, rather than one shared Event that each loop clears: a loop
        # takes the current Event before it looks at the queue and waits on that one, so a
        # wake that comes while it is looking is never cleared away by it or by another loop.
        woken, self._woken = self._woken, asyncio.Event()
        woken.set()

    async def run(self, stopping: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as group:
            for slot in range(self._concurrency):
                group.create_task(self._loop(stopping), name=f"{self._name}-slot-{slot}")

    def _known_empty(self, woken: asyncio.Event, now: float) -> tuple[float | None] | None:
        """The due time (boxed) that a look under the same wake found, while that look's
        answer holds; None: the store must be asked."""
        found = self._found_nothing
        if found is None or found[0] is not woken:
            return None
        _wake, due, looked_at = found
        if due is not None and looked_at < due <= now:
            return None  # it has fallen due since
        return (due,)

    async def _loop(self, stopping: asyncio.Event) -> None:
        timed_out = True  # the first look asks the store
        while not stopping.is_set():
            woken = self._woken
            looked_at = self._clock()
            known = None if timed_out else self._known_empty(woken, looked_at)
            item: T | None = None
            try:
                if known is not None:
                    due = known[0]
                else:
                    item = await self._claim()
                    due = None if item is not None else await self._next_due()
            except StoreError as exc:
                timed_out = not await _wait_any(woken, stopping, self._store_failed(exc))
                continue
            if known is None:
                self._store_recovered()
                self._found_nothing = None if item is not None else (woken, due, looked_at)
            if item is not None:
                try:
                    await self._handle(item)
                finally:
                    self.wake()
                continue
            now = self._clock()
            if due is not None and looked_at < due <= now:
                timed_out = True
                continue  # it fell due while the claim was looking: look again at once
            # Nothing to wait for (due is None), or all that is due waits behind items in
            # flight (due <= looked_at, yet nothing was claimed): a wake, when one of those
            # is handled or new work comes, or else the idle poll, is the time to look again.
            delay = self._idle_poll if due is None or due <= now else due - now
            timed_out = not await _wait_any(woken, stopping, min(delay, self._idle_poll))


async def _wait_any(first: asyncio.Event, second: asyncio.Event, seconds: float) -> bool:
    """Wait for either event, at most `seconds`; False: neither was set in time."""
    waiters = [asyncio.ensure_future(first.wait()), asyncio.ensure_future(second.wait())]
    try:
        done, _pending = await asyncio.wait(
            waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED
        )
        return bool(done)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def _sleep_unless(stopping: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)


class QueueLooks(Generic[T]):
    """`claim` and `next_due` for a queue's QueueSlots, where looks that overlap are joined.

    `look` claims an item and, when it finds none, also says when the next one is due (the
    store's `claim_next_or_due`): a slot that finds nothing then asks `next_due` at once,
    which answers from that look without another store round trip.

    Each wake makes every idle slot look at the queue at once. QueueSlots answers the looks
    that come after an empty one; the looks that overlap one in flight (a claim that waits
    on the database) are joined here. A claim asked while another is in flight waits for
    it: if that one found nothing, this one returns nothing too, since whatever could
    change that since also wakes the slots again (and a time falling due is looked for
    again by the slot that looked first); if it took an item, this one claims for itself.
    A next_due asked while another is in flight takes that one's answer.
    """

    def __init__(
        self,
        look: Callable[[], Awaitable[tuple[T | None, float | None]]],
        next_due: Callable[[], Awaitable[float | None]],
    ) -> None:
        self._look = look
        self._next_due = next_due
        # Set when the claim in flight ends: True if it took an item (or failed).
        self._claiming: asyncio.Future[bool] | None = None
        self._asking_due: asyncio.Future[float | None] | None = None
        # The due time the last claim found when it took nothing (kept until a claim starts).
        self._due_found: tuple[float | None] | None = None

    async def claim(self) -> T | None:
        while self._claiming is not None:
            # Shielded: a waiter cancelled must not cancel what the others wait for.
            if not await asyncio.shield(self._claiming):
                return None
        claiming = asyncio.get_running_loop().create_future()
        self._claiming = claiming
        self._due_found = None
        took = True
        try:
            item, due = await self._look()
            took = item is not None
            if not took:
                self._due_found = (due,)
            return item
        finally:
            self._claiming = None
            claiming.set_result(took)

    async def next_due(self) -> float | None:
        if self._due_found is not None:
            return self._due_found[0]
        if self._asking_due is not None:
            with contextlib.suppress(_AskAgain):
                return await asyncio.shield(self._asking_due)
        asking = asyncio.get_running_loop().create_future()
        self._asking_due = asking
        try:
            due = await self._next_due()
        except BaseException:
            asking.set_exception(_AskAgain())
            asking.exception()  # retrieved: nobody may be waiting
            raise
        finally:
            self._asking_due = None
        asking.set_result(due)
        return due


class _AskAgain(Exception):
    """The next_due a caller joined failed or was cancelled: the caller asks for itself."""
