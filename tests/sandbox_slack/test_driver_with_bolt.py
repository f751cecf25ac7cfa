"""The driver's requests pass a real Bolt app's signature check and reach the right handlers.

The Bolt app runs over real HTTP (slack_bolt.adapter.aiohttp) and talks to the simulator
through a real AsyncWebClient, so every field a handler reads came through Slack-shaped
requests and every Web API call it makes lands in the simulator.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.web.async_client import AsyncWebClient

from bot.sandbox.slack import SlackDriver, SlackSimulator
from tests.sandbox_slack._support import ALICE, GENERAL, modal, section, until

SIGNING_SECRET = "sandbox-signing-secret"


@dataclass
class Received:
    """What each Bolt handler was given, in arrival order."""

    bodies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    headers: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    def add(self, kind: str, body: dict[str, Any], request: AsyncBoltRequest) -> None:
        self.bodies.setdefault(kind, []).append(body)
        flat = {k: v[0] for k, v in request.headers.items() if v}
        self.headers.setdefault(kind, []).append(flat)

    def one(self, kind: str) -> dict[str, Any]:
        [body] = self.bodies.get(kind, [])
        return body


def build_bolt_app(sim: SlackSimulator, received: Received) -> AsyncApp:
    app = AsyncApp(
        signing_secret=SIGNING_SECRET,
        client=AsyncWebClient(token=sim.bot_token, base_url=sim.api_url),
    )

    @app.command("/ghl")
    async def on_command(
        ack: AsyncAck,
        body: dict[str, Any],
        respond: AsyncRespond,
        client: AsyncWebClient,
        request: AsyncBoltRequest,
    ) -> None:
        await ack()
        received.add("command", body, request)
        if body["text"] == "new":
            await client.views_open(
                trigger_id=body["trigger_id"],
                view=modal(private_metadata=body["channel_id"], notify_on_close=True),
            )
        else:
            await respond(text=f"Looking up {body['text']}")

    @app.action("send_now")
    async def on_action(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, request: AsyncBoltRequest
    ) -> None:
        await ack()
        received.add("action", body, request)
        await respond(replace_original=True, text="Sending…")

    @app.action("add_note")
    async def on_modal_action(
        ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, request: AsyncBoltRequest
    ) -> None:
        await ack()
        received.add("modal_action", body, request)
        await client.views_push(
            trigger_id=body["trigger_id"], view=modal(title="Add a note", callback_id="note")
        )

    @app.view("send_text")
    async def on_submit(ack: AsyncAck, body: dict[str, Any], request: AsyncBoltRequest) -> None:
        received.add("view_submission", body, request)
        text = body["view"]["state"]["values"]["body"]["text"]["value"]
        if text == "bad":
            await ack(response_action="errors", errors={"body": "Say something nicer"})
        elif text == "confirm":
            await ack(response_action="update", view=modal(title="Confirm sending"))
        elif text == "too long":
            await ack(response_action="update", view=modal(title="This title is too long!!!"))
        else:
            await ack()

    @app.view_closed("send_text")
    async def on_closed(ack: AsyncAck, body: dict[str, Any], request: AsyncBoltRequest) -> None:
        await ack()
        received.add("view_closed", body, request)

    @app.shortcut("reply_by_sms")
    async def on_shortcut(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, request: AsyncBoltRequest
    ) -> None:
        await ack()
        received.add("shortcut", body, request)
        await respond(text="Replying by SMS", replace_original=False)

    @app.event("message")
    async def on_message(body: dict[str, Any], request: AsyncBoltRequest) -> None:
        received.add("event", body, request)

    @app.event("app_mention")
    async def on_mention(body: dict[str, Any], request: AsyncBoltRequest) -> None:
        received.add("app_mention", body, request)

    return app


@dataclass
class Stage:
    sim: SlackSimulator
    driver: SlackDriver
    received: Received
    client: AsyncWebClient


@pytest.fixture
async def stage(sim: SlackSimulator, client: AsyncWebClient) -> AsyncIterator[Stage]:
    received = Received()
    bolt = build_bolt_app(sim, received)

    async def slack_events(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await bolt.async_dispatch(await to_bolt_request(request)))

    server = web.Application()
    server.router.add_post("/slack/events", slack_events)
    runner = web.AppRunner(server, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    driver = SlackDriver(f"http://{host}:{port}/slack/events", SIGNING_SECRET, sim)
    try:
        yield Stage(sim, driver, received, client)
    finally:
        await driver.aclose()
        await runner.cleanup()


async def test_slash_command_reaches_its_handler_and_respond_reaches_the_sink(
    stage: Stage,
) -> None:
    result = await stage.driver.slash_command(
        "/ghl", "+1 555 0100", user_id=ALICE, channel_id=GENERAL
    )

    assert result.status == 200
    assert result.within_ack_deadline
    body = stage.received.one("command")
    assert body["command"] == "/ghl"
    assert body["text"] == "+1 555 0100"
    assert (body["user_id"], body["user_name"]) == (ALICE, "alice")
    assert (body["channel_id"], body["channel_name"]) == (GENERAL, "general")
    assert (body["team_id"], body["team_domain"]) == ("T0SANDBOX", "sandbox")
    assert body["api_app_id"] == "A0SANDBOX"
    assert body["trigger_id"] == result.trigger_id
    assert body["response_url"] == result.response_url
    assert result.response_url is not None
    await until(lambda: bool(stage.sim.response_url_posts(result.response_url)))
    [post] = stage.sim.response_url_posts(result.response_url)
    assert post.body["text"] == "Looking up +1 555 0100"
    assert [e.text for e in stage.sim.ephemerals(GENERAL, ALICE)] == ["Looking up +1 555 0100"]
    # Bolt asked the simulator who it is before the first request.
    assert stage.sim.calls_to("auth.test")


async def test_command_opens_a_modal_with_its_trigger_through_the_simulator(
    stage: Stage,
) -> None:
    result = await stage.driver.slash_command("/ghl", "new", user_id=ALICE, channel_id=GENERAL)

    await until(lambda: bool(stage.sim.open_views(ALICE)))
    [opened] = stage.sim.open_views(ALICE)
    assert opened.callback_id == "send_text"
    assert opened.private_metadata == GENERAL
    [views_open] = stage.sim.calls_to("views.open")
    assert views_open.args["trigger_id"] == result.trigger_id
    assert views_open.ok


async def test_block_action_on_a_posted_message(stage: Stage) -> None:
    buttons = {
        "type": "actions",
        "block_id": "actions",
        "elements": [
            {
                "type": "button",
                "action_id": "send_now",
                "text": {"type": "plain_text", "text": "Send now"},
                "value": "draft-42",
            }
        ],
    }
    posted = await stage.client.chat_postMessage(
        channel=GENERAL, text="Draft ready", blocks=[section("Draft ready"), buttons]
    )

    result = await stage.driver.block_action(
        "send_now", user_id=ALICE, channel_id=GENERAL, message_ts=posted["ts"]
    )

    assert result.status == 200
    body = stage.received.one("action")
    [action] = body["actions"]
    assert (action["action_id"], action["block_id"], action["value"], action["type"]) == (
        "send_now",
        "actions",
        "draft-42",
        "button",
    )
    assert body["container"] == {
        "type": "message",
        "message_ts": posted["ts"],
        "channel_id": GENERAL,
        "is_ephemeral": False,
    }
    assert body["channel"]["id"] == GENERAL
    assert body["message"]["ts"] == posted["ts"]
    assert body["message"]["text"] == "Draft ready"
    assert body["trigger_id"] == result.trigger_id
    assert body["user"]["id"] == ALICE
    # respond(replace_original=True) edits the very message the button was on.
    await until(lambda: stage.sim.channel_messages(GENERAL)[0].text == "Sending…")
    [message] = stage.sim.channel_messages(GENERAL)
    assert message.ts == posted["ts"]
    assert [edit.text for edit in message.edits] == ["Draft ready"]


async def test_block_action_inside_a_modal_can_push_a_view(stage: Stage) -> None:
    note_button = {
        "type": "actions",
        "block_id": "tools",
        "elements": [
            {
                "type": "button",
                "action_id": "add_note",
                "text": {"type": "plain_text", "text": "Add a note"},
            }
        ],
    }
    trigger = stage.sim.issue_trigger_id(ALICE)
    opened = await stage.client.views_open(
        trigger_id=trigger, view=modal(blocks=[*modal()["blocks"], note_button])
    )
    view_id = opened["view"]["id"]

    result = await stage.driver.block_action(
        "add_note", user_id=ALICE, view_id=view_id, values={"body": {"text": "half-typed"}}
    )

    assert result.status == 200
    body = stage.received.one("modal_action")
    assert body["container"] == {"type": "view", "view_id": view_id}
    assert body["view"]["state"]["values"]["body"]["text"]["value"] == "half-typed"
    assert "response_url" not in body
    await until(lambda: len(stage.sim.open_views(ALICE)) == 2)
    assert [v.title for v in stage.sim.open_views(ALICE)] == ["Send a text", "Add a note"]
    assert stage.sim.open_views(ALICE)[1].previous_view_id == view_id


async def test_view_submission_answers_update_the_modal_or_report_why_not(
    stage: Stage,
) -> None:
    opened = await stage.client.views_open(
        trigger_id=stage.sim.issue_trigger_id(ALICE), view=modal()
    )
    view_id = opened["view"]["id"]

    updated = await stage.driver.view_submission(
        view_id, user_id=ALICE, values={"body": {"text": "confirm"}}
    )
    assert updated.modal_error is None
    [current] = stage.sim.open_views(ALICE)
    assert (current.id, current.title) == (view_id, "Confirm sending")

    broken = await stage.driver.view_submission(
        view_id, user_id=ALICE, values={"body": {"text": "too long"}}
    )
    assert broken.modal_error is not None
    assert "invalid_arguments" in broken.modal_error
    assert "/view/title/text" in broken.modal_error
    assert stage.sim.open_views(ALICE)[0].title == "Confirm sending"


async def test_view_submission_carries_state_and_closes_the_modal(stage: Stage) -> None:
    await stage.driver.slash_command("/ghl", "new", user_id=ALICE, channel_id=GENERAL)
    await until(lambda: bool(stage.sim.open_views(ALICE)))
    [opened] = stage.sim.open_views(ALICE)

    refused = await stage.driver.view_submission(
        opened.id, user_id=ALICE, values={"body": {"text": "bad"}}
    )
    assert refused.json == {"response_action": "errors", "errors": {"body": "Say something nicer"}}
    assert [v.id for v in stage.sim.open_views(ALICE)] == [opened.id]  # errors keep it open

    accepted = await stage.driver.view_submission(
        opened.id, user_id=ALICE, values={"body": {"text": "Your order shipped"}}
    )

    assert accepted.status == 200
    first, second = stage.received.bodies["view_submission"]
    assert first["view"]["state"]["values"]["body"]["text"]["value"] == "bad"
    view = second["view"]
    assert view["id"] == opened.id
    assert view["callback_id"] == "send_text"
    assert view["private_metadata"] == GENERAL
    assert view["hash"] == opened.hash
    assert view["state"]["values"]["body"]["text"] == {
        "type": "plain_text_input",
        "value": "Your order shipped",
    }
    assert second["trigger_id"] == accepted.trigger_id
    assert stage.sim.open_views(ALICE) == []


async def test_a_required_input_cannot_be_submitted_empty(stage: Stage) -> None:
    trigger = stage.sim.issue_trigger_id(ALICE)
    opened = await stage.client.views_open(trigger_id=trigger, view=modal())

    with pytest.raises(ValueError, match="required input"):
        await stage.driver.view_submission(opened["view"]["id"], user_id=ALICE, values={})
    assert "view_submission" not in stage.received.bodies


async def test_view_closed_reaches_its_handler(stage: Stage) -> None:
    await stage.driver.slash_command("/ghl", "new", user_id=ALICE, channel_id=GENERAL)
    await until(lambda: bool(stage.sim.open_views(ALICE)))
    [opened] = stage.sim.open_views(ALICE)

    result = await stage.driver.view_closed(opened.id, user_id=ALICE)

    assert result.status == 200
    body = stage.received.one("view_closed")
    assert body["view"]["id"] == opened.id
    assert body["view"]["private_metadata"] == GENERAL
    assert body["is_cleared"] is False
    assert stage.sim.open_views(ALICE) == []


async def test_message_shortcut_reaches_its_handler(stage: Stage) -> None:
    customer_note = stage.sim.post_as_user(GENERAL, ALICE, "Call Jane about her refund")

    result = await stage.driver.message_action(
        "reply_by_sms", user_id=ALICE, channel_id=GENERAL, message_ts=customer_note.ts
    )

    assert result.status == 200
    body = stage.received.one("shortcut")
    assert body["type"] == "message_action"
    assert body["callback_id"] == "reply_by_sms"
    assert body["message"]["text"] == "Call Jane about her refund"
    assert body["message"]["ts"] == customer_note.ts
    assert body["channel"] == {"id": GENERAL, "name": "general"}
    assert body["trigger_id"] == result.trigger_id
    await until(lambda: bool(stage.sim.response_url_posts(result.response_url)))


async def test_message_event_and_its_retry_reach_the_handler(stage: Stage) -> None:
    root = await stage.client.chat_postMessage(channel=GENERAL, text="SMS from Jane")

    first = await stage.driver.user_message(GENERAL, ALICE, "Thanks Jane!", thread_ts=root["ts"])
    retry = await stage.driver.redeliver(first, retry_num=1, retry_reason="http_timeout")

    assert (first.status, retry.status) == (200, 200)
    await until(lambda: len(stage.received.bodies.get("event", [])) == 2)
    original, redelivered = stage.received.bodies["event"]
    assert original == redelivered  # Slack resends the very same body
    assert original["type"] == "event_callback"
    assert original["event_id"] == first.event_id
    assert original["authorizations"][0]["user_id"] == "U0BOT"
    event = original["event"]
    assert (event["type"], event["channel"], event["user"]) == ("message", GENERAL, ALICE)
    assert event["thread_ts"] == root["ts"]
    assert event["text"] == "Thanks Jane!"
    first_headers, retry_headers = stage.received.headers["event"]
    assert "x-slack-retry-num" not in first_headers
    assert retry_headers["x-slack-retry-num"] == "1"
    assert retry_headers["x-slack-retry-reason"] == "http_timeout"
    # The person's reply is in the thread, as conversations.replies will show it.
    assert [m.text for m in stage.sim.thread(GENERAL, root["ts"])] == [
        "SMS from Jane",
        "Thanks Jane!",
    ]


async def test_any_event_with_retry_headers(stage: Stage) -> None:
    mention = {
        "type": "app_mention",
        "user": ALICE,
        "text": "<@U0BOT> status?",
        "ts": "1732430000.000100",
        "channel": GENERAL,
        "event_ts": "1732430000.000100",
    }

    result = await stage.driver.event(
        mention, event_id="Ev0MENTION", retry_num=2, retry_reason="http_error"
    )

    assert result.status == 200
    await until(lambda: "app_mention" in stage.received.bodies)
    body = stage.received.one("app_mention")
    assert body["event_id"] == "Ev0MENTION"
    assert body["event"] == mention
    assert body["team_id"] == "T0SANDBOX"
    assert body["api_app_id"] == "A0SANDBOX"
    assert isinstance(body["event_time"], int)
    [headers] = stage.received.headers["app_mention"]
    assert (headers["x-slack-retry-num"], headers["x-slack-retry-reason"]) == ("2", "http_error")


async def test_url_verification_is_answered_with_the_challenge(stage: Stage) -> None:
    result = await stage.driver.url_verification("challenge-123")

    assert result.status == 200
    assert result.json == {"challenge": "challenge-123"}


async def test_wrong_secret_stale_timestamp_and_tampering_get_401(stage: Stage) -> None:
    impostor = SlackDriver(stage.driver.app_url, "not-the-secret", stage.sim)
    try:
        wrong_secret = await impostor.slash_command("/ghl", "x", user_id=ALICE, channel_id=GENERAL)
    finally:
        await impostor.aclose()
    stale = await stage.driver.slash_command(
        "/ghl", "x", user_id=ALICE, channel_id=GENERAL, timestamp=int(time.time()) - 600
    )
    signed = await stage.driver.url_verification("c")
    tampered = await stage.driver.post_raw(
        json.dumps({"type": "url_verification", "challenge": "evil"}),
        content_type="application/json",
        signature=stage.driver.sign(signed.body, int(time.time())),
    )

    assert (wrong_secret.status, stale.status, tampered.status) == (401, 401, 401)
    assert "command" not in stage.received.bodies
