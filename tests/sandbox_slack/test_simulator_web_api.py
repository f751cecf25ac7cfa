"""The Slack simulator answers slack_sdk's real AsyncWebClient the way slack.com does."""

from __future__ import annotations

import json

import httpx
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.sandbox.slack import SlackSimulator
from tests.sandbox_slack._support import (
    ALICE,
    BOB,
    GENERAL,
    OUTSIDE,
    RANDOM,
    SECRET,
    refused,
    section,
)


async def test_auth_test_names_the_bot_and_workspace(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    answer = await client.auth_test()

    assert answer["team_id"] == "T0SANDBOX"
    assert answer["user_id"] == "U0BOT"
    assert answer["bot_id"] == sim.bot_id
    assert answer["url"] == "https://sandbox.slack.com/"


async def test_wrong_or_missing_token_is_refused(sim: SlackSimulator) -> None:
    wrong = AsyncWebClient(token="xoxb-not-ours", base_url=sim.api_url)
    assert (await refused(wrong.chat_postMessage(channel=GENERAL, text="hi")))[
        "error"
    ] == "invalid_auth"

    async with httpx.AsyncClient() as http:
        answer = await http.post(f"{sim.api_url}auth.test")
    assert answer.status_code == 200
    assert answer.json() == {"ok": False, "error": "not_authed"}
    assert sim.channel_messages(GENERAL) == []


async def test_thread_reply_is_counted_on_its_root_and_read_back(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    root = await client.chat_postMessage(channel=GENERAL, text="New SMS from +1 555 0100")
    reply = await client.chat_postMessage(channel=GENERAL, text="Hi!", thread_ts=root["ts"])
    await client.chat_postMessage(channel=GENERAL, text="Second", thread_ts=root["ts"])

    assert float(reply["ts"]) > float(root["ts"])
    replies = await client.conversations_replies(channel=GENERAL, ts=root["ts"])
    texts = [m["text"] for m in replies["messages"]]
    assert texts == ["New SMS from +1 555 0100", "Hi!", "Second"]
    assert replies["messages"][0]["reply_count"] == 2
    assert replies["messages"][1]["thread_ts"] == root["ts"]

    # As a person sees it: one top-level message with a two-reply thread.
    top_level = sim.channel_messages(GENERAL)
    assert [m.text for m in top_level] == ["New SMS from +1 555 0100"]
    assert top_level[0].reply_count == 2
    assert [m.text for m in sim.thread(GENERAL, root["ts"])] == texts
    history = await client.conversations_history(channel=GENERAL)
    assert [m["text"] for m in history["messages"]] == ["New SMS from +1 555 0100"]


async def test_reply_to_an_unknown_thread_is_accepted_but_seen_nowhere(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    answer = await client.chat_postMessage(
        channel=GENERAL, text="lost", thread_ts="1600000000.000100"
    )

    assert answer["ok"] is True
    assert sim.channel_messages(GENERAL) == []
    assert [m.text for m in sim.orphaned_replies(GENERAL)] == ["lost"]
    malformed = await refused(client.chat_postMessage(channel=GENERAL, text="x", thread_ts="0"))
    assert malformed["error"] == "invalid_thread_ts"


async def test_ts_values_are_unique_and_increasing(client: AsyncWebClient) -> None:
    stamps = [(await client.chat_postMessage(channel=GENERAL, text=str(i)))["ts"] for i in range(5)]

    assert len(set(stamps)) == 5
    assert stamps == sorted(stamps, key=float)
    assert all(len(ts.split(".")[1]) == 6 for ts in stamps)


async def test_chat_update_edits_in_place_and_keeps_the_old_version(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    posted = await client.chat_postMessage(
        channel=GENERAL, text="Sending…", blocks=[section("Sending…")]
    )
    updated = await client.chat_update(
        channel=GENERAL, ts=posted["ts"], text="Delivered", blocks=[section("Delivered ✅")]
    )

    assert updated["ts"] == posted["ts"]
    [message] = sim.channel_messages(GENERAL)
    assert message.text == "Delivered"
    assert message.blocks is not None
    assert message.blocks[0]["text"]["text"] == "Delivered ✅"
    assert [edit.text for edit in message.edits] == ["Sending…"]
    history = await client.conversations_history(channel=GENERAL)
    assert history["messages"][0]["edited"]["user"] == "U0BOT"

    missing = await refused(client.chat_update(channel=GENERAL, ts="1600000000.000001", text="x"))
    assert missing["error"] == "message_not_found"


async def test_chat_update_cannot_touch_a_persons_message(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    theirs = sim.post_as_user(GENERAL, ALICE, "mine")

    answer = await refused(client.chat_update(channel=GENERAL, ts=theirs.ts, text="hijack"))

    assert answer["error"] == "cant_update_message"
    assert sim.channel_messages(GENERAL)[0].text == "mine"


async def test_chat_delete_removes_the_message(sim: SlackSimulator, client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(channel=GENERAL, text="oops")
    reply = await client.chat_postMessage(channel=GENERAL, text="reply", thread_ts=posted["ts"])

    await client.chat_delete(channel=GENERAL, ts=reply["ts"])
    assert sim.channel_messages(GENERAL)[0].reply_count == 0
    await client.chat_delete(channel=GENERAL, ts=posted["ts"])

    assert sim.channel_messages(GENERAL) == []
    again = await refused(client.chat_delete(channel=GENERAL, ts=posted["ts"]))
    assert again["error"] == "message_not_found"


async def test_ephemeral_reaches_only_its_user_and_only_a_member(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    answer = await client.chat_postEphemeral(channel=RANDOM, user=ALICE, text="Only you")

    [ephemeral] = sim.ephemerals(channel=RANDOM, user=ALICE)
    assert ephemeral.text == "Only you"
    assert ephemeral.ts == answer["message_ts"]
    assert sim.ephemerals(user=BOB) == []
    assert sim.channel_messages(RANDOM) == []
    outsider = await refused(client.chat_postEphemeral(channel=RANDOM, user=BOB, text="x"))
    assert outsider["error"] == "user_not_in_channel"


async def test_reactions_are_kept_per_message(sim: SlackSimulator, client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(channel=GENERAL, text="Delivered")

    await client.reactions_add(channel=GENERAL, name="white_check_mark", timestamp=posted["ts"])
    await client.reactions_add(channel=GENERAL, name="eyes", timestamp=posted["ts"])
    twice = await refused(
        client.reactions_add(channel=GENERAL, name="eyes", timestamp=posted["ts"])
    )
    await client.reactions_remove(channel=GENERAL, name="eyes", timestamp=posted["ts"])

    assert twice["error"] == "already_reacted"
    assert sim.channel_messages(GENERAL)[0].reactions == {"white_check_mark": ["U0BOT"]}
    gone = await refused(
        client.reactions_remove(channel=GENERAL, name="eyes", timestamp=posted["ts"])
    )
    assert gone["error"] == "no_reaction"


async def test_not_in_channel_until_the_bot_joins(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    before = await refused(client.chat_postMessage(channel=OUTSIDE, text="hello"))
    assert before["error"] == "not_in_channel"

    joined = await client.conversations_join(channel=OUTSIDE)
    after = await client.chat_postMessage(channel=OUTSIDE, text="hello")

    assert joined["channel"]["is_member"] is True
    assert after["channel"] == OUTSIDE
    assert [m.text for m in sim.channel_messages(OUTSIDE)] == ["hello"]


async def test_private_and_unknown_channels(client: AsyncWebClient) -> None:
    private_join = await refused(client.conversations_join(channel=SECRET))
    assert private_join["error"] == "method_not_supported_for_channel_type"
    # A private channel the bot is not in is invisible to it.
    assert (await refused(client.chat_postMessage(channel=SECRET, text="x")))[
        "error"
    ] == "channel_not_found"
    assert (await refused(client.chat_postMessage(channel="C0NOPE", text="x")))[
        "error"
    ] == "channel_not_found"
    assert (await refused(client.conversations_info(channel="C0NOPE")))[
        "error"
    ] == "channel_not_found"


async def test_users_info_and_conversations_info(client: AsyncWebClient) -> None:
    alice = await client.users_info(user=ALICE)
    general = await client.conversations_info(channel=GENERAL)

    assert alice["user"]["real_name"] == "Alice Agent"
    assert alice["user"]["tz"] == "America/Chicago"
    assert alice["user"]["tz_offset"] in (-6 * 3600, -5 * 3600)
    assert general["channel"]["name"] == "general"
    assert general["channel"]["is_member"] is True
    assert (await refused(client.users_info(user="U0NOBODY")))["error"] == "user_not_found"


async def test_form_encoded_calls_with_json_strings_are_understood(sim: SlackSimulator) -> None:
    form = {
        "token": sim.bot_token,
        "channel": GENERAL,
        "text": "from a form",
        "blocks": json.dumps([section("from a form")]),
    }
    async with httpx.AsyncClient() as http:
        answer = await http.post(f"{sim.api_url}chat.postMessage", data=form)
        # A JSON body cannot carry the token: Slack wants it in the Authorization header.
        json_token = await http.post(
            f"{sim.api_url}chat.postMessage",
            json={"token": sim.bot_token, "channel": GENERAL, "text": "x"},
        )

    assert answer.json()["ok"] is True
    assert json_token.json()["error"] == "not_authed"
    [message] = sim.channel_messages(GENERAL)
    assert message.blocks is not None
    assert message.blocks[0]["text"]["text"] == "from a form"
    [call, refused_call] = sim.calls_to("chat.postMessage")
    assert call.transport == "form"
    assert isinstance(call.args["blocks"], list)
    assert "token" not in call.args
    assert refused_call.error == "not_authed"


async def test_every_call_is_recorded(sim: SlackSimulator, client: AsyncWebClient) -> None:
    await client.chat_postMessage(channel=GENERAL, text="one")
    await refused(client.chat_postMessage(channel=OUTSIDE, text="two"))
    await refused(client.reactions_add(channel=GENERAL, name="eyes", timestamp="1600000000.000001"))

    assert [(c.method, c.ok, c.error) for c in sim.calls] == [
        ("chat.postMessage", True, None),
        ("chat.postMessage", False, "not_in_channel"),
        ("reactions.add", False, "message_not_found"),
    ]
    assert sim.calls[0].transport == "json"
    assert sim.calls[2].transport == "query"  # slack_sdk sends these params in the query string
    assert sim.calls[0].at <= sim.calls[1].at <= sim.calls[2].at


async def test_response_url_sink_records_and_shows_what_respond_sends(
    sim: SlackSimulator,
) -> None:
    ephemeral_url = sim.new_response_url(channel_id=GENERAL, user_id=ALICE)
    in_channel_url = sim.new_response_url(channel_id=GENERAL, user_id=ALICE)

    first = await AsyncWebhookClient(ephemeral_url).send(text="Only Alice sees this")
    second = await AsyncWebhookClient(in_channel_url).send(
        text="Everyone sees this", response_type="in_channel"
    )

    assert (first.status_code, first.body) == (200, "ok")
    assert second.status_code == 200
    [post] = sim.response_url_posts(ephemeral_url)
    assert post.body["text"] == "Only Alice sees this"
    assert post.user_id == ALICE
    assert [e.text for e in sim.ephemerals(channel=GENERAL, user=ALICE)] == ["Only Alice sees this"]
    assert [m.text for m in sim.channel_messages(GENERAL)] == ["Everyone sees this"]
    unknown = await AsyncWebhookClient(f"{sim.base_url}response/nope").send(text="x")
    assert unknown.status_code == 404


async def test_users_info_reports_workspace_roles() -> None:
    async with SlackSimulator(admins={"U0BOSS"}) as sim:
        sim.add_user("U0BOSS", "boss")
        sim.add_user("U0OWNER", "owner", is_owner=True, is_primary_owner=True)
        sim.add_user("U0PLAIN", "plain")
        sim.add_user("U0MADE", "made", is_admin=True)
        client = AsyncWebClient(token=sim.bot_token, base_url=sim.api_url)

        async def roles(user: str) -> tuple[bool, bool, bool]:
            info = (await client.users_info(user=user))["user"]
            return info["is_admin"], info["is_owner"], info["is_primary_owner"]

        assert await roles("U0BOSS") == (True, False, False)
        assert await roles("U0OWNER") == (False, True, True)
        assert await roles("U0PLAIN") == (False, False, False)
        assert await roles("U0MADE") == (True, False, False)
