"""300 quick sends while HighLevel fails in every way it can: each ends exactly once at HighLevel,
or its Slack post says plainly that it was not, or may not have been, sent."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from bot.sandbox.highlevel import HighLevelSimulator
from bot.sandbox.slack import SlackSimulator
from bot.sandbox.stack import AGENT_USER, SALES_CHANNEL, SandboxStack
from storage import OutboxState, SqliteStore
from tests.reliability._helpers import (
    PostState,
    action_ids,
    all_posts,
    eventually,
    outbound_bodies,
    post_state,
    posts_containing,
)

SENDS = 300
CONTACTS = 30
CONCURRENT_COMMANDS = 10
# The bridge gives up on HighLevel after 1 s; a hung request is held 3 s, so it is cut off.
CLIENT_TIMEOUT_SECONDS = 1.0
HANG_SECONDS = 3.0


@pytest.mark.slow  # 45 s: `make test-slow` (and CI) run it
async def test_300_sends_under_5xx_hangs_and_429_bursts_end_once_or_visibly(
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    # HighLevel's rate-limit window scaled to 1 s, so a 429 costs a second, not ten.
    highlevel = HighLevelSimulator(rate_limit_interval_ms=1000, seed=20240611)
    numbers = [f"+1415555{1000 + i}" for i in range(CONTACTS)]
    for index, number in enumerate(numbers):
        highlevel.add_contact(first_name=f"Load{index:02d}", last_name="Customer", phone=number)
    slack = SlackSimulator(post_rate_per_second=1000.0, post_burst=1000)
    overrides = {"ghl_timeout_seconds": CLIENT_TIMEOUT_SECONDS, "slack_post_rate": 500.0}
    async with SandboxStack(
        tmp_path / "bridge.sqlite3", highlevel=highlevel, slack=slack, settings_overrides=overrides
    ) as stack:
        faults = highlevel.faults
        faults.scope = "sends"
        faults.error_rate = 0.10
        faults.hang_rate = 0.05
        faults.hang_seconds = HANG_SECONDS

        run = uuid.uuid4().hex[:6]
        texts = [f"load {run} {i:03d}" for i in range(SENDS)]

        async def command(index: int) -> int:
            number = numbers[index % CONTACTS]
            result = await stack.driver.slash_command(
                "/sendsms", f"{number} {texts[index]}", user_id=AGENT_USER, channel_id=SALES_CHANNEL
            )
            return result.status

        statuses: list[int] = []
        for batch_start in range(0, SENDS, CONCURRENT_COMMANDS):
            if batch_start % 60 == 30:
                faults.burst_429 += 4  # a burst of 429s now and then
            batch = range(batch_start, min(batch_start + CONCURRENT_COMMANDS, SENDS))
            statuses += await asyncio.gather(*(command(i) for i in batch))
        assert statuses == [200] * SENDS

        def settled() -> bool:
            found = posts_containing(all_posts(slack, [SALES_CHANNEL]), texts)
            return all(
                len(posts) == 1 and post_state(posts[0]) != PostState.SENDING
                for posts in found.values()
            )

        await eventually(settled, within=150, interval=0.5)
        await highlevel.drain_webhooks()
        await asyncio.sleep(0.5)  # any late duplicate would show by now

        at_highlevel = outbound_bodies(highlevel)
        posts = posts_containing(all_posts(slack, [SALES_CHANNEL]), texts)
        sent_once = shown_failed = shown_unknown = 0
        for text in texts:
            count = at_highlevel[text]
            assert count <= 1, f"{text!r} reached HighLevel {count} times"
            assert len(posts[text]) == 1, f"{text!r} has {len(posts[text])} posts"
            post = posts[text][0]
            state = post_state(post)
            if count == 1:
                # Reconciliation finds what HighLevel stored: never shown as unsent.
                assert state == PostState.SENT, (text, state)
                sent_once += 1
            elif state == PostState.UNKNOWN:
                assert "resend" in action_ids(post)
                shown_unknown += 1
            else:
                assert state == PostState.FAILED, (text, state)
                assert "retry" in action_ids(post)
                shown_failed += 1
        assert sent_once + shown_failed + shown_unknown == SENDS

    async with SqliteStore(tmp_path / "bridge.sqlite3") as store:
        entries = await store.list_outbox(limit=SENDS + 10)
    assert len(entries) == SENDS
    left = [e.id for e in entries if e.state in (OutboxState.PENDING, OutboxState.SENDING)]
    assert left == []
    # The faults did happen: this run proves something only if they were hit.
    send_statuses = [r.status for r in highlevel.requests_to("POST", "/conversations/messages")]
    assert send_statuses.count(429) >= 4
    assert sum(1 for s in send_statuses if s is not None and s >= 500) >= 10
    assert send_statuses.count(499) >= 5  # hung, then given up on by the bridge
    print(
        f"\n{SENDS} sends: {sent_once} sent once, {shown_failed} shown failed, "
        f"{shown_unknown} shown unknown, 0 doubled, 0 lost; "
        f"HighLevel answered {send_statuses.count(429)}x429, "
        f"{sum(1 for s in send_statuses if s is not None and s >= 500)}x5xx, "
        f"{send_statuses.count(499)} hung; {time.monotonic() - started:.0f} s"
    )
