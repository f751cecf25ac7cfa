"""Modals, trigger ids, and Slack's documented Block Kit limits in the simulator."""

from __future__ import annotations

import asyncio

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.sandbox.slack import SlackSimulator
from tests.sandbox_slack._support import ALICE, GENERAL, modal, refused, section


async def test_views_open_with_a_fresh_trigger_opens_the_modal(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    trigger = sim.issue_trigger_id(ALICE)

    answer = await client.views_open(
        trigger_id=trigger, view=modal(private_metadata='{"contact": "c1"}')
    )

    [opened] = sim.open_views(user=ALICE)
    assert opened.id == answer["view"]["id"]
    assert opened.callback_id == "send_text"
    assert opened.private_metadata == '{"contact": "c1"}'
    assert opened.title == "Send a text"
    assert answer["view"]["hash"] == opened.hash
    assert answer["view"]["state"] == {"values": {}}


async def test_a_trigger_id_is_good_once(sim: SlackSimulator, client: AsyncWebClient) -> None:
    trigger = sim.issue_trigger_id(ALICE)
    await client.views_open(trigger_id=trigger, view=modal())

    again = await refused(client.views_open(trigger_id=trigger, view=modal()))
    invented = await refused(client.views_open(trigger_id="123.456.abc", view=modal()))

    assert again["error"] == "exchanged_trigger_id"
    assert invented["error"] == "invalid_trigger_id"
    assert len(sim.open_views()) == 1


async def test_an_expired_trigger_id_is_refused() -> None:
    sim = SlackSimulator(trigger_ttl_seconds=0.05)
    await sim.start()
    try:
        quick = AsyncWebClient(token=sim.bot_token, base_url=sim.api_url)
        trigger = sim.issue_trigger_id(ALICE)
        await asyncio.sleep(0.1)

        answer = await refused(quick.views_open(trigger_id=trigger, view=modal()))

        assert answer["error"] == "expired_trigger_id"
        assert sim.open_views() == []
    finally:
        await sim.stop()


async def test_views_update_by_id_or_external_id_with_hash_check(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    opened = await client.views_open(
        trigger_id=sim.issue_trigger_id(ALICE), view=modal(external_id="send-1")
    )
    view_id = opened["view"]["id"]

    by_id = await client.views_update(
        view_id=view_id, hash=opened["view"]["hash"], view=modal(title="Sending…")
    )
    stale = await refused(
        client.views_update(view_id=view_id, hash=opened["view"]["hash"], view=modal())
    )
    by_external = await client.views_update(
        external_id="send-1", view=modal(title="Sent", external_id="send-1")
    )

    assert by_id["view"]["id"] == view_id
    assert stale["error"] == "hash_conflict"
    assert by_external["view"]["id"] == view_id
    [current] = sim.open_views()
    assert current.title == "Sent"
    assert [v["title"]["text"] for v in current.history] == ["Send a text", "Sending…"]
    assert (await refused(client.views_update(view_id="V0NOPE", view=modal())))[
        "error"
    ] == "not_found"


async def test_views_push_stacks_on_the_modal_the_trigger_came_from(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    root = await client.views_open(trigger_id=sim.issue_trigger_id(ALICE), view=modal())
    root_id = root["view"]["id"]

    pushed = await client.views_push(
        trigger_id=sim.issue_trigger_id(ALICE, view_id=root_id), view=modal(title="Confirm")
    )

    assert pushed["view"]["root_view_id"] == root_id
    assert pushed["view"]["previous_view_id"] == root_id
    assert [v.title for v in sim.open_views()] == ["Send a text", "Confirm"]
    sim.close_view(root_id)  # closing the root takes the pushed view with it
    assert sim.open_views() == []


async def test_modal_title_over_24_characters_is_refused(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    too_long = await refused(
        client.views_open(trigger_id=sim.issue_trigger_id(ALICE), view=modal(title="x" * 25))
    )
    fits = await client.views_open(
        trigger_id=sim.issue_trigger_id(ALICE), view=modal(title="x" * 24)
    )

    assert too_long["error"] == "invalid_arguments"
    assert any("/view/title/text" in m for m in too_long["response_metadata"]["messages"])
    assert fits["ok"] is True


async def test_modal_with_101_blocks_is_refused(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    too_many = await refused(
        client.views_open(
            trigger_id=sim.issue_trigger_id(ALICE),
            view=modal(blocks=[section(f"line {i}") for i in range(101)]),
        )
    )
    hundred = await client.views_open(
        trigger_id=sim.issue_trigger_id(ALICE),
        view=modal(blocks=[section(f"line {i}") for i in range(100)]),
    )

    assert too_many["error"] == "invalid_arguments"
    assert any("/view/blocks" in m for m in too_many["response_metadata"]["messages"])
    assert hundred["ok"] is True


async def test_private_metadata_over_3000_characters_is_refused(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    too_long = await refused(
        client.views_open(
            trigger_id=sim.issue_trigger_id(ALICE), view=modal(private_metadata="m" * 3001)
        )
    )
    fits = await client.views_open(
        trigger_id=sim.issue_trigger_id(ALICE), view=modal(private_metadata="m" * 3000)
    )

    assert too_long["error"] == "invalid_arguments"
    assert any("private_metadata" in m for m in too_long["response_metadata"]["messages"])
    assert fits["ok"] is True


async def test_a_refused_view_does_not_use_up_the_trigger(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    trigger = sim.issue_trigger_id(ALICE)
    await refused(client.views_open(trigger_id=trigger, view=modal(callback_id="c" * 256)))

    answer = await client.views_open(trigger_id=trigger, view=modal())

    assert answer["ok"] is True


async def test_section_text_over_3000_characters_is_refused(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    in_message = await refused(
        client.chat_postMessage(channel=GENERAL, text="x", blocks=[section("s" * 3001)])
    )
    in_modal = await refused(
        client.views_open(
            trigger_id=sim.issue_trigger_id(ALICE), view=modal(blocks=[section("s" * 3001)])
        )
    )
    fits = await client.chat_postMessage(channel=GENERAL, text="x", blocks=[section("s" * 3000)])

    assert in_message["error"] == "invalid_blocks"
    assert in_message["response_metadata"]["messages"] == [
        "[ERROR] must be less than 3001 characters [json-pointer:/blocks/0/text/text]"
    ]
    assert in_modal["error"] == "invalid_arguments"
    assert fits["ok"] is True
    assert len(sim.channel_messages(GENERAL)) == 1


async def test_message_limits_blocks_text_and_content(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    fifty_one = await refused(
        client.chat_postMessage(
            channel=GENERAL, text="x", blocks=[section(str(i)) for i in range(51)]
        )
    )
    too_long = await refused(client.chat_postMessage(channel=GENERAL, text="t" * 40_001))
    with pytest.warns(UserWarning, match="text"):  # slack_sdk warns; Slack refuses
        empty = await refused(client.chat_postMessage(channel=GENERAL, text=""))

    assert fifty_one["error"] == "invalid_blocks"
    assert too_long["error"] == "msg_too_long"
    assert empty["error"] == "no_text"
    assert sim.channel_messages(GENERAL) == []


async def test_blocks_are_checked_with_slack_sdk_models_too(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    # A 76-character button label: only slack_sdk's element validators know this limit.
    button = {
        "type": "actions",
        "elements": [
            {
                "type": "button",
                "action_id": "go",
                "text": {"type": "plain_text", "text": "b" * 76},
            }
        ],
    }
    answer = await refused(client.chat_postMessage(channel=GENERAL, text="x", blocks=[button]))
    unknown = await refused(
        client.chat_postMessage(channel=GENERAL, text="x", blocks=[{"type": "nonsense"}])
    )

    assert answer["error"] == "invalid_blocks"
    assert "75" in answer["response_metadata"]["messages"][0]
    assert unknown["error"] == "invalid_blocks"


async def test_a_modal_with_inputs_needs_a_submit_button(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    view = modal()
    del view["submit"]

    answer = await refused(client.views_open(trigger_id=sim.issue_trigger_id(ALICE), view=view))

    assert answer["error"] == "invalid_arguments"
