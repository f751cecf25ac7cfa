"""MESSAGE_RETENTION_DAYS end to end: a running bridge purges the text of a send older than
the limit, and leaves its Slack post, its thread and its audit history alone."""

from __future__ import annotations

from typing import Any

import pytest

from bot.sandbox.stack import SALES_CHANNEL, SandboxStack
from tests.e2e.conftest import eventually, query
from tests.e2e.test_outbound import quick_send, sends, text_of, went_out

DAY = 86_400


@pytest.fixture
def stack_overrides() -> dict[str, Any]:
    return {"message_retention_days": 1}


async def test_the_bridge_purges_a_send_older_than_the_limit(stack: SandboxStack) -> None:
    await quick_send(stack, "+1 (415) 555-0100 Running 10 min late")
    await eventually(lambda: len(sends(stack)) == 1)
    await eventually(lambda: went_out(stack.slack.channel_messages(SALES_CHANNEL)[0]))
    [(payload,)] = await query(stack, "SELECT payload FROM outbox")
    assert "Running 10 min late" in payload
    await stack.stop_bridge()

    # Three days old now: the bridge's purge, which runs as it starts, takes it.
    await query(
        stack, "UPDATE outbox SET created_at = created_at - ?, updated_at = updated_at - ?",
        3 * DAY, 3 * DAY,
    )  # fmt: skip
    threads = await query(stack, "SELECT * FROM slack_threads ORDER BY id")
    history = await query(stack, "SELECT * FROM outbox_status_history ORDER BY id")
    await stack.start_bridge()

    await eventually(
        lambda: query(stack, "SELECT id FROM outbox WHERE purged_at IS NOT NULL"), within=15
    )
    [(payload, state)] = await query(stack, "SELECT payload, state FROM outbox")
    assert "Running 10 min late" not in payload
    assert "+14155550100" not in payload
    assert state == "sent"
    assert await query(stack, "SELECT * FROM slack_threads ORDER BY id") == threads
    assert await query(stack, "SELECT * FROM outbox_status_history ORDER BY id") == history
    # Slack keeps what it was shown: the post is not rewritten without its text.
    assert "Running 10 min late" in text_of(stack.slack.channel_messages(SALES_CHANNEL)[0])
