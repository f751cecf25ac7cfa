"""Fixtures: a running Slack simulator and a real slack_sdk client pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.sandbox.slack import SlackSimulator
from tests.sandbox_slack._support import seed


@pytest.fixture
async def sim() -> AsyncIterator[SlackSimulator]:
    simulator = SlackSimulator(post_rate_per_second=50.0, post_burst=50)
    seed(simulator)
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest.fixture
def client(sim: SlackSimulator) -> AsyncWebClient:
    return AsyncWebClient(token=sim.bot_token, base_url=sim.api_url)
