"""Per-channel pacing of Slack posts: fake time for the arithmetic, real time and the real
Slack simulator for concurrency and 429s."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.slack_response import SlackResponse

from bot.posting.pacing import ChannelPacer, slack_retry_after
from bot.sandbox.slack import SlackSimulator


class FakeTime:
    """A clock that moves only when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class FakeRateLimited(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limited, retry after {retry_after}")
        self.retry_after = retry_after


def fake_retry_after(exc: BaseException) -> float | None:
    return exc.retry_after if isinstance(exc, FakeRateLimited) else None


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


async def acquire_times(pacer: ChannelPacer, fake: FakeTime, channel: str, n: int) -> list[float]:
    """When each of ``n`` sequential acquires returned, relative to the start."""
    start = fake.now
    times = []
    for _ in range(n):
        await pacer.acquire(channel)
        times.append(round(fake.now - start, 9))
    return times


# ---------------------------------------------------------------------- the bucket


async def test_burst_goes_at_once_then_posts_are_spaced(fake: FakeTime) -> None:
    pacer = ChannelPacer(rate_per_second=2, burst=3, clock=fake.clock, sleep=fake.sleep)

    assert await acquire_times(pacer, fake, "C1", 6) == [0, 0, 0, 0.5, 1.0, 1.5]


async def test_idle_channel_saves_up_at_most_one_burst(fake: FakeTime) -> None:
    pacer = ChannelPacer(rate_per_second=2, burst=3, clock=fake.clock, sleep=fake.sleep)
    await acquire_times(pacer, fake, "C1", 3)

    fake.now += 60  # long enough for 120 tokens, but the bucket holds 3

    assert await acquire_times(pacer, fake, "C1", 5) == [0, 0, 0, 0.5, 1.0]


async def test_burst_then_spacing_in_real_time() -> None:
    pacer = ChannelPacer(rate_per_second=20, burst=2)

    started = time.monotonic()
    for _ in range(6):
        await pacer.acquire("C1")
    elapsed = time.monotonic() - started

    assert 0.19 <= elapsed < 0.35  # 2 at once, then 4 x 50 ms


async def test_channels_have_separate_buckets(fake: FakeTime) -> None:
    pacer = ChannelPacer(rate_per_second=1, burst=2, clock=fake.clock, sleep=fake.sleep)
    assert await acquire_times(pacer, fake, "C1", 3) == [0, 0, 1.0]

    # C1 is spent; C2 still has its whole burst.
    assert await acquire_times(pacer, fake, "C2", 2) == [0, 0]
    assert await acquire_times(pacer, fake, "C1", 1) == [1.0]


async def test_channels_wait_in_parallel_in_real_time() -> None:
    pacer = ChannelPacer(rate_per_second=10, burst=1)

    async def three_posts(channel: str) -> None:
        for _ in range(3):
            await pacer.acquire(channel)

    started = time.monotonic()
    await asyncio.gather(three_posts("C1"), three_posts("C2"), three_posts("C3"))
    elapsed = time.monotonic() - started

    # Each channel needs 0.2 s; one shared bucket would need 0.8 s.
    assert 0.19 <= elapsed < 0.45


async def test_concurrent_waiters_are_served_in_call_order() -> None:
    jitter = random.Random(7)

    async def uneven_sleep(seconds: float) -> None:
        # Sleepers wake in a scrambled order; the pacer must still serve first-come first.
        await asyncio.sleep(seconds * jitter.uniform(1.0, 3.0))

    pacer = ChannelPacer(rate_per_second=2000, burst=1, sleep=uneven_sleep)
    served: list[int] = []

    async def post(number: int) -> None:
        await pacer.acquire("C1")
        served.append(number)

    tasks = [asyncio.create_task(post(number)) for number in range(100)]
    await asyncio.gather(*tasks)

    assert served == list(range(100))


async def test_cancelled_waiter_does_not_block_the_channel() -> None:
    pacer = ChannelPacer(rate_per_second=20, burst=1)
    await pacer.acquire("C1")
    waiter = asyncio.create_task(pacer.acquire("C1"))
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter

    await asyncio.wait_for(pacer.acquire("C1"), timeout=0.5)


# ---------------------------------------------------------------------- holds


async def test_hold_delays_the_next_post_and_drops_the_burst(fake: FakeTime) -> None:
    pacer = ChannelPacer(rate_per_second=2, burst=4, clock=fake.clock, sleep=fake.sleep)
    await pacer.acquire("C1")  # 3 tokens left

    pacer.hold("C1", 2.5)

    # The retry goes when the hold ends; after it the saved-up burst is gone.
    assert await acquire_times(pacer, fake, "C1", 3) == [2.5, 3.0, 3.5]
    assert await acquire_times(pacer, fake, "C2", 1) == [0]  # other channels are not held


async def test_held_until_reports_the_hold_and_a_shorter_hold_does_not_cut_it(
    fake: FakeTime,
) -> None:
    pacer = ChannelPacer(clock=fake.clock, sleep=fake.sleep)
    assert pacer.held_until("C1") is None

    pacer.hold("C1", 10)
    pacer.hold("C1", 3)
    assert pacer.held_until("C1") == fake.now + 10

    pacer.hold("C1", 12)
    assert pacer.held_until("C1") == fake.now + 12

    fake.now += 12
    assert pacer.held_until("C1") is None


async def test_hold_reaches_a_post_that_is_already_waiting() -> None:
    pacer = ChannelPacer(rate_per_second=50, burst=1)
    await pacer.acquire("C1")
    started = time.monotonic()
    waiter = asyncio.create_task(pacer.acquire("C1"))  # would go after 20 ms
    await asyncio.sleep(0)

    pacer.hold("C1", 0.2)
    await waiter

    assert time.monotonic() - started >= 0.19


# ---------------------------------------------------------------------- paced


async def test_paced_holds_and_retries_after_a_rate_limit(fake: FakeTime) -> None:
    pacer = ChannelPacer(rate_per_second=1, burst=4, clock=fake.clock, sleep=fake.sleep)
    attempts: list[float] = []

    async def post() -> str:
        attempts.append(fake.now)
        if len(attempts) < 3:
            raise FakeRateLimited(retry_after=1.5)
        return "ts-1"

    result = await pacer.paced("C1", post, is_rate_limited=fake_retry_after)

    assert result == "ts-1"
    start = attempts[0]
    assert [round(at - start, 9) for at in attempts] == [0, 1.5, 3.0]


async def test_paced_gives_up_after_max_attempts(fake: FakeTime) -> None:
    pacer = ChannelPacer(clock=fake.clock, sleep=fake.sleep)
    attempts = 0

    async def post() -> None:
        nonlocal attempts
        attempts += 1
        raise FakeRateLimited(retry_after=2)

    with pytest.raises(FakeRateLimited):
        await pacer.paced("C1", post, is_rate_limited=fake_retry_after, max_attempts=3)

    assert attempts == 3
    assert fake.sleeps == [2, 2]  # a hold between attempts, none after the last


async def test_paced_never_retries_other_errors(fake: FakeTime) -> None:
    pacer = ChannelPacer(clock=fake.clock, sleep=fake.sleep)
    attempts = 0

    async def post() -> None:
        nonlocal attempts
        attempts += 1
        raise ConnectionResetError("the post may have gone through")

    with pytest.raises(ConnectionResetError):
        await pacer.paced("C1", post, is_rate_limited=fake_retry_after)

    assert attempts == 1


async def test_paced_keeps_order_when_the_first_post_is_rate_limited(fake: FakeTime) -> None:
    pacer = ChannelPacer(rate_per_second=10, burst=4, clock=fake.clock, sleep=fake.sleep)
    delivered: list[str] = []
    refused_once: set[str] = set()

    def poster(text: str) -> Callable[[], Awaitable[str]]:
        async def post() -> str:
            await asyncio.sleep(0)  # let the other caller run while this post is in flight
            if text == "first" and text not in refused_once:
                refused_once.add(text)
                raise FakeRateLimited(retry_after=1)
            delivered.append(text)
            return text

        return post

    results = await asyncio.gather(
        pacer.paced("C1", poster("first"), is_rate_limited=fake_retry_after),
        pacer.paced("C1", poster("second"), is_rate_limited=fake_retry_after),
    )

    assert list(results) == ["first", "second"]
    assert delivered == ["first", "second"]


async def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        ChannelPacer(rate_per_second=0)
    with pytest.raises(ValueError):
        ChannelPacer(burst=0)

    async def post() -> None:
        return None

    with pytest.raises(ValueError):
        await ChannelPacer().paced("C1", post, is_rate_limited=fake_retry_after, max_attempts=0)


# ---------------------------------------------------------------------- memory


async def test_idle_channels_are_forgotten_but_held_ones_are_kept(fake: FakeTime) -> None:
    # burst=1: a held channel's bucket looks full, so only the hold itself keeps it remembered.
    pacer = ChannelPacer(rate_per_second=1, burst=1, clock=fake.clock, sleep=fake.sleep)
    pacer.hold("HELD", 1_000_000)

    for number in range(2000):
        await pacer.acquire(f"C{number}")
        fake.now += 5  # long enough for the bucket to fill again

    assert pacer.tracked_channels <= 256
    assert pacer.held_until("HELD") is not None
    # A forgotten channel comes back as a fresh one: a full bucket, no wait.
    assert await acquire_times(pacer, fake, "C0", 2) == [0, 1.0]


# ---------------------------------------------------------------------- slack_retry_after


def slack_error(status: int, headers: dict[str, str], error: str = "ratelimited") -> SlackApiError:
    response = SlackResponse(
        client=None,
        http_verb="POST",
        api_url="http://127.0.0.1/api/chat.postMessage",
        req_args={},
        data={"ok": False, "error": error},
        headers=headers,
        status_code=status,
    )
    # slack_sdk leaves this constructor unannotated.
    return SlackApiError("failed", response)  # type: ignore[no-untyped-call]


def test_slack_retry_after_reads_the_429_header() -> None:
    assert slack_retry_after(slack_error(429, {"Retry-After": "7"})) == 7.0
    assert slack_retry_after(slack_error(429, {"retry-after": "2.5"})) == 2.5
    assert slack_retry_after(slack_error(429, {})) == 1.0
    assert slack_retry_after(slack_error(429, {"Retry-After": "soon"})) == 1.0
    assert slack_retry_after(slack_error(429, {"Retry-After": "-3"})) == 1.0


def test_slack_retry_after_ignores_other_errors() -> None:
    assert slack_retry_after(slack_error(200, {}, error="channel_not_found")) is None
    assert slack_retry_after(slack_error(500, {"Retry-After": "5"}, error="fatal_error")) is None
    assert slack_retry_after(ValueError("ratelimited")) is None
    assert slack_retry_after(TimeoutError()) is None


# ---------------------------------------------------------------------- the Slack simulator

CHANNELS = ("C1", "C2", "C3")
POSTS_PER_CHANNEL = 10


@pytest.fixture
async def sim() -> AsyncIterator[SlackSimulator]:
    simulator = SlackSimulator(post_rate_per_second=5, post_burst=2)
    for number, channel in enumerate(CHANNELS, start=1):
        simulator.add_channel(channel, f"channel-{number}")
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


async def post_all(
    sim: SlackSimulator, pacer: ChannelPacer, seen_retry_afters: list[float]
) -> None:
    """Post every message at once, interleaved across channels, each through ``paced``."""
    client = AsyncWebClient(token=sim.bot_token, base_url=sim.api_url, retry_handlers=[])

    def retry_after(exc: BaseException) -> float | None:
        seconds = slack_retry_after(exc)
        if seconds is not None:
            seen_retry_afters.append(seconds)
        return seconds

    def poster(channel: str, text: str) -> Callable[[], Awaitable[object]]:
        async def post() -> object:
            return await client.chat_postMessage(channel=channel, text=text)

        return post

    await asyncio.gather(
        *(
            pacer.paced(channel, poster(channel, f"{channel} #{n}"), is_rate_limited=retry_after)
            for n in range(POSTS_PER_CHANNEL)
            for channel in CHANNELS
        )
    )


def assert_each_channel_got_every_post_once_in_order(sim: SlackSimulator) -> None:
    for channel in CHANNELS:
        texts = [message.text for message in sim.channel_messages(channel)]
        assert texts == [f"{channel} #{n}" for n in range(POSTS_PER_CHANNEL)]
    stored = [call for call in sim.calls_to("chat.postMessage") if call.ok]
    assert len(stored) == len(CHANNELS) * POSTS_PER_CHANNEL


async def test_pacer_under_slacks_limit_never_hits_it(sim: SlackSimulator) -> None:
    seen_retry_afters: list[float] = []

    await post_all(sim, ChannelPacer(rate_per_second=4, burst=1), seen_retry_afters)

    assert_each_channel_got_every_post_once_in_order(sim)
    assert [call.http_status for call in sim.calls_to("chat.postMessage")] == [200] * 30
    assert seen_retry_afters == []


async def test_pacer_over_slacks_limit_recovers_from_429s(sim: SlackSimulator) -> None:
    seen_retry_afters: list[float] = []

    await post_all(sim, ChannelPacer(rate_per_second=20, burst=5), seen_retry_afters)

    assert_each_channel_got_every_post_once_in_order(sim)
    refused = [call for call in sim.calls_to("chat.postMessage") if call.http_status == 429]
    assert refused, "the pacer was meant to outrun the simulator's limit"
    assert len(seen_retry_afters) == len(refused)
    assert set(seen_retry_afters) == {1.0}  # the simulator's Retry-After, read from the header
