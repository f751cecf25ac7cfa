"""A conversation's messages appear in Slack in the order they were sent: by webhook, by polling,
and by both mixed; and every event about one contact is processed one at a time.

What is guaranteed (README, "Guarantees"): inbound events are ordered and processed one at a
time per contact of a sub-account, by when HighLevel says each message was sent (dateAdded).
A webhook waits INBOUND_SETTLE_SECONDS before it is processed, so the earlier messages of a
burst delivered concurrently or out of order are stored by then; polling stores each
conversation's new messages oldest first. A Slack post cannot be put before one already made:
a message that reaches the bridge only after a later one of its contact was posted (a webhook
that never came, found by the next poll) is posted after it, once, never dropped.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr

from bot.highlevel import HighLevelClient
from bot.inbound.polling import InboundPoller
from bot.inbound.service import INBOUND_SETTLE_SECONDS, InboundService
from bot.sandbox.highlevel import KATHERINE_JOHNSON_ID, HighLevelSimulator, SimMessage
from bot.sandbox.stack import INBOX_CHANNEL, SandboxStack
from storage import Store, open_store
from tests.e2e.conftest import eventually, stack_on, url_of
from tests.e2e.test_inbound import _sign, thread_of
from tests.e2e.test_outbound import text_of

CUSTOMER = KATHERINE_JOHNSON_ID  # no Slack thread yet: her messages open one in the inbox
FAST_SLACK = {"slack_post_rate": 50.0}


def shown(stack: SandboxStack, words: Sequence[str]) -> list[str]:
    """Which of `words` each post of the customer's inbox thread shows, top to bottom."""
    return [
        word
        for message in thread_of(stack, INBOX_CHANNEL)
        for word in words
        if word in text_of(message)
    ]


def minutes_ago(minutes: float) -> datetime:
    return datetime.now(UTC) - timedelta(minutes=minutes)


async def reply(sim: HighLevelSimulator, text: str, at: datetime | None = None) -> SimMessage:
    """The customer texts `text`. Each reply gets a dateAdded of its own (HighLevel's have
    milliseconds): `at`, or a clock that has moved past the previous reply's."""
    message = await sim.customer_reply(CUSTOMER, "WhatsApp", text)
    if at is not None:
        message.date_added = at
    else:
        await eventually(
            lambda: datetime.now(UTC) - message.date_added >= timedelta(milliseconds=2),
            interval=0.001,
        )
    return message


def polls(stack: SandboxStack) -> int:
    """How many polls have begun (each starts with a conversation search)."""
    return len(stack.highlevel.requests_to("GET", "/conversations/search"))


# ------------------------------------------------------------------------------------ polling


async def test_polled_replies_appear_in_the_order_they_were_sent(database_url: str) -> None:
    highlevel = HighLevelSimulator()
    words = ["reply-one", "reply-two", "reply-three"]
    for n, word in enumerate(words):
        await reply(highlevel, word, minutes_ago(3 - n))
    async with stack_on(
        database_url,
        highlevel=highlevel,
        webhooks=False,
        settings_overrides={"ghl_poll_seconds": 1, **FAST_SLACK},
    ) as stack:
        await eventually(lambda: len(shown(stack, words)) == 3)
        assert shown(stack, words) == words


async def test_replies_that_straddle_two_polls_appear_once_in_order(database_url: str) -> None:
    highlevel = HighLevelSimulator()
    words = ["reply-one", "reply-two", "reply-three", "reply-four", "reply-five"]
    await reply(highlevel, words[0], minutes_ago(2))
    second = await reply(highlevel, words[1], minutes_ago(1))
    async with stack_on(
        database_url,
        highlevel=highlevel,
        webhooks=False,
        settings_overrides={"ghl_poll_seconds": 1, **FAST_SLACK},
    ) as stack:
        await eventually(lambda: len(shown(stack, words)) == 2)
        # Sent in the same millisecond as the newest message the last poll saw.
        await reply(highlevel, words[2], second.date_added)
        await reply(highlevel, words[3])
        await eventually(lambda: len(shown(stack, words)) == 4)
        seen = polls(stack)
        await eventually(lambda: polls(stack) >= seen + 2)  # a whole poll saw them all again
        # A later message, shown after anything those polls could have queued again.
        await reply(highlevel, words[4])
        await eventually(lambda: words[4] in shown(stack, words))
        assert shown(stack, words) == words


async def test_more_than_a_page_of_messages_between_two_polls_all_appear_in_order(
    database_url: str,
) -> None:
    highlevel = HighLevelSimulator()
    async with stack_on(
        database_url,
        highlevel=highlevel,
        webhooks=False,
        settings_overrides={"ghl_poll_seconds": 1, **FAST_SLACK},
    ) as stack:
        await reply(highlevel, "msg-start")
        await eventually(lambda: shown(stack, ["msg-start"]) == ["msg-start"])
        await stack.stop_bridge()  # no poll until all 25 are there
        words = ["msg-start"] + [f"msg-{n:02d}" for n in range(25)]
        for word in words[1:]:
            await reply(highlevel, word)
        await stack.start_bridge()
        await eventually(lambda: len(shown(stack, words)) == len(words), within=20)
        assert shown(stack, words) == words


# ----------------------------------------------------------------------------------- webhooks


def webhook_body(message_id: str, text: str, sent_at: datetime, location_id: str) -> bytes:
    iso = sent_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    payload = {
        "type": "InboundMessage",
        "locationId": location_id,
        "contactId": CUSTOMER,
        "conversationId": "conversation-of-katherine",
        "messageId": message_id,
        "messageType": "WhatsApp",
        "direction": "inbound",
        "status": "delivered",
        "body": text,
        "dateAdded": iso,
        "webhookId": str(uuid.uuid4()),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
    }
    return json.dumps(payload, separators=(",", ":")).encode()


async def test_a_burst_of_webhooks_delivered_at_once_out_of_order_appears_in_order(
    database_url: str,
) -> None:
    key = Ed25519PrivateKey.generate()
    highlevel = HighLevelSimulator(signing_key=key)
    async with stack_on(database_url, highlevel=highlevel, settings_overrides=FAST_SLACK) as stack:
        words = [f"burst-{n:02d}" for n in range(12)]
        start = minutes_ago(1)
        bodies = [
            webhook_body(
                f"burst-message-{n}", word, start + timedelta(seconds=n), highlevel.location_id
            )
            for n, word in enumerate(words)
        ]
        shuffled = bodies[:]
        random.Random(11).shuffle(shuffled)
        assert shuffled != bodies
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
                    for body in shuffled
                )
            )
        assert [a.status_code for a in answers] == [200] * len(words)
        await eventually(lambda: len(shown(stack, words)) == len(words))
        assert shown(stack, words) == words


async def test_webhooks_delivered_one_after_another_newest_first_appear_in_order(
    database_url: str,
) -> None:
    """Each webhook is stored before the next is sent, the newest first: only the settle
    window keeps the first from being shown before the earlier ones arrive."""
    key = Ed25519PrivateKey.generate()
    highlevel = HighLevelSimulator(signing_key=key)
    async with stack_on(database_url, highlevel=highlevel, settings_overrides=FAST_SLACK) as stack:
        words = [f"late-{n:02d}" for n in range(6)]
        start = minutes_ago(1)
        bodies = [
            webhook_body(
                f"late-message-{n}", word, start + timedelta(seconds=n), highlevel.location_id
            )
            for n, word in enumerate(words)
        ]
        async with httpx.AsyncClient() as http:
            for body in reversed(bodies):
                answer = await http.post(
                    f"{stack.bridge_url}/ghl/webhooks",
                    content=body,
                    headers={
                        "content-type": "application/json",
                        "x-ghl-signature": _sign(key, body),
                    },
                )
                assert answer.status_code == 200
        await eventually(lambda: len(shown(stack, words)) == len(words))
        assert shown(stack, words) == words


# -------------------------------------------------------------------------------------- mixed


@pytest.fixture
def stack_overrides() -> dict[str, Any]:
    return dict(FAST_SLACK)


def delivery_of(stack: SandboxStack, message: SimMessage) -> Any:
    return next(
        d for d in stack.highlevel.webhook_deliveries if d.payload.get("messageId") == message.id
    )


async def test_a_message_polling_finds_before_later_webhooks_are_processed_comes_first(
    stack: SandboxStack,
) -> None:
    """Webhooks for 1, 3 and 4 come, 2's never does: the poll finds 2 while 3 and 4 are
    stored but not yet shown, and 2 appears between 1 and 3."""
    words = ["mixed-one", "mixed-two", "mixed-three", "mixed-four"]
    await reply(stack.highlevel, words[0])
    await eventually(lambda: shown(stack, words) == words[:1])
    await stack.stop_bridge()
    stack.highlevel.webhook_url = None  # deliveries are kept, to be handed over below
    later = [await reply(stack.highlevel, word) for word in words[1:]]
    store = await open_store(url_of(stack))
    highlevel = HighLevelClient(
        token=SecretStr(stack.highlevel.token),
        location_id=stack.highlevel.location_id,
        base_url=stack.highlevel.base_url,
    )
    try:
        inbound = InboundService(store=store, wake_worker=lambda: None)
        for message in later[1:]:  # the webhooks of 3 and 4, stored as the endpoint does
            delivery = delivery_of(stack, message)
            assert await inbound.accept_webhook(
                delivery.webhook_id, delivery.event_type, delivery.payload
            )
        poller = InboundPoller(highlevel=highlevel, inbound=inbound, store=store, interval=60)
        assert await poller.poll_once() == 1  # only 2 is new: 1, 3 and 4 are known
    finally:
        await highlevel.aclose()
        await store.close()
    await stack.start_bridge()
    await eventually(lambda: len(shown(stack, words)) == 4)
    assert shown(stack, words) == words


async def test_a_message_polling_finds_after_a_later_one_was_posted_comes_after_it_once(
    stack: SandboxStack,
) -> None:
    """2's webhook never comes and 3 is already in Slack when a poll finds 2: a post cannot
    be put before one already made, so 2 is shown next, once, and nothing after it is held."""
    words = ["late-one", "late-two", "late-three", "late-four"]
    await reply(stack.highlevel, words[0])
    await eventually(lambda: shown(stack, words) == words[:1])
    url = stack.highlevel.webhook_url
    stack.highlevel.webhook_url = None
    await reply(stack.highlevel, words[1])  # its webhook is lost
    stack.highlevel.webhook_url = url
    await reply(stack.highlevel, words[2])
    await eventually(lambda: shown(stack, words) == [words[0], words[2]])
    await stack.stop_bridge()
    assert stack.settings is not None
    stack.settings = stack.settings.model_copy(update={"ghl_poll_seconds": 1})
    await stack.start_bridge()  # now with polling, which finds 2
    await eventually(lambda: len(shown(stack, words)) == 3)
    await reply(stack.highlevel, words[3])
    await eventually(lambda: words[3] in shown(stack, words))
    assert shown(stack, words) == [words[0], words[2], words[1], words[3]]


# ------------------------------------------------------------------ the service/store boundary


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    opened = await open_store(database_url)
    try:
        yield opened
    finally:
        await opened.close()


def message_event(status: str, *, conversation_id: str | None, sent_at: float) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "type": "OutboundMessage",
        "locationId": "location-1",
        "contactId": "contact-1",
        "messageId": "message-1",
        "messageType": "SMS",
        "direction": "outbound",
        "status": status,
        "body": "Your table is ready",
        "dateAdded": int(sent_at * 1000),
    }
    if conversation_id is not None:
        payload["conversationId"] = conversation_id
    return payload


async def test_status_updates_of_one_message_with_and_without_conversation_id_are_serialised(
    store: Store,
) -> None:
    """Issue 11 item 14: both events are about one contact, so they share a key and the
    second is not taken while the first is being shown."""
    inbound = InboundService(store=store, wake_worker=lambda: None)
    sent_at = time.time() - 5
    with_id = message_event("delivered", conversation_id="conversation-1", sent_at=sent_at)
    without_id = message_event("read", conversation_id=None, sent_at=sent_at)
    assert await inbound.accept_webhook("webhook-1", "OutboundMessage", with_id)
    assert await inbound.accept_webhook("webhook-2", "OutboundMessage", without_id)
    later = time.time() + 60
    first = await store.claim_inbound(now=later)
    assert first is not None and first.payload["status"] == "delivered"
    assert await store.claim_inbound(now=later) is None  # not while the first is processing
    await store.finish_inbound(first.id)
    second = await store.claim_inbound(now=later)
    assert second is not None and second.payload["status"] == "read"
    assert second.conversation_key == first.conversation_key == "location-1:contact-1"


async def test_a_webhook_waits_to_settle_and_a_polled_message_does_not(
    store: Store,
) -> None:
    now = 1_800_000_000.0
    inbound = InboundService(store=store, wake_worker=lambda: None, clock=lambda: now)
    await inbound.accept_webhook(
        "webhook-1",
        "OutboundMessage",
        message_event("delivered", conversation_id=None, sent_at=now),
    )
    event = await store.claim_inbound(now=now + INBOUND_SETTLE_SECONDS / 2)
    assert event is None
    event = await store.claim_inbound(now=now + INBOUND_SETTLE_SECONDS)
    assert event is not None


async def test_webhooks_stored_out_of_order_are_taken_in_the_order_sent(
    store: Store,
) -> None:
    inbound = InboundService(store=store, wake_worker=lambda: None)
    sent = time.time() - 60
    for n in (3, 1, 2):
        payload = message_event("delivered", conversation_id=None, sent_at=sent + n)
        payload |= {"messageId": f"message-{n}", "body": f"body-{n}"}
        assert await inbound.accept_webhook(f"webhook-{n}", "InboundMessage", payload)
    taken = []
    while (event := await store.claim_inbound(now=time.time() + 60)) is not None:
        taken.append(event.payload["body"])
        await store.finish_inbound(event.id)
    assert taken == ["body-1", "body-2", "body-3"]
