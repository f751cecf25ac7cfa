"""The conversation menu on a thread root, and the waiting marker, end to end over real HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from bot.sandbox.highlevel import ADA_LOVELACE_ID, SimConversation
from bot.sandbox.slack import SlackMessage
from bot.sandbox.slack._models import SimView
from bot.sandbox.stack import AGENT_USER, SALES_CHANNEL, SandboxStack
from bot.ui.assign_builder import (
    ASSIGN_BLOCK,
    ASSIGN_SELECT,
    STARRED_REACTION,
    UNREAD_REACTION,
    WAITING_REACTION,
)
from bot.ui.conversation_builder import CONVERSATION_MENU_ACTION
from tests.e2e.conftest import eventually, query
from tests.e2e.test_inbound import replies_containing, start_thread_with_ada, thread_of
from tests.e2e.test_outbound import quick_send, roots, text_of

AGENT_EMAIL = "avery@example.com"


def root(stack: SandboxStack) -> SlackMessage:
    return roots(stack)[0]


def reactions(stack: SandboxStack) -> set[str]:
    return set(root(stack).reactions)


def conversation(stack: SandboxStack) -> SimConversation:
    found = stack.highlevel.conversation_for(ADA_LOVELACE_ID)
    assert found is not None
    return found


async def thread_id(stack: SandboxStack) -> int:
    rows = await query(stack, "SELECT id FROM slack_threads WHERE contact_id = ?", ADA_LOVELACE_ID)
    return int(rows[0][0])


async def choose(stack: SandboxStack, value: str, *, channel: str = SALES_CHANNEL) -> Any:
    """The agent picks `value` in the root's conversation menu."""
    option = {"text": {"type": "plain_text", "text": value}, "value": value}
    result = await stack.driver.block_action(
        CONVERSATION_MENU_ACTION,
        user_id=AGENT_USER,
        channel_id=channel,
        message_ts=root(stack).ts,
        action={"selected_option": option},
    )
    assert result.status == 200 and result.elapsed_seconds < 3.0
    return result


def answers(stack: SandboxStack) -> str:
    """What the bridge told the agent through the clicks' response URLs (ephemeral)."""
    return "\n".join(str(p.body.get("text") or "") for p in stack.slack.response_url_posts())


def assign_form(stack: SandboxStack) -> SimView | None:
    """The agent's Assign modal once it lists HighLevel's users (it opens saying it reads
    them: Slack's view object has a `submit` key either way, so that says nothing)."""
    return next(
        (
            v
            for v in stack.slack.open_views(user=AGENT_USER)
            if any(b.get("block_id") == ASSIGN_BLOCK for b in v.view.get("blocks", []))
        ),
        None,
    )


async def waiting_since(stack: SandboxStack) -> Any:
    rows = await query(
        stack, "SELECT waiting_since FROM slack_threads WHERE id = ?", await thread_id(stack)
    )
    return rows[0][0]


async def test_a_customer_message_marks_the_root_waiting_until_slack_answers(
    stack: SandboxStack,
) -> None:
    await start_thread_with_ada(stack)
    assert WAITING_REACTION not in reactions(stack)
    await stack.highlevel.customer_reply(ADA_LOVELACE_ID, "SMS", "Is it ready?")
    await eventually(lambda: WAITING_REACTION in reactions(stack))
    assert await waiting_since(stack) is not None
    # The agent answers from Slack: once it is sent, nobody waits any more.
    await quick_send(stack, "+1 415 555 0100 Yes, come by")
    await eventually(lambda: WAITING_REACTION not in reactions(stack))
    assert await eventually(lambda: _is_none(waiting_since(stack)))


async def _is_none(value: Any) -> bool:
    return await value is None


async def test_a_message_sent_from_highlevel_answers_too(stack: SandboxStack) -> None:
    await start_thread_with_ada(stack)
    await stack.highlevel.customer_reply(ADA_LOVELACE_ID, "SMS", "Hello?")
    await eventually(lambda: WAITING_REACTION in reactions(stack))
    await stack.highlevel.send_from_highlevel_app(ADA_LOVELACE_ID, "SMS", "Dana here, yes")
    await eventually(lambda: replies_containing(stack, "Dana here, yes") == 1)
    await eventually(lambda: WAITING_REACTION not in reactions(stack))
    assert await waiting_since(stack) is None


async def test_mark_read_sets_the_unread_count_to_zero_at_highlevel(stack: SandboxStack) -> None:
    await start_thread_with_ada(stack)
    await stack.highlevel.customer_reply(ADA_LOVELACE_ID, "SMS", "Are you there?")
    await eventually(lambda: replies_containing(stack, "Are you there?") == 1)
    assert conversation(stack).unread_count >= 1
    ident = await thread_id(stack)
    await choose(stack, f"unread:{ident}")
    await eventually(lambda: UNREAD_REACTION in reactions(stack))
    await choose(stack, f"read:{ident}")
    await eventually(lambda: conversation(stack).unread_count == 0)
    await eventually(lambda: UNREAD_REACTION not in reactions(stack))
    # The clicker is told after the root shows it.
    await eventually(lambda: "Marked read" in answers(stack) and "Marked unread" in answers(stack))
    rows = await query(stack, "SELECT unread_count FROM slack_threads WHERE id = ?", ident)
    assert rows == [(0,)]
    # Reading is not answering: the customer still waits.
    assert WAITING_REACTION in reactions(stack)


async def test_star_shows_on_the_root_and_at_highlevel(stack: SandboxStack) -> None:
    await start_thread_with_ada(stack)
    ident = await thread_id(stack)
    await choose(stack, f"star:{ident}")
    await eventually(lambda: STARRED_REACTION in reactions(stack))
    assert conversation(stack).starred is True
    await eventually(lambda: "Starred" in answers(stack))  # told after the root shows it
    await choose(stack, f"unstar:{ident}")
    await eventually(lambda: STARRED_REACTION not in reactions(stack))
    assert conversation(stack).starred is False


async def test_assign_preselects_the_clickers_highlevel_user(stack: SandboxStack) -> None:
    stack.slack.add_user(AGENT_USER, "agent", "Avery Agent", email=AGENT_EMAIL)
    avery = stack.highlevel.add_user(
        "Avery", "Agent", email=AGENT_EMAIL.upper(), location_id=stack.highlevel.location_id
    )
    await start_thread_with_ada(stack)
    await choose(stack, f"assign:{await thread_id(stack)}")
    view = await eventually(lambda: assign_form(stack))
    select = next(b for b in view.view["blocks"] if b.get("block_id") == ASSIGN_BLOCK)
    assert select["element"]["initial_option"]["value"] == avery.id
    result = await stack.driver.view_submission(view.id, user_id=AGENT_USER)
    assert result.status == 200
    await eventually(lambda: stack.highlevel.assigned_to(ADA_LOVELACE_ID) == avery.id)
    await eventually(lambda: any("Assigned to" in text_of(m) for m in thread_of(stack)))
    line = next(text_of(m) for m in thread_of(stack) if "Assigned to" in text_of(m))
    assert "Avery Agent" in line and f"<@{AGENT_USER}>" in line
    rows = await query(stack, "SELECT assigned_to FROM slack_threads")
    assert rows == [(avery.id,)]


@pytest.mark.parametrize(
    "stack_overrides", [{"allowed_slack_channels": frozenset({SALES_CHANNEL})}]
)
async def test_assign_works_in_an_allowed_channel(stack: SandboxStack) -> None:
    # The modal carries no channel of its own: the allowlist reads the thread's from it.
    await test_assign_to_another_user(stack)


async def test_assign_to_another_user(stack: SandboxStack) -> None:
    await start_thread_with_ada(stack)
    dana = stack.highlevel.users_of(stack.highlevel.location_id)[1]
    await choose(stack, f"assign:{await thread_id(stack)}")
    view = await eventually(lambda: assign_form(stack))
    values = {ASSIGN_BLOCK: {ASSIGN_SELECT: dana.id}}
    await stack.driver.view_submission(view.id, user_id=AGENT_USER, values=values)
    await eventually(lambda: stack.highlevel.assigned_to(ADA_LOVELACE_ID) == dana.id)


async def test_a_conversation_unread_update_webhook_updates_the_root(
    stack: SandboxStack,
) -> None:
    await start_thread_with_ada(stack)
    await stack.highlevel.customer_reply(ADA_LOVELACE_ID, "SMS", "Ping")
    await eventually(lambda: replies_containing(stack, "Ping") == 1)
    ident = await thread_id(stack)
    # Someone in HighLevel: the conversation has unread messages and is starred …
    stack.highlevel.set_starred(conversation(stack).id, True)
    stack.highlevel.set_unread(conversation(stack).id, 2)
    await eventually(lambda: {UNREAD_REACTION, STARRED_REACTION} <= reactions(stack))
    rows = await query(stack, "SELECT unread_count, starred FROM slack_threads WHERE id = ?", ident)
    assert rows == [(2, 1)]
    # … then reads it there: the root's unread marker goes.
    stack.highlevel.set_unread(conversation(stack).id, 0)
    await eventually(lambda: UNREAD_REACTION not in reactions(stack))
    assert STARRED_REACTION in reactions(stack)
    await stack.highlevel.drain_webhooks()
    outcomes = [
        d.outcome
        for d in stack.highlevel.webhook_deliveries
        if d.event_type == ("ConversationUnreadUpdate")
    ]
    assert outcomes == ["delivered"] * 3


async def test_a_forged_or_foreign_menu_value_is_refused_with_a_message(
    stack: SandboxStack,
) -> None:
    await start_thread_with_ada(stack)
    ident = await thread_id(stack)
    await choose(stack, "delete:1")
    await eventually(lambda: "Can't do that here" in answers(stack))
    # Another workspace's thread: same refusal, and nothing changes at HighLevel.
    await query(stack, "UPDATE slack_threads SET team_id = 'T0OTHER' WHERE id = ?", ident)
    await choose(stack, f"star:{ident}")
    await eventually(lambda: answers(stack).count("Can't do that here") == 2)
    assert conversation(stack).starred is False
    assert not stack.highlevel.requests_to("PUT", f"/conversations/{conversation(stack).id}")


async def test_a_thread_without_a_conversation_says_so(stack: SandboxStack) -> None:
    await start_thread_with_ada(stack)
    ident = await thread_id(stack)
    await query(stack, "UPDATE slack_threads SET conversation_id = NULL WHERE id = ?", ident)
    await choose(stack, f"read:{ident}")
    await eventually(lambda: "no HighLevel conversation yet" in answers(stack))
