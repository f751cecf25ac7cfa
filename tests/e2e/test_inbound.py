"""Two-way threads, end to end: HighLevel webhooks and polling → the right Slack thread, once."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr
from slack_sdk.web.async_client import AsyncWebClient

from bot.highlevel import HighLevelClient
from bot.inbound import InboundWorker, IncomingMessage, from_webhook
from bot.outbound.presenter import SendPresenter
from bot.posting.pacing import ChannelPacer
from bot.posting.poster import OnePoster, SlackPoster
from bot.sandbox.highlevel import (
    ADA_LOVELACE_ID,
    GRACE_HOPPER_ID,
    KATHERINE_JOHNSON_ID,
    HighLevelSimulator,
)
from bot.sandbox.slack import SlackMessage, SlackSimulator
from bot.sandbox.stack import AGENT_USER, INBOX_CHANNEL, SALES_CHANNEL, SandboxStack
from bot.tenancy.accounts import SubAccounts
from bot.tenancy.routing import ChannelRouting
from storage import InboundState, open_store
from tests.e2e.conftest import eventually, stack_on, stack_store
from tests.e2e.test_outbound import (
    action_ids,
    open_composer,
    quick_send,
    roots,
    sends,
    submit,
    text_of,
    went_out,
)


def thread_of(stack: SandboxStack, channel: str = SALES_CHANNEL) -> list[SlackMessage]:
    top = roots(stack, channel)
    return stack.slack.thread(channel, top[0].ts) if top else []


def replies_containing(stack: SandboxStack, needle: str, channel: str = SALES_CHANNEL) -> int:
    return sum(needle in text_of(m) for m in thread_of(stack, channel))


async def start_thread_with_ada(stack: SandboxStack) -> None:
    await quick_send(stack, "+1 415 555 0100 Your table is ready")
    await eventually(lambda: roots(stack) and went_out(roots(stack)[0]))
    await stack.highlevel.drain_webhooks()


async def test_customer_sms_reply_appears_in_its_thread(stack: SandboxStack) -> None:
    await start_thread_with_ada(stack)
    await stack.highlevel.customer_reply(ADA_LOVELACE_ID, "SMS", "On my way, 5 minutes")
    await eventually(lambda: replies_containing(stack, "On my way, 5 minutes") == 1)
    await stack.highlevel.drain_webhooks()
    await asyncio.sleep(0.3)
    assert replies_containing(stack, "On my way, 5 minutes") == 1
    assert len(roots(stack)) == 1


async def test_echo_of_our_own_send_is_not_posted_twice(stack: SandboxStack) -> None:
    await start_thread_with_ada(stack)
    await asyncio.sleep(0.3)
    thread = thread_of(stack)
    assert len(thread) == 1  # just the root that shows our send
    assert replies_containing(stack, "Sent from HighLevel") == 0


async def test_message_sent_from_the_highlevel_app_is_mirrored(stack: SandboxStack) -> None:
    await start_thread_with_ada(stack)
    await stack.highlevel.send_from_highlevel_app(
        ADA_LOVELACE_ID, "SMS", "Sent by Dana at the desk"
    )
    await eventually(lambda: replies_containing(stack, "Sent by Dana at the desk") == 1)
    mirrored = next(m for m in thread_of(stack) if "Sent by Dana" in text_of(m))
    assert "Sent from HighLevel" in text_of(mirrored)


async def test_new_contacts_message_opens_a_thread_in_the_inbox(stack: SandboxStack) -> None:
    await stack.highlevel.customer_reply(KATHERINE_JOHNSON_ID, "WhatsApp", "Is the shop open?")
    root = (await eventually(lambda: roots(stack, INBOX_CHANNEL)))[0]
    assert "Katherine Johnson" in text_of(root)
    assert "Is the shop open?" in text_of(root)
    assert "reply" in action_ids(root)
    # The next message joins that thread.
    await stack.highlevel.customer_reply(KATHERINE_JOHNSON_ID, "WhatsApp", "Hello?")
    await eventually(lambda: replies_containing(stack, "Hello?", INBOX_CHANNEL) == 1)
    assert len(roots(stack, INBOX_CHANNEL)) == 1


async def test_status_changes_update_our_post(stack: SandboxStack) -> None:
    await start_thread_with_ada(stack)
    message_id = (
        sends(stack)
        and stack.highlevel.messages_for(
            stack.highlevel.conversation_for(ADA_LOVELACE_ID).id  # type: ignore[union-attr]
        )[-1].id
    )
    assert message_id
    await stack.highlevel.set_message_status(message_id, "failed", error="Carrier rejected")
    root = await eventually(lambda: (r := roots(stack)) and "retry" in action_ids(r[0]) and r[0])
    assert "Carrier rejected" in text_of(root)
    # A person presses Retry: a new send, once.
    for _ in range(2):
        await stack.driver.block_action(
            "retry", user_id=AGENT_USER, channel_id=SALES_CHANNEL, message_ts=root.ts
        )
    await eventually(lambda: len(sends(stack)) == 2)
    await asyncio.sleep(0.3)
    assert len(sends(stack)) == 2


async def test_email_reply_threads_and_the_modal_reply_joins_the_mailbox_thread(
    stack: SandboxStack,
) -> None:
    view_id = await open_composer(stack, "grace@example.com", command="/sendemail")
    await submit(stack, view_id, {"channel": "Email", "subject": "Your quote", "message": "Hi!"})
    await eventually(lambda: roots(stack) and went_out(roots(stack)[0]))
    first = sends(stack)[0]
    assert first["subject"] == "Your quote"
    conversation = stack.highlevel.conversation_for(GRACE_HOPPER_ID)
    assert conversation is not None
    thread_id = stack.highlevel.messages_for(conversation.id)[-1].id

    await stack.highlevel.customer_reply(
        GRACE_HOPPER_ID, "Email", "Looks good, cc'ing my partner", cc=["partner@example.com"]
    )
    await eventually(lambda: replies_containing(stack, "cc'ing my partner") == 1)
    inbound_email = [
        e for e in stack.highlevel.emails_for(conversation.id) if e.direction == "inbound"
    ][-1]

    result = await stack.driver.block_action(
        "reply", user_id=AGENT_USER, channel_id=SALES_CHANNEL, message_ts=roots(stack)[0].ts
    )
    assert result.status == 200
    view = (await eventually(lambda: stack.slack.open_views(AGENT_USER)))[-1]
    blocks = {b.get("block_id"): b for b in view.view["blocks"]}
    assert blocks["subject"]["element"]["initial_value"] == "Re: Your quote"
    assert blocks["cc"]["element"]["initial_value"] == "partner@example.com"
    await submit(stack, view.id, {"message": "Great, we'll book it."})
    await eventually(lambda: len(sends(stack)) == 2)
    reply = sends(stack)[1]
    assert reply["type"] == "Email"
    assert reply["threadId"] == thread_id
    assert reply["replyMessageId"] == inbound_email.id
    assert reply["emailReplyMode"] == "reply_all"
    assert reply["subject"] == "Re: Your quote"
    assert reply["emailCc"] == ["partner@example.com"]
    assert len(roots(stack)) == 1  # it all stays in one Slack thread


async def test_shortcut_outside_a_mapped_thread_explains(stack: SandboxStack) -> None:
    message = stack.slack.post_as_user(SALES_CHANNEL, AGENT_USER, "just chatting")
    result = await stack.driver.message_action(
        "reply_via_highlevel", user_id=AGENT_USER, channel_id=SALES_CHANNEL, message_ts=message.ts
    )
    assert result.status == 200
    text = await eventually(
        lambda: "\n".join(e.text for e in stack.slack.ephemerals(user=AGENT_USER))
    )
    assert "/sendsms" in text
    assert stack.slack.open_views(AGENT_USER) == []


async def test_shortcut_on_a_customer_message_opens_the_reply_composer(stack: SandboxStack) -> None:
    await start_thread_with_ada(stack)
    await stack.highlevel.customer_reply(ADA_LOVELACE_ID, "SMS", "Can I bring a friend?")
    await eventually(lambda: replies_containing(stack, "bring a friend") == 1)
    customer = next(m for m in thread_of(stack) if "bring a friend" in text_of(m))
    await stack.driver.message_action(
        "reply_via_highlevel", user_id=AGENT_USER, channel_id=SALES_CHANNEL, message_ts=customer.ts
    )
    view = (await eventually(lambda: stack.slack.open_views(AGENT_USER)))[-1]
    await submit(stack, view.id, {"message": "Of course!"})
    await eventually(lambda: len(sends(stack)) == 2)
    assert sends(stack)[1] == {"type": "SMS", "contactId": ADA_LOVELACE_ID, "message": "Of course!"}
    await eventually(lambda: replies_containing(stack, "Of course!") == 1)


def _sign(key: Ed25519PrivateKey, body: bytes) -> str:
    return base64.b64encode(key.sign(body)).decode()


def _inbound_body(text: str, *, timestamp: str | None = None) -> bytes:
    payload = {
        "type": "InboundMessage",
        "locationId": "sbxLocation000000001",
        "contactId": ADA_LOVELACE_ID,
        "conversationId": "forged-conversation",
        "messageId": f"forged-{uuid.uuid4().hex[:12]}",
        "messageType": "SMS",
        "direction": "inbound",
        "body": text,
        "webhookId": str(uuid.uuid4()),
        "timestamp": timestamp or time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
    }
    return json.dumps(payload, separators=(",", ":")).encode()


async def test_forged_unsigned_tampered_and_stale_webhooks_are_rejected(
    database_url: str,
) -> None:
    key = Ed25519PrivateKey.generate()
    highlevel = HighLevelSimulator(signing_key=key)
    async with stack_on(database_url, highlevel=highlevel) as stack:
        url = f"{stack.bridge_url}/ghl/webhooks"
        good = _inbound_body("genuine")
        stale = _inbound_body("stale", timestamp="2020-01-01T00:00:00.000Z")
        tampered = good.replace(b"genuine", b"GENUINE")
        attempts = [
            (b"unsigned", _inbound_body("unsigned"), {}),
            (
                b"forged",
                _inbound_body("forged"),
                {"x-ghl-signature": _sign(Ed25519PrivateKey.generate(), _inbound_body("forged"))},
            ),
            (b"tampered", tampered, {"x-ghl-signature": _sign(key, good)}),
            (b"stale", stale, {"x-ghl-signature": _sign(key, stale)}),
        ]
        async with httpx.AsyncClient() as http:
            for _name, body, headers in attempts:
                response = await http.post(
                    url, content=body, headers={"content-type": "application/json", **headers}
                )
                assert response.status_code == 401, (_name, response.text)
            accepted = await http.post(
                url,
                content=good,
                headers={"content-type": "application/json", "x-ghl-signature": _sign(key, good)},
            )
            assert accepted.status_code == 200
            replay = await http.post(
                url,
                content=good,
                headers={"content-type": "application/json", "x-ghl-signature": _sign(key, good)},
            )
            assert replay.status_code == 200 and replay.json()["stored"] is False
        # Only the genuine one is shown (in the inbox: no thread yet), once.
        root = (await eventually(lambda: roots(stack, INBOX_CHANNEL)))[0]
        await asyncio.sleep(0.3)
        shown = "\n".join(text_of(m) for m in stack.slack.channel_messages(INBOX_CHANNEL))
        assert "genuine" in shown
        assert all(word not in shown for word in ("unsigned", "forged", "GENUINE", "stale"))
        assert len(roots(stack, INBOX_CHANNEL)) == 1 and root


async def test_the_same_webhook_delivered_twice_is_posted_once(stack: SandboxStack) -> None:
    await start_thread_with_ada(stack)
    await stack.highlevel.customer_reply(ADA_LOVELACE_ID, "SMS", "Twice delivered?")
    await eventually(lambda: replies_containing(stack, "Twice delivered?") == 1)
    delivery = next(
        d for d in stack.highlevel.webhook_deliveries if d.payload.get("body") == "Twice delivered?"
    )
    async with httpx.AsyncClient() as http:
        again = await http.post(
            f"{stack.bridge_url}/ghl/webhooks",
            content=delivery.body,
            headers={"content-type": "application/json", "x-ghl-signature": delivery.signature},
        )
    assert again.status_code == 200
    await asyncio.sleep(0.5)
    assert replies_containing(stack, "Twice delivered?") == 1


async def test_polling_with_webhooks_off_finds_each_message_once(database_url: str) -> None:
    async with stack_on(
        database_url, webhooks=False, settings_overrides={"ghl_poll_seconds": 1}
    ) as stack:
        await start_thread_with_ada(stack)
        await stack.highlevel.customer_reply(ADA_LOVELACE_ID, "SMS", "Polled reply")
        await eventually(lambda: replies_containing(stack, "Polled reply") == 1)
        await asyncio.sleep(2.5)  # two more polls see the same message
        assert replies_containing(stack, "Polled reply") == 1
        await stack.stop_bridge()
        await stack.start_bridge()  # the cursor and the dedupe keys survive a restart
        await stack.highlevel.customer_reply(ADA_LOVELACE_ID, "SMS", "After the restart")
        await eventually(lambda: replies_containing(stack, "After the restart") == 1)
        await asyncio.sleep(1.5)
        assert replies_containing(stack, "Polled reply") == 1
        assert replies_containing(stack, "After the restart") == 1
        assert len(thread_of(stack)) == 3


async def test_a_burst_of_200_across_5_channels_arrives_in_order_once(database_url: str) -> None:
    slack = SlackSimulator(post_rate_per_second=10, post_burst=5)
    channels = [f"C0BURST{i}" for i in range(5)]
    for index, channel in enumerate(channels):
        slack.add_channel(channel, f"burst-{index}")
    highlevel = HighLevelSimulator()
    contacts = [
        highlevel.add_contact(first_name=f"Burst{i}", phone=f"+1415555030{i}").id for i in range(5)
    ]
    async with stack_on(
        database_url,
        slack=slack,
        highlevel=highlevel,
        settings_overrides={"slack_post_rate": 8.0},
    ) as stack:
        for channel, number in zip(channels, range(5), strict=True):
            await quick_send(stack, f"+1 415 555 030{number} hello", channel_id=channel)
        await eventually(lambda: all(roots(stack, c) for c in channels), within=15)
        await stack.highlevel.drain_webhooks()
        for n in range(40):
            for contact in contacts:
                await highlevel.customer_reply(contact, "SMS", f"msg {n:02d}")
        await highlevel.drain_webhooks()

        def complete() -> bool:
            return all(len(thread_of(stack, c)) == 41 for c in channels)

        await eventually(complete, within=60)
        for channel in channels:
            bodies = [text_of(m) for m in thread_of(stack, channel)[1:]]
            numbers = [int(b.split("msg ")[1][:2]) for b in bodies]
            assert numbers == list(range(40)), channel
        assert sum(len(slack.orphaned_replies()) for _ in [0]) == 0


async def _inbound_settled(stack: SandboxStack) -> bool:
    async with stack_store(stack) as store:
        pending = await store.count_inbound(InboundState.PENDING)
        processing = await store.count_inbound(InboundState.PROCESSING)
    return pending == processing == 0


async def test_status_webhooks_for_one_message_arriving_together_post_it_once(
    database_url: str,
) -> None:
    key = Ed25519PrivateKey.generate()
    highlevel = HighLevelSimulator(signing_key=key)
    async with stack_on(database_url, highlevel=highlevel) as stack:
        message_id = f"twice-{uuid.uuid4().hex[:12]}"
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())

        def webhook(status: str, **extra: str) -> bytes:
            payload = {
                "type": "OutboundMessage",
                "locationId": highlevel.location_id,
                "contactId": ADA_LOVELACE_ID,
                "messageId": message_id,
                "messageType": "SMS",
                "direction": "outbound",
                "source": "app",
                "body": "Sent by Dana, reported twice",
                "status": status,
                "dateAdded": stamp,
                "webhookId": str(uuid.uuid4()),
                "timestamp": stamp,
                **extra,
            }
            return json.dumps(payload, separators=(",", ":")).encode()

        # HighLevel reports one message twice, as it changes status; the first report carries
        # the conversation, the second does not. Whichever is posted first takes a while.
        bodies = [
            webhook("sent", conversationId=f"conv-{message_id}"),
            webhook("delivered"),
        ]
        stack.slack.faults.delay_next("chat.postMessage", 0.5)
        async with httpx.AsyncClient() as http:
            answers = await asyncio.gather(
                *(
                    http.post(
                        f"{stack.bridge_url}/ghl/webhooks",
                        content=body,
                        headers={
                            "content-type": "application/json",
                            "x-ghl-signature": _sign(key, body),
                        },
                    )
                    for body in bodies
                )
            )
        assert [a.json()["stored"] for a in answers] == [True, True]
        await eventually(lambda: roots(stack, INBOX_CHANNEL))
        await eventually(lambda: _inbound_settled(stack))

        posts = [
            m
            for root in roots(stack, INBOX_CHANNEL)
            for m in stack.slack.thread(INBOX_CHANNEL, root.ts)
            if "reported twice" in text_of(m)
        ]
        assert len(posts) == 1, [text_of(m)[:80] for m in posts]
        # It shows the later status, whichever report was posted.
        assert "Delivered" in text_of(posts[0]) or "white_check_mark" in posts[0].reactions
        # One row at most: ghl_message_id is unique in `messages`.
        async with stack_store(stack) as store:
            record = await store.get_message_by_ghl_id(message_id)
        assert record is not None
        assert (record.status, record.slack_ts) == ("delivered", posts[0].ts)


async def test_the_worker_shows_a_message_once_when_two_of_its_events_run_together(
    database_url: str,
) -> None:
    """The inbound worker on its own: two events of one message in different queues (claimed
    at the same time) post it once, in either order, however the service keys them."""
    message_id = f"together-{uuid.uuid4().hex[:12]}"

    def event(status: str, conversation_id: str | None) -> IncomingMessage:
        payload = {
            "type": "OutboundMessage",
            "contactId": ADA_LOVELACE_ID,
            "messageId": message_id,
            "messageType": "SMS",
            "direction": "outbound",
            "source": "app",
            "body": "Sent by Dana, processed together",
            "status": status,
        } | ({"conversationId": conversation_id} if conversation_id else {})
        message = from_webhook(payload)
        assert message is not None
        return message

    async with (
        HighLevelSimulator() as highlevel,
        SlackSimulator(post_rate_per_second=1000.0, post_burst=1000) as slack,
        await open_store(database_url) as store,
    ):
        slack.add_channel(INBOX_CHANNEL, "inbox")
        client = HighLevelClient(
            token=SecretStr(highlevel.token),
            location_id=highlevel.location_id,
            base_url=highlevel.base_url,
        )
        poster = SlackPoster(
            AsyncWebClient(token=slack.bot_token, base_url=slack.api_url),
            ChannelPacer(rate_per_second=100.0, burst=100),
        )
        await store.save_location(highlevel.location_id, auth="pit")
        accounts = SubAccounts(store, lambda _location: client)
        worker = InboundWorker(
            store=store,
            slack=OnePoster(poster),
            presenter=SendPresenter(store=store, slack=OnePoster(poster)),
            accounts=accounts,
            routing=ChannelRouting(store, accounts, default_inbox=INBOX_CHANNEL),
        )
        for index, (message, queue) in enumerate(
            [(event("sent", "conversation-1"), "conversation-1"), (event("delivered", None), "x")]
        ):
            await store.enqueue_inbound(
                source="webhook",
                event_type="outbound_message",
                conversation_key=queue,
                payload=message.to_payload(),
                dedupe_keys=[f"test:{index}"],
                ttl_seconds=60,
            )
        slack.faults.delay_next("chat.postMessage", 0.5)  # the first post takes a while
        stopping = asyncio.Event()
        running = asyncio.create_task(worker.run(stopping))
        try:
            while await store.count_inbound(InboundState.DONE) < 2:
                assert not running.done()
                await asyncio.sleep(0.02)
        finally:
            stopping.set()
            await running
            await client.aclose()

        posts = [m for m in slack.channel_messages(INBOX_CHANNEL) if "together" in text_of(m)]
        replies = [
            m for root in posts for m in slack.thread(INBOX_CHANNEL, root.ts) if m.ts != root.ts
        ]
        assert (len(posts), replies) == (1, [])
        record = await store.get_message_by_ghl_id(message_id)
        assert record is not None
        assert (record.status, record.slack_ts) == ("delivered", posts[0].ts)


async def test_a_send_whose_post_slack_refuses_for_good_does_not_hold_up_its_conversation(
    stack: SandboxStack,
) -> None:
    await start_thread_with_ada(stack)
    [sent] = [m for m in stack.highlevel.messages.values() if m.body == "Your table is ready"]
    updates = len(stack.slack.calls_to("chat.update"))

    # Someone deleted the send's post: Slack refuses its update, and would again.
    stack.slack.faults.inject("chat.update", status=200, error="message_not_found")
    await stack.highlevel.set_message_status(sent.id, "delivered")
    await stack.highlevel.customer_reply(ADA_LOVELACE_ID, "SMS", "Great, on my way")

    # The reply after it is shown at once, not behind retries of the refused update.
    await eventually(lambda: replies_containing(stack, "Great, on my way") == 1, within=5)
    assert len(stack.slack.calls_to("chat.update")) == updates + 1  # tried once
