"""Outbound from Slack, end to end: signed Slack requests → bridge → HighLevel simulator → Slack."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiohttp import web

from bot.sandbox.highlevel import (
    ADA_LOVELACE_ID,
    ALAN_TURING_ID,
    GRACE_HOPPER_ID,
    HighLevelSimulator,
)
from bot.sandbox.slack import SlackMessage, SlackSimulator
from bot.sandbox.stack import AGENT_USER, NO_BOT_CHANNEL, OTHER_USER, SALES_CHANNEL, SandboxStack
from tests.e2e.conftest import eventually, stack_on, stack_store

SEND = ("POST", "/conversations/messages")


def sends(stack: SandboxStack) -> list[dict[str, Any]]:
    """Bodies of the send requests HighLevel answered with success."""
    return [
        r.body for r in stack.highlevel.requests_to(*SEND) if r.status == 200 and r.body is not None
    ]


def roots(stack: SandboxStack, channel: str = SALES_CHANNEL) -> list[SlackMessage]:
    return [m for m in stack.slack.channel_messages(channel) if m.bot_id]


def text_of(message: SlackMessage) -> str:
    """Everything a person reads in a message: its blocks' texts, else its text."""
    parts: list[str] = []
    for block in message.blocks or []:
        if block.get("text"):
            parts.append(block["text"].get("text", ""))
        for element in block.get("elements", []) or []:
            if isinstance(element, dict) and isinstance(element.get("text"), str):
                parts.append(element["text"])
            elif isinstance(element, dict) and isinstance(element.get("text"), dict):
                parts.append(element["text"].get("text", ""))
        for field in block.get("fields", []) or []:
            parts.append(field.get("text", ""))
    return "\n".join(parts) or message.text


def went_out(message: SlackMessage) -> bool:
    """The post shows the send as sent (or, once HighLevel's webhook says so, delivered)."""
    shown = text_of(message)
    return "Sent" in shown or "Delivered" in shown


def action_ids(message: SlackMessage) -> list[str]:
    return [
        element["action_id"]
        for block in message.blocks or []
        if block.get("type") == "actions"
        for element in block.get("elements", [])
    ]


def notices(stack: SandboxStack, user: str = AGENT_USER) -> str:
    return "\n".join(e.text for e in stack.slack.ephemerals(user=user))


async def quick_send(stack: SandboxStack, text: str, **kwargs: Any) -> None:
    kwargs.setdefault("user_id", AGENT_USER)
    kwargs.setdefault("channel_id", SALES_CHANNEL)
    result = await stack.driver.slash_command("/sendsms", text, **kwargs)
    assert result.status == 200, result.text
    assert result.elapsed_seconds < 3.0  # acked inside Slack's window


async def test_quick_send_texts_the_contact_and_opens_a_thread(stack: SandboxStack) -> None:
    await quick_send(stack, "+1 (415) 555-0100 Running 10 min late")

    await eventually(lambda: len(sends(stack)) == 1)
    body = sends(stack)[0]
    assert body == {"type": "SMS", "contactId": ADA_LOVELACE_ID, "message": "Running 10 min late"}
    root = (await eventually(lambda: roots(stack)))[0]
    await eventually(lambda: went_out(stack.slack.channel_messages(SALES_CHANNEL)[0]))
    shown = text_of(stack.slack.channel_messages(SALES_CHANNEL)[0])
    assert "Ada Lovelace" in shown
    assert "+14155550100" in shown or "+1 415" in shown
    assert f"<@{AGENT_USER}>" in shown
    assert "Running 10 min late" in shown
    assert "reply" in action_ids(root)
    assert "Ada Lovelace" in notices(stack)


async def test_later_sends_go_into_the_same_thread(stack: SandboxStack) -> None:
    await quick_send(stack, "+1 415 555 0100 first")
    await eventually(lambda: len(sends(stack)) == 1)
    await quick_send(stack, "415.555.0100 second")
    await eventually(lambda: len(sends(stack)) == 2)
    root = roots(stack)
    assert len(root) == 1
    thread = await eventually(
        lambda: (t := stack.slack.thread(SALES_CHANNEL, root[0].ts)) and len(t) == 2 and t
    )
    assert "second" in text_of(thread[1])


async def test_unknown_number_creates_the_contact_and_says_so(stack: SandboxStack) -> None:
    before = set(stack.highlevel.contacts)
    await quick_send(stack, "+1 415 555 0199 Welcome aboard")
    await eventually(lambda: len(sends(stack)) == 1)
    created = set(stack.highlevel.contacts) - before
    assert len(created) == 1
    assert stack.highlevel.contacts[created.pop()].phone == "+14155550199"
    assert "Created contact" in await eventually(lambda: notices(stack))


class ConnectionsSeen(SlackSimulator):
    """The Slack simulator, noting the client end of the connection each request came over:
    `peers` for every request, in order, and `notices` for the response_url posts among them."""

    def __init__(self) -> None:
        super().__init__(post_rate_per_second=50.0, post_burst=50)
        self.peers: list[object] = []
        self.notices: list[tuple[int, object]] = []  # (position in `peers`, peer)

    def _seen(self, request: web.Request) -> object:
        assert request.transport is not None
        peer = request.transport.get_extra_info("peername")
        self.peers.append(peer)
        return peer

    async def _handle_api(self, request: web.Request) -> web.Response:
        self._seen(request)
        return await super()._handle_api(request)

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        peer = self._seen(request)
        self.notices.append((len(self.peers) - 1, peer))
        return await super()._handle_response_url(request)


async def test_quick_send_notices_reuse_open_connections(database_url: str) -> None:
    # Each quick send tells the person through its response_url; a new connection for each
    # (to Slack, a TLS handshake) cost about ten times the CPU of a kept-alive one.
    slack = ConnectionsSeen()
    async with stack_on(database_url, slack=slack) as stack:
        for number in range(1, 4):
            await quick_send(stack, f"+1 415 555 0100 notice {number}")

            def done(count: int = number) -> bool:
                shown = stack.slack.channel_messages(SALES_CHANNEL)
                return len(slack.notices) == count and bool(shown) and went_out(shown[-1])

            await eventually(done)
        assert len(stack.slack.ephemerals(user=AGENT_USER)) == 3
        # Each notice goes over a connection that earlier requests opened and left idle; one
        # may need its own while the send's own posts hold the others (a notice per
        # connection: all three).
        fresh = [peer for position, peer in slack.notices if peer not in slack.peers[:position]]
        assert len(fresh) <= 1, (slack.notices, slack.peers)


async def test_bad_recipient_is_an_ephemeral_message_and_nothing_is_sent(
    stack: SandboxStack,
) -> None:
    result = await stack.driver.slash_command(
        "/sendsms", "555-01 hi", user_id=AGENT_USER, channel_id=SALES_CHANNEL
    )
    assert result.status == 200
    assert result.json is not None
    assert "not a valid phone number" in result.json["text"]
    assert stack.highlevel.requests_to(*SEND) == []


async def test_dnd_contact_gets_highlevels_reason(stack: SandboxStack) -> None:
    await quick_send(stack, "+1 415 555 0102 hello")
    text = await eventually(lambda: notices(stack))
    assert "Do Not Disturb" in text
    assert stack.highlevel.requests_to(*SEND) == []


async def test_bot_not_in_channel_says_how_to_add_it_and_sends_nothing(
    stack: SandboxStack,
) -> None:
    await quick_send(stack, "+1 415 555 0100 hello", channel_id=NO_BOT_CHANNEL)
    text = await eventually(lambda: notices(stack))
    assert "/invite" in text
    assert stack.highlevel.requests_to(*SEND) == []


@pytest.mark.parametrize("stack_overrides", [{"allowed_slack_users": "U0AGENT"}])
async def test_denied_user_is_told_and_nothing_is_sent(stack: SandboxStack) -> None:
    result = await stack.driver.slash_command(
        "/sendsms", "+1 415 555 0100 hello", user_id=OTHER_USER, channel_id=SALES_CHANNEL
    )
    assert result.json is not None
    assert "ALLOWED_SLACK_USERS" in result.json["text"] or "not allowed" in result.json["text"]
    await quick_send(stack, "+1 415 555 0100 allowed one")
    await eventually(lambda: len(sends(stack)) == 1)
    assert sends(stack)[0]["message"] == "allowed one"


async def open_composer(stack: SandboxStack, text: str = "", command: str = "/sendsms") -> str:
    result = await stack.driver.slash_command(
        command, text, user_id=AGENT_USER, channel_id=SALES_CHANNEL
    )
    assert result.status == 200
    views = await eventually(lambda: stack.slack.open_views(AGENT_USER))
    return str(views[-1].id)


async def submit(stack: SandboxStack, view_id: str, values: dict[str, Any]) -> dict[str, Any]:
    answers = {field: {field: value} for field, value in values.items()}
    result = await stack.driver.view_submission(view_id, user_id=AGENT_USER, values=answers)
    assert result.status == 200, result.text
    assert result.elapsed_seconds < 3.0
    return result.json or {}


async def test_composer_sends_email_with_cc_and_bcc(stack: SandboxStack) -> None:
    view_id = await open_composer(stack, "grace@example.com", command="/sendemail")
    answer = await submit(
        stack,
        view_id,
        {
            "channel": "Email",
            "subject": "Your invoice",
            "message": "Hi Grace, the invoice is attached.",
            "cc": "billing@example.com, boss@example.org",
            "bcc": "archive@example.com",
        },
    )
    assert answer.get("response_action") != "errors", answer
    await eventually(lambda: len(sends(stack)) == 1)
    body = sends(stack)[0]
    assert body["type"] == "Email"
    assert body["contactId"] == GRACE_HOPPER_ID
    assert body["subject"] == "Your invoice"
    assert body["emailCc"] == ["billing@example.com", "boss@example.org"]
    assert body["emailBcc"] == ["archive@example.com"]
    await eventually(lambda: "Your invoice" in text_of(roots(stack)[0]) if roots(stack) else False)


@pytest.mark.parametrize(
    ("values", "field", "needle"),
    [
        ({"recipient": "555-01", "message": "hi"}, "recipient", "not a valid phone number"),
        ({"recipient": "+14155550100", "message": "   "}, "message", "Write a message"),
        (
            # Slack blocks an empty required input itself; blanks get past it, not past us.
            {"recipient": "ada@example.com", "channel": "Email", "subject": "   ", "message": "hi"},
            "subject",
            "subject",
        ),
        (
            {"recipient": "+14155550100", "message": "hi", "schedule": int(time.time()) - 60},
            "schedule",
            "future",
        ),
        ({"recipient": "+14155550102", "message": "hi"}, "channel", "Do Not Disturb"),
        ({"recipient": "grace@example.com", "message": "hi"}, "channel", "no phone number"),
        (
            {
                "recipient": "ada@example.com",
                "channel": "Email",
                "subject": "s",
                "message": "x",
                "cc": "nope",
            },
            "cc",
            "not a valid email",
        ),
    ],
)
async def test_composer_field_errors_send_nothing(
    stack: SandboxStack, values: dict[str, Any], field: str, needle: str
) -> None:
    view_id = await open_composer(stack)
    if values.get("channel") == "Email":
        # Email fields appear once Email is picked, as they do for a person.
        await stack.driver.block_action(
            "channel",
            user_id=AGENT_USER,
            view_id=view_id,
            values={"channel": {"channel": "Email"}},
            action={"selected_option": {"value": "Email"}},
        )
        await eventually(
            lambda: any(
                b.get("block_id") == "subject"
                for b in stack.slack.view(view_id).view.get("blocks", [])  # type: ignore[union-attr]
            )
        )
    answer = await submit(stack, view_id, values)
    assert answer.get("response_action") == "errors", answer
    assert needle.lower() in answer["errors"][field].lower()
    assert stack.highlevel.requests_to(*SEND) == []


async def test_same_submission_twice_sends_once(stack: SandboxStack) -> None:
    view_id = await open_composer(stack)
    values = {
        "recipient": {"recipient": "+14155550100"},
        "message": {"message": "Only once, please"},
    }
    view = stack.slack.view(view_id)
    assert view is not None
    first = await stack.driver.view_submission(view_id, user_id=AGENT_USER, values=values)
    # A double click (or a replayed request) is the same signed body arriving again.
    replay = await stack.driver.post_raw(first.body, content_type=first.content_type)
    assert (first.status, replay.status) == (200, 200)
    await eventually(lambda: len(sends(stack)) == 1)
    await eventually(lambda: went_out(roots(stack)[0]) if roots(stack) else False)
    assert len(stack.highlevel.requests_to(*SEND)) == 1


async def test_schedule_then_cancel(stack: SandboxStack) -> None:
    when = int(time.time()) + 3600
    view_id = await open_composer(stack, "+1 415 555 0100")
    await submit(stack, view_id, {"message": "See you tomorrow", "schedule": when})
    await eventually(lambda: len(sends(stack)) == 1)
    assert sends(stack)[0]["scheduledTimestamp"] == when
    root = await eventually(
        lambda: (r := roots(stack)) and "cancel_scheduled" in action_ids(r[0]) and r[0]
    )
    assert "Scheduled" in text_of(root)
    result = await stack.driver.block_action(
        "cancel_scheduled", user_id=AGENT_USER, channel_id=SALES_CHANNEL, message_ts=root.ts
    )
    assert result.status == 200
    await eventually(lambda: "Cancelled" in text_of(roots(stack)[0]))
    deletes = [r for r in stack.highlevel.requests if r.method == "DELETE"]
    assert len(deletes) == 1 and deletes[0].status == 200
    assert stack.highlevel.cancelled


async def test_429_waits_and_sends_once(database_url: str) -> None:
    # HighLevel's window scaled to 1 s: with no Retry-After, a 429 means "wait out the window",
    # which the client learns from X-RateLimit-Interval-Milliseconds.
    highlevel = HighLevelSimulator(rate_limit_interval_ms=1000)
    async with stack_on(database_url, highlevel=highlevel) as stack:
        stack.highlevel.faults.burst_429 = 3
        stack.highlevel.faults.scope = "sends"
        await quick_send(stack, "+1 415 555 0100 after the burst")
        await eventually(lambda: len(sends(stack)) == 1, within=15)
        await eventually(lambda: went_out(roots(stack)[0]) if roots(stack) else False)
        assert stack.highlevel.sent_count() == 1
        assert [r.status for r in stack.highlevel.requests_to(*SEND)] == [429, 429, 429, 200]


async def test_stored_then_500_is_found_not_resent(stack: SandboxStack) -> None:
    stack.highlevel.faults.store_then_500_next = 1
    await quick_send(stack, "+1 415 555 0100 exactly once")
    await eventually(lambda: went_out(roots(stack)[0]) if roots(stack) else False)
    assert stack.highlevel.sent_count() == 1
    assert len(stack.highlevel.requests_to(*SEND)) == 1


async def test_unknowable_outcome_is_shown_and_only_a_person_resends(stack: SandboxStack) -> None:
    # A 5xx that stored nothing looks, from here, exactly like "stored, then 500"; the
    # conversation shows no such message, so the post says so and offers Resend.
    stack.highlevel.faults.error_next = 1
    stack.highlevel.faults.scope = "sends"
    await quick_send(stack, "+1 415 555 0100 did it go?")
    root = await eventually(
        lambda: (r := roots(stack)) and "resend" in action_ids(r[0]) and r[0], within=10
    )
    assert "may not have been sent" in text_of(root).lower()
    assert stack.highlevel.sent_count() == 0
    for _ in range(2):  # a double click resends once
        await stack.driver.block_action(
            "resend", user_id=AGENT_USER, channel_id=SALES_CHANNEL, message_ts=root.ts
        )
    await eventually(lambda: stack.highlevel.sent_count() == 1)
    await eventually(lambda: len(stack.highlevel.requests_to(*SEND)) == 2)
    assert stack.highlevel.sent_count() == 1


async def test_restart_keeps_the_thread(stack: SandboxStack) -> None:
    await quick_send(stack, "+1 415 555 0100 before restart")
    await eventually(lambda: len(sends(stack)) == 1)
    await eventually(lambda: went_out(roots(stack)[0]) if roots(stack) else False)
    await stack.stop_bridge()
    await stack.start_bridge()
    await quick_send(stack, "+1 415 555 0100 after restart")
    await eventually(lambda: len(sends(stack)) == 2)
    assert len(roots(stack)) == 1
    await eventually(lambda: len(stack.slack.thread(SALES_CHANNEL, roots(stack)[0].ts)) == 2)
    async with stack_store(stack) as store:
        threads = await store.find_threads_for_contact(stack.highlevel.location_id, ADA_LOVELACE_ID)
    assert len(threads) == 1
    assert threads[0].thread_ts == roots(stack)[0].ts
    assert ALAN_TURING_ID not in {t.contact_id for t in threads}


async def test_highlevels_own_refusal_is_shown_on_the_post(stack: SandboxStack) -> None:
    await quick_send(stack, "+1 415 555 0100 first one")
    await eventually(lambda: roots(stack) and went_out(roots(stack)[0]))
    # Ada turns DND on in HighLevel; the bridge's cached contact does not know yet, so
    # HighLevel itself refuses the next send, and its words reach the person.
    stack.highlevel.contacts[ADA_LOVELACE_ID].dnd_settings = {"SMS": {"status": "active"}}
    await quick_send(stack, "+1 415 555 0100 second one")
    thread = await eventually(
        lambda: (
            (t := stack.slack.thread(SALES_CHANNEL, roots(stack)[0].ts))
            and len(t) == 2
            and "retry" in action_ids(t[1])
            and t
        )
    )
    assert "DND" in text_of(thread[1])
    assert stack.highlevel.sent_count() == 1


def channel_options(stack: SandboxStack, view_id: str) -> list[str]:
    view = stack.slack.view(view_id)
    assert view is not None
    block = next(b for b in view.view["blocks"] if b.get("block_id") == "channel")
    return [option["value"] for option in block["element"]["options"]]


async def test_composer_offers_only_what_the_contact_can_receive(stack: SandboxStack) -> None:
    view_id = await open_composer(stack, "grace@example.com")
    # Grace has an email address but no phone: once she is looked up, SMS is not offered.
    options = await eventually(
        lambda: (o := channel_options(stack, view_id)) and "SMS" not in o and o
    )
    assert "Email" in options
    assert "WhatsApp" not in options


async def test_an_unreadable_outbox_entry_is_set_aside_and_sending_goes_on(
    stack: SandboxStack,
) -> None:
    async with stack_store(stack) as store:
        bad, _ = await store.enqueue(
            idempotency_key="corrupt-entry",
            team_id="T0SANDBOX",
            channel_id=SALES_CHANNEL,
            slack_user_id=AGENT_USER,
            location_id=stack.highlevel.location_id,
            contact_id=GRACE_HOPPER_ID,
            message_type="SMS",
            payload={"request": {"type": "NotAChannel"}},
        )

        # The worker finds it on its next poll (at most 5 s) and must survive it.
        async def state() -> str:
            entry = await store.get_outbox(bad.id)
            return entry.state.value if entry else ""

        deadline = time.monotonic() + 10
        while await state() != "failed":
            assert time.monotonic() < deadline, "the corrupt entry was never set aside"
            await asyncio.sleep(0.2)
    await quick_send(stack, "+1 415 555 0100 still working")
    await eventually(lambda: any(b.get("message") == "still working" for b in sends(stack)))


async def test_a_delivery_is_shown_even_after_slack_failed_to_update_the_post(
    stack: SandboxStack,
) -> None:
    await quick_send(stack, "+1 415 555 0100 Your car is ready")
    await eventually(lambda: went_out(roots(stack)[0]) if roots(stack) else False)
    [sent] = [m for m in stack.highlevel.messages.values() if m.body == "Your car is ready"]
    await stack.highlevel.drain_webhooks()

    # HighLevel says delivered; Slack fails the post's update as often as the poster tries
    # it, so the event is tried again later, by which time the delivery is recorded: the post
    # must still come to show it.
    stack.slack.faults.server_error_next("chat.update", times=5)
    await stack.highlevel.set_message_status(sent.id, "delivered")
    await eventually(lambda: "Delivered" in text_of(roots(stack)[0]), within=30)
    assert not stack.slack.faults.pending  # the failures were met, not skipped
