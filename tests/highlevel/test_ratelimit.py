"""The limiter: a fake clock for the arithmetic, the real server for the waiting."""

from __future__ import annotations

import asyncio
import time

import pytest
from pydantic import SecretStr

from bot.highlevel import (
    HighLevelClient,
    MessageChannel,
    RateLimitedError,
    RateLimiter,
    SendMessageRequest,
)

from .conftest import TOKEN, ClientFactory, FakeHighLevel, Recorded, Reply


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def limiter_on(fake_time: FakeTime, *, max_requests: int, interval: float) -> RateLimiter:
    return RateLimiter(
        max_requests=max_requests, interval=interval, clock=fake_time.clock, sleep=fake_time.sleep
    )


async def test_sliding_window_waits_for_the_oldest_start() -> None:
    t = FakeTime()
    limiter = limiter_on(t, max_requests=3, interval=10.0)
    for _ in range(3):
        await limiter.acquire()
        t.now += 1.0
    assert t.sleeps == []
    await limiter.acquire()  # now = 1003; the first start (1000) leaves the window at 1010
    assert t.sleeps == [pytest.approx(7.0)]
    await limiter.acquire()  # second start (1001) leaves at 1011
    assert t.sleeps[1:] == [pytest.approx(1.0)]


async def test_server_saying_fewer_remain_is_believed() -> None:
    t = FakeTime()
    limiter = limiter_on(t, max_requests=100, interval=10.0)
    await limiter.acquire()
    limiter.observe_headers({"X-RateLimit-Remaining": "0"})
    assert limiter.wait_time() == pytest.approx(10.0)
    await limiter.acquire()
    assert t.sleeps == [pytest.approx(10.0)]


async def test_server_saying_more_remain_does_not_loosen() -> None:
    t = FakeTime()
    limiter = limiter_on(t, max_requests=2, interval=10.0)
    await limiter.acquire()
    await limiter.acquire()
    limiter.observe_headers({"X-RateLimit-Remaining": "50"})
    assert limiter.wait_time() == pytest.approx(10.0)


def test_max_and_interval_follow_the_server() -> None:
    t = FakeTime()
    limiter = limiter_on(t, max_requests=100, interval=10.0)
    limiter.observe_headers(
        {"X-RateLimit-Max": "40", "X-RateLimit-Interval-Milliseconds": "2000", "X-Junk": "x"}
    )
    assert (limiter.max_requests, limiter.interval) == (40, 2.0)
    limiter.observe_headers({"X-RateLimit-Max": "nonsense", "X-RateLimit-Remaining": ""})
    assert limiter.max_requests == 40


async def test_block_for_holds_everyone_and_max_wait_refuses() -> None:
    t = FakeTime()
    limiter = limiter_on(t, max_requests=100, interval=10.0)
    limiter.block_for(3.0)
    with pytest.raises(RateLimitedError) as info:
        await limiter.acquire(max_wait=1.0)
    assert info.value.retry_after == pytest.approx(3.0)
    assert info.value.may_have_acted is False
    await limiter.acquire(max_wait=5.0)
    assert t.sleeps == [pytest.approx(3.0)]


def test_invalid_limits_are_rejected() -> None:
    with pytest.raises(ValueError):
        RateLimiter(max_requests=0)
    with pytest.raises(ValueError):
        RateLimiter(interval=0)


async def test_one_limiter_per_location_is_shared() -> None:
    clients = [
        HighLevelClient(token=SecretStr(TOKEN), location_id=location)
        for location in ("loc-shared-A", "loc-shared-A", "loc-shared-B")
    ]
    try:
        assert clients[0].limiter is clients[1].limiter
        assert clients[0].limiter is RateLimiter.for_location("loc-shared-A")
        assert clients[2].limiter is not clients[0].limiter
        assert clients[0].limiter.max_requests == 100
        assert clients[0].limiter.interval == 10.0
    finally:
        for client in clients:
            await client.aclose()


class StrictServerWindow:
    """Answers 429 if more than ``limit`` requests arrive within ``window`` seconds."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self.arrivals: list[float] = []
        self.rejected = 0

    def __call__(self, _: Recorded) -> Reply:
        now = time.monotonic()
        self.arrivals.append(now)
        if sum(1 for t in self.arrivals if t > now - self.window) > self.limit:
            self.rejected += 1
            return Reply({"statusCode": 429, "message": "Too many requests"}, 429)
        return Reply({"id": "cv1"})


async def test_client_waits_instead_of_hitting_429(
    fake: FakeHighLevel, make_client: ClientFactory
) -> None:
    # Client budget 3 per 300 ms; the server enforces 3 per 250 ms (slack for network jitter).
    server = StrictServerWindow(limit=3, window=0.25)
    fake.responder = server
    client = make_client(limiter=RateLimiter(max_requests=3, interval=0.3), max_read_attempts=1)
    started = time.monotonic()
    for _ in range(4):
        await client.get_conversation("cv1")
    elapsed = time.monotonic() - started
    assert server.rejected == 0
    assert len(server.arrivals) == 4
    assert server.arrivals[3] - server.arrivals[0] >= 0.25
    assert 0.28 <= elapsed < 1.0


async def test_concurrent_requests_share_the_budget(
    fake: FakeHighLevel, make_client: ClientFactory
) -> None:
    server = StrictServerWindow(limit=3, window=0.25)
    fake.responder = server
    limiter = RateLimiter(max_requests=3, interval=0.3)
    first, second = make_client(limiter=limiter), make_client(limiter=limiter)
    started = time.monotonic()
    await asyncio.gather(*(c.get_conversation("cv1") for c in (first, second) * 3))
    elapsed = time.monotonic() - started
    assert server.rejected == 0
    assert len(server.arrivals) == 6
    assert 0.28 <= elapsed < 1.0


async def test_remaining_zero_header_makes_the_client_wait(
    fake: FakeHighLevel, make_client: ClientFactory
) -> None:
    exhausted = {
        "X-RateLimit-Max": "100",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Interval-Milliseconds": "300",
    }
    fake.script("GET", "/conversations/cv1", Reply({"id": "cv1"}, headers=exhausted))
    client = make_client(limiter=RateLimiter(max_requests=1000, interval=1.0))
    await client.get_conversation("cv1")
    started = time.monotonic()
    await client.get_conversation("cv1")
    assert time.monotonic() - started >= 0.28
    assert client.limiter.interval == pytest.approx(0.3)


async def test_retry_after_blocks_the_retry(
    fake: FakeHighLevel, make_client: ClientFactory
) -> None:
    arrivals: list[float] = []

    def answer(_: Recorded) -> Reply:
        arrivals.append(time.monotonic())
        if len(arrivals) == 1:
            return Reply({"statusCode": 429, "message": "slow"}, 429, {"Retry-After": "0.2"})
        return Reply({"id": "cv1"})

    fake.responder = answer
    assert (await make_client().get_conversation("cv1")).id == "cv1"
    assert len(arrivals) == 2
    assert arrivals[1] - arrivals[0] >= 0.19


async def test_429_without_retry_after_waits_out_the_interval(
    fake: FakeHighLevel, make_client: ClientFactory
) -> None:
    fake.script(
        "GET",
        "/conversations/cv1",
        Reply({"statusCode": 429, "message": "slow"}, 429),
        Reply({"id": "cv1"}),
    )
    limiter = RateLimiter(max_requests=1000, interval=0.2)
    started = time.monotonic()
    await make_client(limiter=limiter).get_conversation("cv1")
    assert time.monotonic() - started >= 0.19


async def test_long_retry_after_raises_instead_of_hanging(
    fake: FakeHighLevel, make_client: ClientFactory
) -> None:
    fake.script(
        "POST",
        "/conversations/messages",
        Reply({"statusCode": 429, "message": "slow"}, 429, {"Retry-After": "120"}),
    )
    client = make_client(max_rate_limit_wait=0.5)
    started = time.monotonic()
    with pytest.raises(RateLimitedError) as info:
        await client.send_message(
            SendMessageRequest(type=MessageChannel.SMS, contact_id="c1", message="x")
        )
    assert time.monotonic() - started < 0.5
    assert info.value.retry_after > 100
    assert info.value.may_have_acted is False
    assert len(fake.requests) == 1
