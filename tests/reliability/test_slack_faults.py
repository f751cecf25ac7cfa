"""Slack answering 429 and 5xx while the bridge posts, or making a post and then failing (5xx)
or not answering at all: every post appears eventually, once."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from slack_sdk.web.async_client import AsyncWebClient

from bot.posting.marks import PostMark
from bot.posting.pacing import ChannelPacer
from bot.posting.poster import SlackPoster
from bot.sandbox.highlevel import HighLevelSimulator
from bot.sandbox.slack import SlackSimulator
from bot.sandbox.stack import AGENT_USER, INBOX_CHANNEL, SALES_CHANNEL, SandboxStack
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


# Ten seconds or more: with `make test-slow` (CI runs it), to keep `make test` short.
@pytest.mark.slow
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


def _settled(database: Path) -> bool:
    """No send and no HighLevel event is waiting or in progress."""
    with contextlib.closing(sqlite3.connect(database)) as db:
        busy_sends: int = db.execute(
            "SELECT COUNT(*) FROM outbox WHERE state IN ('pending', 'sending')"
        ).fetchone()[0]
        busy_events: int = db.execute(
            "SELECT COUNT(*) FROM inbound_events WHERE state IN ('pending', 'processing')"
        ).fetchone()[0]
    return busy_sends == 0 and busy_events == 0


async def test_a_post_slack_made_before_failing_with_a_5xx_is_shown_once(tmp_path: Path) -> None:
    highlevel = HighLevelSimulator()
    known = highlevel.add_contact(first_name="Known", phone="+14155553200").id
    stranger = highlevel.add_contact(first_name="Stranger", phone="+14155553201").id
    slack = SlackSimulator(post_rate_per_second=1000.0, post_burst=1000)
    database = tmp_path / "bridge.sqlite3"
    async with SandboxStack(database, highlevel=highlevel, slack=slack) as stack:
        # Slack makes each of these posts, then answers 5xx: the send's post (its thread's
        # root), a customer's reply in that thread, a new customer's first message (a root).
        slack.faults.server_error_next("chat.postMessage", take_effect=True)
        await stack.driver.slash_command(
            "/sendsms",
            "+14155553200 made then failed",
            user_id=AGENT_USER,
            channel_id=SALES_CHANNEL,
        )

        def shown(channel: str, needle: str) -> list[Any]:
            return posts_containing(all_posts(slack, [channel]), [needle])[needle]

        await eventually(lambda: shown(SALES_CHANNEL, "made then failed"), within=15)
        await eventually(lambda: _settled(database), within=15)
        await highlevel.drain_webhooks()
        slack.faults.server_error_next("chat.postMessage", status=503, take_effect=True)
        await highlevel.customer_reply(known, "SMS", "reply made then failed")
        await highlevel.drain_webhooks()
        await eventually(lambda: shown(SALES_CHANNEL, "reply made then failed"), within=15)
        slack.faults.server_error_next("chat.postMessage", take_effect=True)
        await highlevel.customer_reply(stranger, "SMS", "stranger made then failed")
        await highlevel.drain_webhooks()
        await eventually(lambda: shown(INBOX_CHANNEL, "stranger made then failed"), within=15)
        await eventually(lambda: _settled(database), within=15)

        assert len(shown(SALES_CHANNEL, "made then failed")) == 2  # the send, and the reply
        assert len(shown(SALES_CHANNEL, "reply made then failed")) == 1
        assert len(shown(INBOX_CHANNEL, "stranger made then failed")) == 1
        assert len([m for m in slack.channel_messages(SALES_CHANNEL) if m.bot_id]) == 1
        assert len([m for m in slack.channel_messages(INBOX_CHANNEL) if m.bot_id]) == 1
        send = shown(SALES_CHANNEL, "made then failed")[0]
        assert post_state(send) == PostState.SENT  # the post found again is the one kept up
        assert [c.http_status for c in slack.calls if c.http_status >= 500] == [500, 503, 500]
        assert slack.orphaned_replies() == []


@contextlib.asynccontextmanager
async def _answers_withheld(
    slack: SlackSimulator, method: str, release: asyncio.Event
) -> AsyncIterator[str]:
    """A loopback proxy to the simulator that passes the first call of `method` on (so it takes
    effect) and keeps its answer until `release`: to the caller, Slack never answered."""
    withheld = 0

    async def forward(request: web.Request) -> web.Response:
        nonlocal withheld
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method,
                f"{slack.api_url}{request.match_info['method']}",
                params=request.query,
                data=await request.read(),
                headers={
                    k: v
                    for k, v in request.headers.items()
                    if k.lower() in ("authorization", "content-type")
                },
            ) as answer,
        ):
            body = await answer.read()
            status, content_type = answer.status, answer.content_type
        if request.match_info["method"] == method and withheld == 0:
            withheld += 1
            await release.wait()
        return web.Response(body=body, status=status, content_type=content_type)

    app = web.Application()
    app.router.add_route("*", "/api/{method}", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}/api/"
    finally:
        release.set()
        await runner.cleanup()


@pytest.mark.parametrize("in_thread", [False, True], ids=["root", "reply"])
async def test_a_post_whose_answer_never_came_is_found_not_posted_again(in_thread: bool) -> None:
    release = asyncio.Event()
    async with SlackSimulator(post_rate_per_second=1000.0, post_burst=1000) as slack:
        slack.add_channel(SALES_CHANNEL, "sales")
        root = slack.post_as_user(SALES_CHANNEL, AGENT_USER, "a thread") if in_thread else None
        async with _answers_withheld(slack, "chat.postMessage", release) as api_url:
            poster = SlackPoster(
                AsyncWebClient(token=slack.bot_token, base_url=api_url, timeout=1),
                ChannelPacer(rate_per_second=100.0, burst=100),
            )
            ts = await poster.post(
                SALES_CHANNEL,
                "answer lost",
                [],
                thread_ts=root.ts if root else None,
                mark=PostMark("loc:message:lost-1"),
            )
        visible = (
            slack.thread(SALES_CHANNEL, root.ts) if root else slack.channel_messages(SALES_CHANNEL)
        )
        posted = [m for m in visible if m.text == "answer lost"]
        assert [m.ts for m in posted] == [ts]
        methods = [c.method for c in slack.calls]
        assert methods.count("chat.postMessage") == 1
        assert ("conversations.replies" if in_thread else "conversations.history") in methods
