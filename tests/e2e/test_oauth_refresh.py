"""Access tokens that live a few seconds, across a stream of sends: every send goes out, each
single-use refresh token is used once, with one bridge and with two sharing one database."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence

import pytest

from bot.sandbox.highlevel import HighLevelSimulator
from bot.sandbox.slack import SlackDriver
from bot.sandbox.stack import AGENT_USER, SALES_CHANNEL, SandboxStack
from tests.e2e.conftest import NO_SQLITE_FILE, OAuthStackFactory, eventually, stack_store
from tests.e2e.test_oauth_install import L1, L2, bearer, token_location
from tests.e2e.test_oauth_routing import MARIE_PHONE, PLUMBING_CHANNEL, SEND, link

TOKEN_TTL = 3
SEND_EVERY = 0.5
# Two sends a second, each posting to Slack more than once: Slack's pace of about one post a
# second per channel (the default SLACK_POST_RATE) would queue the posts far past the sends,
# and what is measured here is HighLevel's side.
FAST_SLACK = {"slack_post_rate": 20}
TARGETS = ((SALES_CHANNEL, L1, "+1 415 555 0100"), (PLUMBING_CHANNEL, L2, MARIE_PHONE))


async def connect_two(stack: SandboxStack) -> None:
    stack.slack.add_channel(PLUMBING_CHANNEL, "plumbing")
    for location_id in (L1, L2):
        page = await stack.install(location=location_id)
        assert page.status == 200, page.text
    await link(stack, SALES_CHANNEL, L1)
    await link(stack, PLUMBING_CHANNEL, L2)


async def send_for(stack: SandboxStack, drivers: Sequence[SlackDriver], seconds: float) -> int:
    """A quick send every SEND_EVERY s for `seconds`, alternating channels and bridges; the
    number sent. Each must be acknowledged in Slack's 3 s."""
    count = 0
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        channel, _location, phone = TARGETS[count % len(TARGETS)]
        driver = drivers[count % len(drivers)]
        result = await driver.slash_command(
            "/sendsms", f"{phone} tick {count}", user_id=AGENT_USER, channel_id=channel
        )
        assert result.status == 200, result.text
        assert result.elapsed_seconds < 3.0
        count += 1
        # The cadence of a busy agent, not a wait for anything to happen.
        await asyncio.sleep(max(0.0, started + count * SEND_EVERY - time.monotonic()))
    return count


async def check_every_send_went_out(stack: SandboxStack, count: int) -> None:
    sim = stack.highlevel

    last: dict[str, int] = {}

    async def settled() -> dict[str, int] | None:
        async with stack_store(stack) as store:
            entries = await store.list_outbox(limit=10_000)
        found = dict(Counter(str(e.state) for e in entries))
        last.clear()
        last.update(found)
        done = sum(found.values()) == count and set(found) <= {"sent", "failed"}
        return found if done else None

    try:
        final = await eventually(settled, within=30)
    except AssertionError as exc:
        raise AssertionError(f"{count} sends, outbox {last}") from exc
    assert final == {"sent": count}, final
    accepted = [r for r in sim.requests_to(*SEND) if r.status == 200]
    assert len(accepted) == count
    # Every send went out with a token of its channel's location.
    by_text = {r.body["message"]: token_location(sim, r) for r in accepted}
    for number in range(count):
        assert by_text[f"tick {number}"] == TARGETS[number % len(TARGETS)][1]
    counters = sim.oauth.counters
    assert counters.refresh_token_reuses == 0
    # Tokens lived TOKEN_TTL s: each location went through several of them.
    for location_id in (L1, L2):
        tokens = {bearer(r) for r in accepted if token_location(sim, r) == location_id}
        assert len(tokens) >= 2, (location_id, len(tokens))
    assert counters.refreshes >= 2


async def run_one_bridge(stack: SandboxStack, seconds: float) -> None:
    await connect_two(stack)
    count = await send_for(stack, [stack.driver], seconds)
    await check_every_send_went_out(stack, count)


async def test_short_lived_tokens_across_seconds_of_sends(
    oauth_stack_on: OAuthStackFactory,
) -> None:
    async with oauth_stack_on(
        highlevel=HighLevelSimulator(locations=3, token_ttl=TOKEN_TTL),
        settings_overrides=FAST_SLACK,
    ) as stack:
        await run_one_bridge(stack, 7)  # two refreshes or more; a minute of it is slow


@pytest.mark.slow
async def test_short_lived_tokens_across_a_minute_of_sends(
    oauth_stack_on: OAuthStackFactory,
) -> None:
    async with oauth_stack_on(
        highlevel=HighLevelSimulator(locations=3, token_ttl=TOKEN_TTL),
        settings_overrides=FAST_SLACK,
    ) as stack:
        await run_one_bridge(stack, 60)


@pytest.fixture
async def two_bridges(postgres_url: str) -> AsyncIterator[tuple[SandboxStack, SlackDriver]]:
    """Two bridges on one PostgreSQL database, sharing the simulators."""
    stack = SandboxStack(
        NO_SQLITE_FILE,
        highlevel=HighLevelSimulator(locations=3, token_ttl=TOKEN_TTL),
        oauth=True,
        settings_overrides={
            "database_url": postgres_url,
            "instance_id": "bridge-a",
            **FAST_SLACK,
        },
    )
    async with stack:
        second = await stack.add_bridge(instance_id="bridge-b")
        yield stack, second.driver


async def run_two_bridges(stack: SandboxStack, second: SlackDriver, seconds: float) -> None:
    await connect_two(stack)
    count = await send_for(stack, [stack.driver, second], seconds)
    await check_every_send_went_out(stack, count)
    # Both instances made sends and so each had to use (and at times refresh) the tokens.
    assert stack.highlevel.oauth.counters.refresh_token_reuses == 0


@pytest.mark.postgres
@pytest.mark.slow  # about 8 to 10 s: make test-slow (CI runs it)
async def test_two_bridges_share_short_lived_tokens_for_seconds(
    two_bridges: tuple[SandboxStack, SlackDriver],
) -> None:
    await run_two_bridges(*two_bridges, 7)


@pytest.mark.postgres
@pytest.mark.slow
async def test_two_bridges_share_short_lived_tokens_for_a_minute(
    two_bridges: tuple[SandboxStack, SlackDriver],
) -> None:
    await run_two_bridges(*two_bridges, 60)
