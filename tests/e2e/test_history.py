"""Earlier messages, end to end: a thread root's button pages back through HighLevel's history.

The conversation's earlier messages are seeded in the HighLevel simulator (no webhooks: they
happened before the bridge saw the contact); a customer's message or a first send opens the
thread; clicks on "Earlier messages" post them into it, 20 a click, oldest first within a
click, each once (also for clicks at the same moment, on one instance or on two).
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from typing import Any

import pytest

from bot.sandbox.highlevel import ADA_LOVELACE_ID, KATHERINE_JOHNSON_ID, HighLevelSimulator
from bot.sandbox.slack import SlackDriver, SlackMessage
from bot.sandbox.stack import AGENT_USER, INBOX_CHANNEL, SALES_CHANNEL, SandboxStack
from bot.ui.conversation_builder import EARLIER_ACTION
from tests.e2e.conftest import NO_SQLITE_FILE, eventually, query, stack_on, stack_store
from tests.e2e.test_outbound import action_ids, notices, quick_send, roots, text_of, went_out

# Slack's real pace is a post a second per channel; these tests post 60 into one thread.
FAST_SLACK: dict[str, Any] = {"slack_post_rate": 50.0}
HISTORY = "History #{n}"
NOTHING_EARLIER = "No earlier messages in HighLevel"
BUSY = "being added to this thread already"
_NUMBER = re.compile(r"History #(\d+)\b")


@pytest.fixture
def stack_overrides() -> dict[str, Any]:
    return FAST_SLACK


def thread_posts(stack: SandboxStack, channel: str) -> list[SlackMessage]:
    top = roots(stack, channel)
    return stack.slack.thread(channel, top[0].ts)[1:] if top else []


def history_numbers(stack: SandboxStack, channel: str = INBOX_CHANNEL) -> list[int]:
    """The seeded messages posted into the thread as history, in thread order."""
    numbers: list[int] = []
    for message in thread_posts(stack, channel):
        shown = text_of(message)
        if "Earlier message" in shown:
            found = _NUMBER.search(shown)
            assert found is not None, shown
            numbers.append(int(found.group(1)))
    return numbers


async def history_idle(stack: SandboxStack) -> bool:
    """No click holds any thread's history (each click has finished)."""
    rows = await query(stack, "SELECT COUNT(*) FROM slack_threads WHERE history_busy_until > 0")
    return bool(rows[0][0] == 0)


async def click(
    stack: SandboxStack, channel: str = INBOX_CHANNEL, driver: SlackDriver | None = None
) -> None:
    root = roots(stack, channel)[0]
    result = await (driver or stack.driver).block_action(
        EARLIER_ACTION, user_id=AGENT_USER, channel_id=channel, message_ts=root.ts
    )
    assert result.status == 200, result.text
    assert result.elapsed_seconds < 3.0  # acked at once; the posts follow


async def click_and_settle(stack: SandboxStack, count: int, channel: str = INBOX_CHANNEL) -> None:
    await click(stack, channel)
    await eventually(lambda: len(history_numbers(stack, channel)) == count, within=15)
    await eventually(lambda: history_idle(stack))


async def open_inbox_thread(stack: SandboxStack, earlier: int) -> None:
    stack.highlevel.add_history(KATHERINE_JOHNSON_ID, earlier, text=HISTORY)
    await stack.highlevel.customer_reply(KATHERINE_JOHNSON_ID, "SMS", "Hello again, it's me")
    root = (await eventually(lambda: roots(stack, INBOX_CHANNEL)))[0]
    assert "Hello again" in text_of(root)
    assert EARLIER_ACTION in action_ids(root)


def nothing_earlier_told(stack: SandboxStack) -> int:
    return notices(stack).count(NOTHING_EARLIER)


async def test_sixty_earlier_messages_page_back_twenty_a_click_each_once(
    stack: SandboxStack,
) -> None:
    await open_inbox_thread(stack, 60)
    # Newest page first; each page's messages oldest first.
    await click_and_settle(stack, 20)
    assert history_numbers(stack) == list(range(41, 61))
    await click_and_settle(stack, 40)
    assert history_numbers(stack)[20:] == list(range(21, 41))
    await click_and_settle(stack, 60)
    assert history_numbers(stack)[40:] == list(range(1, 21))
    assert Counter(history_numbers(stack)) == Counter(range(1, 61))
    # The message that opened the thread is not repeated as history.
    assert sum("Hello again" in text_of(m) for m in thread_posts(stack, INBOX_CHANNEL)) == 0
    # Nothing earlier: the clicker is told, each time, and nothing is posted.
    await click(stack)
    await eventually(lambda: nothing_earlier_told(stack) == 1)
    await click(stack)
    await eventually(lambda: nothing_earlier_told(stack) == 2)
    await eventually(lambda: history_idle(stack))
    assert len(history_numbers(stack)) == 60
    # Marked as history, with who sent each: the customer, or a HighLevel user.
    posts = [m for m in thread_posts(stack, INBOX_CHANNEL) if "Earlier message" in text_of(m)]
    first, second = text_of(posts[40]), text_of(posts[41])
    assert "History #1" in first and "from the customer via SMS" in first
    assert "History #2" in second and "sent to the customer via SMS" in second
    assert "Sent from HighLevel" in second
    # HighLevel was asked page by page with its own cursor, never for more than 20.
    listed = [
        r
        for r in stack.highlevel.requests
        if r.method == "GET" and r.path.endswith("/messages") and "/conversations/" in r.path
    ]
    assert listed and all(r.status == 200 for r in listed)
    assert all(int(r.query["limit"]) == 20 for r in listed)
    assert sum("lastMessageId" not in r.query for r in listed) == 1


async def test_a_late_webhook_of_a_message_shown_as_history_is_not_posted_again(
    stack: SandboxStack,
) -> None:
    seeded = stack.highlevel.add_history(KATHERINE_JOHNSON_ID, 5, text=HISTORY)
    await stack.highlevel.customer_reply(KATHERINE_JOHNSON_ID, "SMS", "Hello again, it's me")
    await eventually(lambda: roots(stack, INBOX_CHANNEL))
    await click_and_settle(stack, 5)
    # HighLevel tells of one of them after all (a late or repeated webhook), then a new one.
    stack.highlevel._emit_message(seeded[0])
    await stack.highlevel.customer_reply(KATHERINE_JOHNSON_ID, "SMS", "One more thing")
    await eventually(
        lambda: any("One more thing" in text_of(m) for m in thread_posts(stack, INBOX_CHANNEL))
    )
    await stack.highlevel.drain_webhooks()
    shown = [text_of(m) for m in thread_posts(stack, INBOX_CHANNEL)]
    assert sum("History #1" in t for t in shown) == 1, shown


async def test_clicks_at_the_same_moment_never_post_a_message_twice(stack: SandboxStack) -> None:
    await open_inbox_thread(stack, 60)
    while not nothing_earlier_told(stack):
        await asyncio.gather(click(stack), click(stack))
        await eventually(lambda: history_idle(stack))
        shown = history_numbers(stack)
        assert len(shown) == len(set(shown))  # never twice, even between rounds
        if len(shown) == 60:
            await click(stack)
            await eventually(lambda: nothing_earlier_told(stack))
    assert Counter(history_numbers(stack)) == Counter(range(1, 61))
    # The click that came second while a page was being posted was told so.
    assert BUSY in notices(stack)
    # Each page came whole from one click: 20 in a row, oldest first.
    shown = history_numbers(stack)
    assert [shown[i : i + 20] for i in (0, 20, 40)] == [
        list(range(41, 61)),
        list(range(21, 41)),
        list(range(1, 21)),
    ]


async def test_a_first_send_to_a_known_customer_offers_the_earlier_messages(
    stack: SandboxStack,
) -> None:
    stack.highlevel.add_history(ADA_LOVELACE_ID, 5, text=HISTORY)
    await quick_send(stack, "+1 415 555 0100 Your table is ready")
    await eventually(lambda: roots(stack) and went_out(roots(stack)[0]))
    root = roots(stack)[0]
    assert EARLIER_ACTION in action_ids(root)
    await click_and_settle(stack, 5, SALES_CHANNEL)
    assert history_numbers(stack, SALES_CHANNEL) == [1, 2, 3, 4, 5]
    # The send itself is the root, not history.
    assert not any("Your table is ready" in text_of(m) for m in thread_posts(stack, SALES_CHANNEL))
    await click(stack, SALES_CHANNEL)
    await eventually(lambda: nothing_earlier_told(stack) == 1)


async def test_highlevel_errors_are_told_plainly_and_the_next_click_goes_on(
    stack: SandboxStack,
) -> None:
    await open_inbox_thread(stack, 25)
    # HighLevel fails every try of the read (5xx): said in words, nothing posted.
    stack.highlevel.faults.error_next = 10
    await click(stack)
    await eventually(lambda: "HighLevel had an error" in notices(stack), within=30)
    await eventually(lambda: history_idle(stack))
    assert history_numbers(stack) == []
    assert "Traceback" not in notices(stack)
    stack.highlevel.faults.error_next = 0
    # The cursor did not move: the next click shows the newest page.
    await click_and_settle(stack, 20)
    assert history_numbers(stack) == list(range(6, 26))
    # HighLevel refuses the token (the Private Integration Token was rotated): in words too.
    token, stack.highlevel.token = stack.highlevel.token, "rotated-in-highlevel"
    await click(stack)
    await eventually(lambda: "HighLevel refused the request" in notices(stack), within=15)
    await eventually(lambda: history_idle(stack))
    stack.highlevel.token = token
    await click_and_settle(stack, 25)
    assert history_numbers(stack)[20:] == [1, 2, 3, 4, 5]


async def test_highlevels_rate_limit_is_told_with_when_to_try_again(database_url: str) -> None:
    # HighLevel's window scaled to 0.3 s, so the client's waits end quickly.
    highlevel = HighLevelSimulator(rate_limit_interval_ms=300)
    async with stack_on(database_url, highlevel=highlevel, settings_overrides=FAST_SLACK) as stack:
        await open_inbox_thread(stack, 3)
        stack.highlevel.faults.burst_429 = 20
        await click(stack)
        await eventually(lambda: "rate limit" in notices(stack), within=20)
        await eventually(lambda: history_idle(stack))
        assert history_numbers(stack) == []
        stack.highlevel.faults.burst_429 = 0
        await click_and_settle(stack, 3)
        assert history_numbers(stack) == [1, 2, 3]


async def test_a_disconnected_sub_account_is_told(stack: SandboxStack) -> None:
    await open_inbox_thread(stack, 3)
    async with stack_store(stack) as store:
        assert await store.disconnect_location(stack.highlevel.location_id, "test: revoked")
    # An admin's look at the sub-accounts makes the bridge read the connected set before it
    # answers (so this instance knows at once, not within RELOAD_SECONDS).
    result = await stack.driver.slash_command(
        "/highlevel", "link nobody", user_id=AGENT_USER, channel_id=SALES_CHANNEL
    )
    assert result.status == 200 and result.text
    await click(stack)
    await eventually(lambda: "sub-account is disconnected" in notices(stack))
    assert history_numbers(stack) == []


@pytest.mark.postgres
@pytest.mark.slow
async def test_two_instances_clicking_at_once_post_each_message_once(postgres_url: str) -> None:
    stack = SandboxStack(
        NO_SQLITE_FILE, settings_overrides={"database_url": postgres_url, **FAST_SLACK}
    )
    async with stack:
        second = await stack.add_bridge()
        await open_inbox_thread(stack, 60)
        while not nothing_earlier_told(stack):
            await asyncio.gather(click(stack), click(stack, driver=second.driver))
            await eventually(lambda: history_idle(stack))
            shown = history_numbers(stack)
            assert len(shown) == len(set(shown))
            if len(shown) == 60:
                await click(stack, driver=second.driver)
                await eventually(lambda: nothing_earlier_told(stack))
        assert Counter(history_numbers(stack)) == Counter(range(1, 61))
        assert BUSY in notices(stack)
