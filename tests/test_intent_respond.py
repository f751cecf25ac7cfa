"""Telling the person through a response_url gives up in time when Slack does not answer, so the
restart's recovery goes on with an ephemeral instead of waiting on one notice for minutes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from unittest.mock import create_autospec

import aiohttp
import pytest
from aiohttp import web

from bot.outbound import OutboundService
from bot.outbound import intents as intents_module
from bot.outbound.intents import ComposeIntents, IntentRecovery, Notice
from storage import Store


@pytest.fixture
async def silent_url() -> AsyncIterator[tuple[str, asyncio.Event]]:
    """A response_url that takes the request and never answers."""
    arrived, release = asyncio.Event(), asyncio.Event()

    async def never(request: web.Request) -> web.Response:
        await request.read()
        arrived.set()
        await release.wait()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", never)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/hook", arrived
    release.set()
    await runner.cleanup()


async def test_a_response_url_that_never_answers_is_given_up_after_the_timeout(
    silent_url: tuple[str, asyncio.Event], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, arrived = silent_url
    monkeypatch.setattr(intents_module, "RESPOND_TIMEOUT_SECONDS", 0.2)
    async with aiohttp.ClientSession() as session:  # as the app's: no timeout of its own
        recovery = IntentRecovery(
            store=create_autospec(Store, instance=True),
            intents=create_autospec(ComposeIntents, instance=True),
            outbound=create_autospec(OutboundService, instance=True),
            session=session,
        )
        # The guard is far above the timeout; without one the session's own 5 minutes apply.
        async with asyncio.timeout(10):
            told = await recovery._respond(url, Notice(text="Your text to Ada was sent."))
    assert arrived.is_set()  # it did reach the URL: what timed out was the answer
    assert told is False  # so the caller tells the person with an ephemeral instead
