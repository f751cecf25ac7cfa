"""Several clicks on one button at once (an impatient person, or a slow network resending): one
outcome at HighLevel, one consistent post, and no notice contradicting it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bot.sandbox.slack import SlackMessage
from bot.sandbox.stack import AGENT_USER, SALES_CHANNEL, SandboxStack
from storage import OutboxState
from tests.e2e.conftest import eventually, stack_store
from tests.e2e.test_outbound import (
    action_ids,
    notices,
    open_composer,
    quick_send,
    roots,
    sends,
    submit,
    text_of,
)

CLICKS = 3
# A duplicate click must show nothing, so there is no event to wait for: this long, a notice it
# set off would have arrived (each click's handler runs as soon as the click is acknowledged).
QUIET_SECONDS = 1.0


async def _click_at_once(stack: SandboxStack, action: str, post: SlackMessage) -> None:
    results = await asyncio.gather(
        *(
            stack.driver.block_action(
                action, user_id=AGENT_USER, channel_id=SALES_CHANNEL, message_ts=post.ts
            )
            for _ in range(CLICKS)
        )
    )
    assert [r.status for r in results] == [200] * CLICKS


async def _stays_quiet(stack: SandboxStack, notices_before: int) -> None:
    """No notice reaches the person for QUIET_SECONDS."""
    deadline = time.monotonic() + QUIET_SECONDS
    while time.monotonic() < deadline:
        told = stack.slack.ephemerals(user=AGENT_USER)[notices_before:]
        assert told == [], [e.text for e in told]
        await asyncio.sleep(0.05)


async def _outbox_states(stack: SandboxStack) -> list[OutboxState]:
    async with stack_store(stack) as store:
        return [entry.state for entry in await store.list_outbox(limit=100)]


async def _settled(stack: SandboxStack, count: int) -> list[OutboxState]:
    """Wait until `count` sends exist and none is waiting for or in HighLevel's hands."""
    busy = {OutboxState.PENDING, OutboxState.SENDING}
    deadline = time.monotonic() + 15
    async with stack_store(stack) as store:
        while True:
            states = [entry.state for entry in await store.list_outbox(limit=100)]
            if len(states) >= count and not busy.intersection(states):
                return states
            assert time.monotonic() < deadline, states
            await asyncio.sleep(0.05)


async def test_three_clicks_on_cancel_cancel_once_and_say_nothing_contradicting(
    stack: SandboxStack,
) -> None:
    view_id = await open_composer(stack, "+1 415 555 0100")
    await submit(
        stack, view_id, {"message": "See you tomorrow", "schedule": int(time.time()) + 3600}
    )
    await _settled(stack, 1)
    root = await eventually(
        lambda: (r := roots(stack)) and "cancel_scheduled" in action_ids(r[0]) and r[0]
    )
    # HighLevel takes its time to cancel, so the three clicks surely overlap.
    stack.highlevel.faults.latency = 0.3
    notices_before = len(stack.slack.ephemerals(user=AGENT_USER))

    await _click_at_once(stack, "cancel_scheduled", root)

    await eventually(lambda: "Cancelled" in text_of(roots(stack)[0]))
    await _stays_quiet(stack, notices_before)
    deletes = [r for r in stack.highlevel.requests if r.method == "DELETE"]
    assert [r.status for r in deletes] == [200]
    assert len(stack.highlevel.cancelled) == 1
    assert "Cancelled" in text_of(roots(stack)[0])
    assert "probably sent" not in notices(stack)
    assert await _outbox_states(stack) == [OutboxState.CANCELLED]


async def _send_again_three_times(stack: SandboxStack, action: str, fault: dict[str, Any]) -> None:
    stack.highlevel.faults.scope = "sends"
    for name, value in fault.items():
        setattr(stack.highlevel.faults, name, value)
    await quick_send(stack, "+1 415 555 0100 did it go?")
    await _settled(stack, 1)
    root = await eventually(lambda: (r := roots(stack)) and action in action_ids(r[0]) and r[0])
    sends_before = len(sends(stack))
    notices_before = len(stack.slack.ephemerals(user=AGENT_USER))
    stack.highlevel.faults.latency = 0.3  # the first click's send is still out when others come

    await _click_at_once(stack, action, root)

    await eventually(lambda: len(sends(stack)) == sends_before + 1, within=10)
    states = await _settled(stack, 2)
    await _stays_quiet(stack, notices_before)
    assert len(states) == 2 and states[1] is OutboxState.SENT
    assert len(sends(stack)) == sends_before + 1
    assert [s["message"] for s in sends(stack)][-1] == "did it go?"


async def test_three_clicks_on_resend_send_once(stack: SandboxStack) -> None:
    # A 5xx that stored nothing: the outcome is unknown, and the post offers Resend.
    await _send_again_three_times(stack, "resend", {"error_next": 1})
    assert stack.highlevel.sent_count() == 1


async def test_three_clicks_on_retry_send_once(stack: SandboxStack) -> None:
    # HighLevel refused it (422): the post says so and offers Retry.
    await _send_again_three_times(stack, "retry", {"error_next": 1, "error_status": 422})
    assert stack.highlevel.sent_count() == 1
