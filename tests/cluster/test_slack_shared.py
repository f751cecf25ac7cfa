"""Three instances posting to one Slack channel keep to one channel's rate together.

Each "instance" is a ChannelPacer with its own PostgresStore on one schema; they post through
slack_sdk to the real Slack sandbox on 127.0.0.1, which answers 429 past its per-channel
token bucket (5 posts a second, bursts of 2). Each pacer alone keeps to 4 a second.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.cluster import SharedBudget
from bot.posting.pacing import ChannelPacer, slack_retry_after
from bot.sandbox.slack import SlackSimulator
from storage import PostgresStore

CHANNEL = "C1"
INSTANCES = 3
POSTS_PER_INSTANCE = 10


@pytest.fixture
async def sim() -> AsyncIterator[SlackSimulator]:
    simulator = SlackSimulator(post_rate_per_second=5, post_burst=2)
    simulator.add_channel(CHANNEL, "support")
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


async def post_from_every_instance(sim: SlackSimulator, pacers: list[ChannelPacer]) -> None:
    client = AsyncWebClient(token=sim.bot_token, base_url=sim.api_url, retry_handlers=[])

    def post(text: str) -> Callable[[], Awaitable[object]]:
        async def call() -> object:
            return await client.chat_postMessage(channel=CHANNEL, text=text)

        return call

    await asyncio.gather(
        *(
            pacer.paced(CHANNEL, post(f"{n}.{i}"), is_rate_limited=slack_retry_after)
            for n, pacer in enumerate(pacers)
            for i in range(POSTS_PER_INSTANCE)
        )
    )


class FakeTime:
    """A pacer's clock that moves only when it sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def statuses(sim: SlackSimulator) -> list[int]:
    return [call.http_status for call in sim.calls_to("chat.postMessage")]


@pytest.mark.slow  # about 8 to 10 s: make test-slow (CI runs it)
async def test_three_instances_share_the_channels_rate(
    sim: SlackSimulator, postgres_url: str
) -> None:
    async with AsyncExitStack() as stack:
        pacers = []
        for _ in range(INSTANCES):
            store = await stack.enter_async_context(PostgresStore(postgres_url))
            pacers.append(
                ChannelPacer(rate_per_second=4, burst=1, budget=SharedBudget(store), team="T1")
            )
        await post_from_every_instance(sim, pacers)

    assert statuses(sim) == [200] * INSTANCES * POSTS_PER_INSTANCE
    assert len(sim.channel_messages(CHANNEL)) == INSTANCES * POSTS_PER_INSTANCE


# Ten seconds or more: with `make test-slow` (CI runs it), to keep `make test` short.
@pytest.mark.slow
async def test_without_the_shared_budget_they_overrun_it(sim: SlackSimulator) -> None:
    """The control: the same pacers, each alone."""
    pacers = [ChannelPacer(rate_per_second=4, burst=1) for _ in range(INSTANCES)]
    await post_from_every_instance(sim, pacers)

    assert 429 in statuses(sim)
    assert len(sim.channel_messages(CHANNEL)) == INSTANCES * POSTS_PER_INSTANCE  # retried


async def test_a_429_holds_the_channel_for_the_other_instances(postgres_url: str) -> None:
    """Instance A is told to wait 2 s: instance B's next post waits for it too."""
    time_a = FakeTime()
    time_b = FakeTime()
    async with PostgresStore(postgres_url) as store_a, PostgresStore(postgres_url) as store_b:
        budget_a = SharedBudget(store_a, sleep=time_a.sleep)
        pacer_a = ChannelPacer(clock=time_a.clock, sleep=time_a.sleep, budget=budget_a, team="T1")
        budget_b = SharedBudget(store_b, sleep=time_b.sleep)
        pacer_b = ChannelPacer(clock=time_b.clock, sleep=time_b.sleep, budget=budget_b, team="T1")
        pacer_a.hold(CHANNEL, 2.0)
        await pacer_a.acquire(CHANNEL)  # tells the database, then waits the hold out
        await pacer_b.acquire(CHANNEL)

    # B's own bucket is full; the shared one makes it wait the hold out, then one permit's cost
    # (1 a second) behind A's post, less the moments the database calls took.
    [waited] = time_b.sleeps
    assert 2.5 < waited <= 3.0


async def test_a_workspace_that_cannot_be_learnt_keeps_to_the_local_share(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def no_team() -> str:
        raise RuntimeError("auth.test failed")

    waits: list[float] = []

    async def recorded_sleep(seconds: float) -> None:
        waits.append(seconds)

    async with PostgresStore(postgres_url) as store:
        budget = SharedBudget(store, instances=4, sleep=recorded_sleep)
        pacer = ChannelPacer(rate_per_second=100, burst=4, budget=budget, team=no_team)
        with caplog.at_level(logging.WARNING, logger="bot.posting.pacing"):
            for _ in range(3):
                await pacer.acquire(CHANNEL)

    # A quarter of 100 a second, no burst: 1/25 s apart (the recorded sleeps let no time pass).
    assert waits == pytest.approx([0.04, 0.08], abs=0.01)
    assert len(caplog.records) == 1
