"""Three instances, one HighLevel location: together they stay under its limit.

Each "instance" is a HighLevelClient with its own limiter and its own PostgresStore on one
schema, as three `ghl-bridge serve` processes would have; they send SMS to the real
HighLevel sandbox over HTTP on 127.0.0.1, which enforces HighLevel's 100 requests per 10 s
(sliding window) and records every answer. The headline test sends 1,000 messages: a
hundred in each 10.5 s of the shared window, about 95 s.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

import httpx
import pytest
from pydantic import SecretStr

from bot.cluster import SharedBudget, highlevel_key
from bot.highlevel import (
    HighLevelClient,
    HighLevelError,
    MessageChannel,
    RateLimitedError,
    RateLimiter,
    SendMessageRequest,
)
from bot.sandbox.highlevel import ADA_LOVELACE_ID, KATHERINE_JOHNSON_ID, HighLevelSimulator
from storage import PostgresStore

INSTANCES = 3
WORKERS_PER_INSTANCE = 4  # sends each instance has in flight at once
# The sandbox's seed contacts that take SMS (one has no phone, one has DND on).
CONTACTS = (ADA_LOVELACE_ID, KATHERINE_JOHNSON_ID)


@dataclass
class Outcome:
    sent: int = 0
    failed: int = 0


@pytest.fixture
async def sim() -> AsyncIterator[HighLevelSimulator]:
    simulator = HighLevelSimulator()  # HighLevel's own limit: 100 per 10 s
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


def refused(sim: HighLevelSimulator) -> int:
    """The sandbox's own count of the 429s it answered."""
    return sum(1 for request in sim.requests if request.status == 429)


class RemainingSeen(httpx.AsyncHTTPTransport):
    """Keeps the lowest X-RateLimit-Remaining the sandbox answered: the room left in its window."""

    def __init__(self) -> None:
        super().__init__()
        self.lowest = 100

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        remaining = response.headers.get("X-RateLimit-Remaining")
        if remaining is not None:
            self.lowest = min(self.lowest, int(remaining))
        return response


def new_client(
    sim: HighLevelSimulator,
    limiter: RateLimiter,
    *,
    max_send_attempts: int = 3,
    transport: httpx.AsyncBaseTransport | None = None,
) -> HighLevelClient:
    return HighLevelClient(
        token=SecretStr(sim.token),
        location_id=sim.location_id,
        base_url=sim.base_url,
        limiter=limiter,
        max_send_attempts=max_send_attempts,
        backoff_base=0.05,
        backoff_max=0.2,
        transport=transport,
    )


async def send_all(clients: list[HighLevelClient], total: int) -> Outcome:
    """`total` SMS spread over the clients, each working through its share with a few workers."""
    outcome = Outcome()
    numbers = itertools.count()

    async def work(client: HighLevelClient, queue: asyncio.Queue[int]) -> None:
        while not queue.empty():
            n = queue.get_nowait()
            request = SendMessageRequest(
                type=MessageChannel.SMS, contact_id=CONTACTS[n % len(CONTACTS)], message=f"#{n}"
            )
            try:
                await client.send_message(request)
            except HighLevelError:
                outcome.failed += 1
            else:
                outcome.sent += 1

    workers = []
    for index, client in enumerate(clients):
        queue: asyncio.Queue[int] = asyncio.Queue()
        for _ in range(total // len(clients) + (index < total % len(clients))):
            queue.put_nowait(next(numbers))
        workers += [work(client, queue) for _ in range(WORKERS_PER_INSTANCE)]
    await asyncio.gather(*workers)
    return outcome


@pytest.mark.slow  # about 95 s: 1,000 requests, 100 per 10.5 s
async def test_three_instances_sending_1000_messages_to_one_location_get_no_429(
    sim: HighLevelSimulator, postgres_url: str
) -> None:
    seen = [RemainingSeen() for _ in range(INSTANCES)]
    async with AsyncExitStack() as stack:
        clients = []
        for n in range(INSTANCES):
            store = await stack.enter_async_context(
                PostgresStore(postgres_url, instance_id=f"instance-{n}")
            )
            limiter = RateLimiter(
                budget=SharedBudget(store), budget_key=highlevel_key(sim.location_id)
            )
            client = new_client(sim, limiter, transport=seen[n])
            clients.append(await stack.enter_async_context(client))

        outcome = await send_all(clients, 1000)

    assert refused(sim) == 0
    # HighLevel's window was filled to its last request, and none went beyond it.
    assert min(transport.lowest for transport in seen) == 0
    assert (outcome.sent, outcome.failed) == (1000, 0)
    assert sim.sent_count("SMS") == 1000
    assert all(budget_used(client) for client in clients)


# Ten seconds or more: with `make test-slow` (CI runs it), to keep `make test` short.
@pytest.mark.slow
async def test_without_the_shared_budget_the_same_instances_are_refused(
    sim: HighLevelSimulator,
) -> None:
    """The control: each instance alone keeps to 100 per 10 s, so together they overrun it."""
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(new_client(sim, RateLimiter(), max_send_attempts=1))
            for _ in range(INSTANCES)
        ]
        outcome = await send_all(clients, 150)

    assert refused(sim) > 0
    assert outcome.failed == refused(sim)  # one attempt each: every 429 is a failed send


def budget_used(client: HighLevelClient) -> bool:
    budget = client.limiter.budget
    return budget is not None and not budget.degraded


class FakeTime:
    """A limiter's clock that moves only when it sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def shared_limiter(store: PostgresStore, fake: FakeTime) -> RateLimiter:
    budget = SharedBudget(store, sleep=fake.sleep)
    return RateLimiter(
        clock=fake.clock, sleep=fake.sleep, budget=budget, budget_key=highlevel_key("loc-1")
    )


async def test_a_429_seen_by_one_instance_holds_the_others(postgres_url: str) -> None:
    time_a, time_b = FakeTime(), FakeTime()
    async with PostgresStore(postgres_url) as store_a, PostgresStore(postgres_url) as store_b:
        limiter_a = shared_limiter(store_a, time_a)
        limiter_b = shared_limiter(store_b, time_b)
        limiter_a.block_for(4.0)
        await limiter_a.acquire()  # tells the shared budget, then waits the block out
        await limiter_b.acquire()

    assert time_a.sleeps[0] == pytest.approx(4.0)
    [waited] = time_b.sleeps  # B's own window is empty: only the shared budget holds it
    assert 3.5 < waited <= 4.0 + 0.125


async def test_a_shared_wait_beyond_max_wait_is_refused_and_not_counted(
    postgres_url: str,
) -> None:
    fake = FakeTime()
    async with PostgresStore(postgres_url) as store, PostgresStore(postgres_url) as other:
        # Another instance has just spent the location's whole window.
        for _ in range(10):
            await other.take_window(highlevel_key("loc-1"), limit=10, period=10.5)
        limiter = shared_limiter(store, fake)
        limiter.max_requests = 10  # so this window is HighLevel's 10 per 10 s
        with pytest.raises(RateLimitedError) as refused_here:
            await limiter.acquire(max_wait=0.5)

    assert 10.0 < (refused_here.value.retry_after or 0) <= 10.5
    assert refused_here.value.may_have_acted is False
    assert fake.sleeps == []
    assert len(limiter._starts) == 0  # this process's window does not count it either
