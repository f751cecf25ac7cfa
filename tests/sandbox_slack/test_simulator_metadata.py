"""Message metadata in the Slack simulator, as slack.com handles it: chat.postMessage checks and
keeps it; conversations.history/replies return it only with include_all_metadata."""

from __future__ import annotations

import httpx
from slack_sdk.web.async_client import AsyncWebClient

from bot.sandbox.slack import SlackMessage, SlackSimulator
from tests.sandbox_slack._support import GENERAL, refused

MARK = {"event_type": "ghl_bridge_post", "event_payload": {"key": "loc:message:m1"}}


async def test_history_and_replies_return_metadata_only_when_asked(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    root = await client.chat_postMessage(channel=GENERAL, text="root", metadata=MARK)
    reply_mark = {"event_type": "ghl_bridge_post", "event_payload": {"key": "loc:message:m2"}}
    await client.chat_postMessage(
        channel=GENERAL, text="reply", thread_ts=root["ts"], metadata=reply_mark
    )

    plain = await client.conversations_history(channel=GENERAL)
    assert [m.get("metadata") for m in plain["messages"]] == [None]
    full = await client.conversations_history(channel=GENERAL, include_all_metadata=True)
    assert [m["metadata"] for m in full["messages"]] == [MARK]

    plain_replies = await client.conversations_replies(channel=GENERAL, ts=root["ts"])
    assert [m.get("metadata") for m in plain_replies["messages"]] == [None, None]
    replies = await client.conversations_replies(
        channel=GENERAL, ts=root["ts"], include_all_metadata=True
    )
    assert [m["metadata"] for m in replies["messages"]] == [MARK, reply_mark]
    # Kept as posted (what a person never sees, but the app can read back).
    assert sim.message(GENERAL, root["ts"]) is not None
    assert sim.message(GENERAL, root["ts"]).metadata == MARK  # type: ignore[union-attr]


async def test_metadata_sent_as_a_form_field_is_read_like_json(sim: SlackSimulator) -> None:
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{sim.api_url}chat.postMessage",
            data={
                "token": sim.bot_token,
                "channel": GENERAL,
                "text": "form",
                "metadata": '{"event_type": "x", "event_payload": {"id": 1}}',
            },
        )
    assert answer.json()["ok"] is True
    assert sim.channel_messages(GENERAL)[-1].metadata == {
        "event_type": "x",
        "event_payload": {"id": 1},
    }


async def test_malformed_metadata_is_refused_and_nothing_is_posted(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    not_an_object = await refused(
        client.api_call("chat.postMessage", json={"channel": GENERAL, "text": "a", "metadata": [1]})
    )
    assert not_an_object["error"] == "invalid_metadata_format"
    for bad in (
        {"event_payload": {"id": 1}},
        {"event_type": "", "event_payload": {}},
        {"event_type": 7, "event_payload": {}},
        {"event_type": "x", "event_payload": "not an object"},
        {"event_type": "x"},
    ):
        answer = await refused(client.chat_postMessage(channel=GENERAL, text="b", metadata=bad))
        assert answer["error"] == "invalid_metadata_schema", bad
    assert sim.channel_messages(GENERAL) == []


async def test_replies_are_bounded_by_oldest_and_latest(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    root = await client.chat_postMessage(channel=GENERAL, text="root")
    first = await client.chat_postMessage(channel=GENERAL, text="one", thread_ts=root["ts"])
    second = await client.chat_postMessage(channel=GENERAL, text="two", thread_ts=root["ts"])

    after_first = await client.conversations_replies(
        channel=GENERAL, ts=root["ts"], oldest=first["ts"]
    )
    assert [m["text"] for m in after_first["messages"]] == ["two"]
    inclusive = await client.conversations_replies(
        channel=GENERAL, ts=root["ts"], oldest=first["ts"], latest=second["ts"], inclusive=True
    )
    assert [m["text"] for m in inclusive["messages"]] == ["one", "two"]


async def test_after_post_sees_the_stored_post_before_the_app_hears_back(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    seen: list[tuple[str, int]] = []

    def after_post(message: SlackMessage) -> None:
        # The post is already in the channel when the hook runs, and no answer has gone yet.
        seen.append((message.text, len(sim.channel_messages(GENERAL))))

    sim.after_post = after_post
    answer = await client.chat_postMessage(channel=GENERAL, text="watched", metadata=MARK)

    assert seen == [("watched", 1)]
    assert sim.channel_messages(GENERAL)[0].ts == answer["ts"]
