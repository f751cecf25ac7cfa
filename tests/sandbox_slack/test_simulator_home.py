"""The App Home in the simulator: views.publish (one Home tab per person, checked like any
view), chat.getPermalink, and the driver's app_home_opened event."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from slack_sdk.web.async_client import AsyncWebClient

from bot.sandbox.slack import SlackDriver, SlackSimulator
from tests.sandbox_slack._support import ALICE, BOB, GENERAL, refused, section


def home(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"type": "home", "blocks": list(blocks) or [section("Nothing waits")]}


async def test_views_publish_keeps_each_persons_home_tab(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    first = await client.views_publish(user_id=ALICE, view=home(section("one")))
    second = await client.views_publish(
        user_id=ALICE, view=home(section("two")), hash=first["view"]["hash"]
    )
    await client.views_publish(user_id=BOB, view=home(section("for Bob")))

    alice = sim.home_view(ALICE)
    assert alice is not None and alice.id == first["view"]["id"] == second["view"]["id"]
    assert alice.view["type"] == "home"
    assert alice.blocks[0]["text"]["text"] == "two"
    assert [v["blocks"][0]["text"]["text"] for v in alice.history] == ["one"]
    assert sim.view(alice.id) is alice  # a person's clicks in it name this view
    assert sim.open_views() == []  # a Home tab is not a modal
    bob = sim.home_view(BOB)
    assert bob is not None and bob.blocks[0]["text"]["text"] == "for Bob"


async def test_views_publish_refuses_what_slack_refuses(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    await client.views_publish(user_id=ALICE, view=home())
    too_many = home(*[section(f"b{n}") for n in range(101)])
    a_modal = {**home(), "type": "modal"}
    with_submit = {**home(), "submit": {"type": "plain_text", "text": "Go"}}

    assert (await refused(client.views_publish(user_id=ALICE, view=too_many)))["error"] == (
        "invalid_arguments"
    )
    assert (await refused(client.views_publish(user_id=ALICE, view=a_modal)))["error"] == (
        "invalid_arguments"
    )
    assert (await refused(client.views_publish(user_id=ALICE, view=with_submit)))["error"] == (
        "invalid_arguments"
    )
    stale = await refused(client.views_publish(user_id=ALICE, view=home(), hash="1.stale"))
    nobody = await refused(client.views_publish(user_id="U0NOBODY", view=home()))
    assert stale["error"] == "hash_conflict"
    assert nobody["error"] == "user_not_found"
    shown = sim.home_view(ALICE)
    assert shown is not None and shown.history == []


async def test_chat_get_permalink_points_at_the_message_and_back(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    root = await client.chat_postMessage(channel=GENERAL, text="root")
    reply = await client.chat_postMessage(channel=GENERAL, text="reply", thread_ts=root["ts"])

    root_link = (await client.chat_getPermalink(channel=GENERAL, message_ts=root["ts"]))[
        "permalink"
    ]
    reply_link = (await client.chat_getPermalink(channel=GENERAL, message_ts=reply["ts"]))[
        "permalink"
    ]

    assert root_link == (
        f"https://{sim.team_domain}.slack.com/archives/{GENERAL}/p{root['ts'].replace('.', '')}"
    )
    assert reply_link.endswith(f"?thread_ts={root['ts']}&cid={GENERAL}")
    assert sim.message_at(root_link) == sim.message(GENERAL, root["ts"])
    assert sim.message_at(reply_link) == sim.message(GENERAL, reply["ts"])
    assert sim.message_at("https://elsewhere.slack.com/archives/C1/p1700000000000100") is None
    missing = await refused(client.chat_getPermalink(channel=GENERAL, message_ts="1.000001"))
    unknown = await refused(client.chat_getPermalink(channel="C0NOWHERE", message_ts=root["ts"]))
    assert missing["error"] == "message_not_found"
    assert unknown["error"] == "channel_not_found"


async def test_the_driver_sends_app_home_opened_with_the_current_home_tab(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    received: list[dict[str, Any]] = []

    async def events(request: web.Request) -> web.Response:
        received.append(json.loads(await request.read()))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/slack/events", events)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with SlackDriver(f"http://127.0.0.1:{port}/slack/events", "secret", sim) as driver:
            await driver.app_home_opened(ALICE)
            await client.views_publish(user_id=ALICE, view=home())
            await driver.app_home_opened(ALICE)
            await driver.app_home_opened(ALICE, tab="messages")
    finally:
        await runner.cleanup()

    events_seen = [body["event"] for body in received]
    assert [e["type"] for e in events_seen] == ["app_home_opened"] * 3
    assert [e["tab"] for e in events_seen] == ["home", "home", "messages"]
    assert all(e["user"] == ALICE for e in events_seen)
    assert "view" not in events_seen[0] and "view" not in events_seen[2]
    assert events_seen[1]["view"]["type"] == "home"
