"""Per-channel posting rate limit (429 + Retry-After) and injected faults."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.sandbox.slack import SlackSimulator
from tests.sandbox_slack._support import GENERAL, RANDOM, refused, seed


@pytest.fixture
async def strict_sim() -> AsyncIterator[SlackSimulator]:
    simulator = SlackSimulator(post_rate_per_second=2.0, post_burst=2)
    seed(simulator)
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


async def test_third_immediate_post_to_a_channel_gets_429_with_retry_after(
    strict_sim: SlackSimulator,
) -> None:
    client = AsyncWebClient(token=strict_sim.bot_token, base_url=strict_sim.api_url)
    await client.chat_postMessage(channel=GENERAL, text="1")
    await client.chat_postMessage(channel=GENERAL, text="2")

    with pytest.raises(SlackApiError) as limited:
        await client.chat_postMessage(channel=GENERAL, text="3")
    other_channel = await client.chat_postMessage(channel=RANDOM, text="elsewhere")

    response = limited.value.response
    assert response.status_code == 429
    assert response.data == {"ok": False, "error": "ratelimited"}
    retry_after = response.headers["Retry-After"]
    retry_after = retry_after[0] if isinstance(retry_after, list) else retry_after
    assert int(retry_after) >= 1
    assert other_channel["ok"] is True
    assert [m.text for m in strict_sim.channel_messages(GENERAL)] == ["1", "2"]
    assert strict_sim.calls_to("chat.postMessage")[2].http_status == 429


async def test_rate_limit_retry_handler_eventually_posts(strict_sim: SlackSimulator) -> None:
    client = AsyncWebClient(
        token=strict_sim.bot_token,
        base_url=strict_sim.api_url,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=2)],
    )
    for text in ("1", "2", "3"):
        await client.chat_postMessage(channel=GENERAL, text=text)

    assert [m.text for m in strict_sim.channel_messages(GENERAL)] == ["1", "2", "3"]
    statuses = [c.http_status for c in strict_sim.calls_to("chat.postMessage")]
    assert statuses == [200, 200, 429, 200]


async def test_injected_server_errors_then_recovery(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    sim.faults.server_error_next("chat.postMessage", times=2, status=503)

    first = await refused(client.chat_postMessage(channel=GENERAL, text="a"))
    await refused(client.chat_postMessage(channel=GENERAL, text="a"))
    third = await client.chat_postMessage(channel=GENERAL, text="a")

    assert first == {"ok": False, "error": "internal_error"}
    assert third["ok"] is True
    assert [c.http_status for c in sim.calls_to("chat.postMessage")] == [503, 503, 200]
    assert [m.text for m in sim.channel_messages(GENERAL)] == ["a"]
    assert sim.faults.pending == []


async def test_a_fault_after_the_effect_leaves_the_message_posted(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    # What a lost response looks like: the caller sees an error, Slack has the message.
    sim.faults.server_error_next("chat.postMessage", take_effect=True)

    await refused(client.chat_postMessage(channel=GENERAL, text="sent once?"))

    assert [m.text for m in sim.channel_messages(GENERAL)] == ["sent once?"]


async def test_injected_rate_limit_on_any_method(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    sim.faults.rate_limit_next("views.open", retry_after=7)

    with pytest.raises(SlackApiError) as limited:
        await client.views_open(trigger_id=sim.issue_trigger_id(), view={})

    assert limited.value.response.status_code == 429
    retry_after = limited.value.response.headers["Retry-After"]
    assert (retry_after[0] if isinstance(retry_after, list) else retry_after) == "7"


async def test_injected_delay_slows_the_answer(sim: SlackSimulator, client: AsyncWebClient) -> None:
    sim.faults.delay_next("auth.test", 0.3)

    started = time.monotonic()
    slow = await client.auth_test()
    slow_seconds = time.monotonic() - started
    started = time.monotonic()
    await client.auth_test()
    fast_seconds = time.monotonic() - started

    assert slow["ok"] is True
    assert slow_seconds >= 0.3
    assert fast_seconds < 0.3
