"""Slack answering 429 and 5xx while the bridge posts: every post appears eventually, once."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

from bot.sandbox.highlevel import HighLevelSimulator
from bot.sandbox.slack import SlackSimulator
from bot.sandbox.stack import AGENT_USER, SALES_CHANNEL, SandboxStack
from tests.reliability._helpers import (
    PostState,
    all_posts,
    eventually,
    outbound_bodies,
    post_state,
    posts_containing,
    text_of,
)

CONTACTS = 5


async def test_posts_survive_slack_429s_and_5xx_and_are_never_doubled(tmp_path: Path) -> None:
    started = time.monotonic()
    highlevel = HighLevelSimulator()
    numbers = [f"+1415555{3000 + i}" for i in range(CONTACTS)]
    contacts = [
        highlevel.add_contact(first_name=f"Flaky{i}", phone=number).id
        for i, number in enumerate(numbers)
    ]
    slack = SlackSimulator(post_rate_per_second=1000.0, post_burst=1000)
    async with SandboxStack(
        tmp_path / "bridge.sqlite3",
        highlevel=highlevel,
        slack=slack,
        settings_overrides={"slack_post_rate": 100.0},
    ) as stack:
        run = uuid.uuid4().hex[:6]
        sends = [f"out {run} {i}" for i in range(CONTACTS)]
        replies = [f"in {run} {i}" for i in range(CONTACTS)]
        # The first posts and updates meet a rate limit, then Slack's own failures.
        slack.faults.rate_limit_next("chat.postMessage", times=2, retry_after=1)
        slack.faults.server_error_next("chat.postMessage", times=3)
        slack.faults.server_error_next("chat.update", times=3)
        slack.faults.server_error_next("chat.postMessage", status=503, times=2)
        for number, text in zip(numbers, sends, strict=True):
            result = await stack.driver.slash_command(
                "/sendsms", f"{number} {text}", user_id=AGENT_USER, channel_id=SALES_CHANNEL
            )
            assert result.status == 200

        def shown(texts: list[str]) -> bool:
            found = posts_containing(all_posts(slack, [SALES_CHANNEL]), texts)
            return all(
                len(posts) == 1 and post_state(posts[0]) == PostState.SENT
                for posts in found.values()
            )

        await eventually(lambda: shown(sends), within=30, interval=0.1)
        await highlevel.drain_webhooks()

        # Customers answer while Slack is failing again.
        slack.faults.server_error_next("chat.postMessage", times=3)
        slack.faults.rate_limit_next("chat.postMessage", times=2, retry_after=1)
        for contact, text in zip(contacts, replies, strict=True):
            await highlevel.customer_reply(contact, "SMS", text)
        await highlevel.drain_webhooks()

        def replies_shown() -> bool:
            found = posts_containing(all_posts(slack, [SALES_CHANNEL]), replies)
            return all(len(posts) == 1 for posts in found.values())

        await eventually(replies_shown, within=30, interval=0.1)
        await asyncio.sleep(0.5)  # a late duplicate would show by now
        assert shown(sends)
        assert replies_shown()
        assert slack.orphaned_replies() == []
        assert len([m for m in slack.channel_messages(SALES_CHANNEL) if m.bot_id]) == CONTACTS
        assert all(outbound_bodies(highlevel)[text] == 1 for text in sends)
        failed_calls = [c for c in slack.calls if c.http_status in (429, 500, 503)]
        assert len(failed_calls) == 15  # every injected fault was met
    print(
        f"\nSlack faults: {len(failed_calls)} failed Slack calls; {CONTACTS} sends and "
        f"{CONTACTS} replies each shown once; {time.monotonic() - started:.0f} s"
    )


async def test_a_reply_while_the_first_post_waits_out_a_rate_limit_joins_the_one_thread(
    tmp_path: Path,
) -> None:
    highlevel = HighLevelSimulator()
    contact = highlevel.add_contact(first_name="Racer", phone="+14155553100").id
    async with SandboxStack(tmp_path / "bridge.sqlite3", highlevel=highlevel) as stack:
        slack = stack.slack
        # The send's first post (its thread root) is held up by Slack for 2 s...
        slack.faults.rate_limit_next("chat.postMessage", times=1, retry_after=2)
        await stack.driver.slash_command(
            "/sendsms", "+14155553100 first words", user_id=AGENT_USER, channel_id=SALES_CHANNEL
        )
        await eventually(lambda: slack.calls_to("chat.postMessage"))
        # ...and meanwhile the customer writes: both belong in one thread.
        await highlevel.customer_reply(contact, "SMS", "racing reply")
        await highlevel.drain_webhooks()
        needles = ["first words", "racing reply"]

        def both_shown() -> dict[str, list[Any]] | None:
            found = posts_containing(all_posts(slack, [SALES_CHANNEL]), needles)
            return found if all(found.values()) else None

        found = await eventually(both_shown, within=15)
        await asyncio.sleep(0.3)
        assert [len(found[needle]) for needle in needles] == [1, 1]
        top = [m for m in slack.channel_messages(SALES_CHANNEL) if m.bot_id]
        assert len(top) == 1, [text_of(m)[:60] for m in top]
        assert "first words" in text_of(top[0])
        assert found["racing reply"][0].thread_ts == top[0].ts
