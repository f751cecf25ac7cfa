"""Webhook ingest: the verified body is stored as it arrived, read back by the worker, and the
worker is woken once, when a burst of webhooks falls due, rather than once per webhook."""

from __future__ import annotations

import asyncio
import codecs
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.inbound.messages import from_webhook, ref_of_webhook, stored_message
from bot.inbound.service import INBOUND_SETTLE_SECONDS, InboundService
from storage import Store, open_store

LOCATION = "loc-1"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite:///{tmp_path / 'bridge.sqlite3'}")
    try:
        yield opened
    finally:
        await opened.close()


def webhook(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "type": "InboundMessage",
        "locationId": LOCATION,
        "webhookId": f"w-{n}",
        "messageId": f"m-{n}",
        "contactId": "c-1",
        "conversationId": "conv-1",
        "messageType": "SMS",
        "direction": "inbound",
        "body": f"reply {n}",
        "dateAdded": "2026-05-01T10:00:00.000Z",
        **extra,
    }


class Wakes:
    def __init__(self) -> None:
        self.count = 0
        self.woken = asyncio.Event()

    def __call__(self) -> None:
        self.count += 1
        self.woken.set()


async def test_the_verified_body_is_stored_as_it_arrived(store: Store) -> None:
    # Spacing and escapes as HighLevel's serialiser may write them: re-encoding would not.
    raw = json.dumps(webhook(1, body="caf\u00e9 \U0001f600"), indent=1).encode("utf-8")
    payload = json.loads(raw)  # as the verifier parsed it
    service = InboundService(store=store, wake_worker=lambda: None)
    assert await service.accept_webhook("w-1", "InboundMessage", payload, raw)
    event = await store.claim_inbound(now=float("inf"))
    assert event is not None
    assert event.event_type == "InboundMessage"
    assert event.payload_json == raw.decode("utf-8")
    assert stored_message(event.event_type, event.payload_json) == from_webhook(payload)


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"emailMessageId": "e-1", "status": "delivered"},
        {"emailMessageId": "", "dateAdded": 1_700_000_000_000},
        {"locationId": 7, "status": 3, "dateAdded": "not a date"},
        {"locationId": "", "dateAdded": "2025-02-17T09:28:14.869Z"},
        {"messageId": ""},
        {"messageId": 12},
        {"contactId": None},
        {"contactId": ["c-1"]},
    ],
)
def test_what_storing_a_webhook_reads_of_it_is_what_the_worker_reads(
    fields: dict[str, Any],
) -> None:
    payload = webhook(1, **fields)
    whole, ref = from_webhook(payload), ref_of_webhook(payload)
    if whole is None:
        assert ref is None
        return
    assert ref is not None
    assert (ref.key_id, ref.contact_id, ref.location_id, ref.status, ref.date_added) == (
        whole.key_id,
        whole.contact_id,
        whole.location_id,
        whole.status,
        whole.date_added,
    )


async def test_a_body_json_takes_only_as_bytes_is_stored_re_encoded(store: Store) -> None:
    service = InboundService(store=store, wake_worker=lambda: None)
    payloads = {}
    for n, raw in enumerate(
        [
            codecs.BOM_UTF8 + json.dumps(webhook(1, contactId="c-1")).encode(),
            json.dumps(webhook(2, contactId="c-2")).encode("utf-16"),
        ],
        start=1,
    ):
        payloads[n] = json.loads(raw)  # what the verifier parsed
        assert await service.accept_webhook(f"w-{n}", "InboundMessage", payloads[n], raw)
    for _ in payloads:
        event = await store.claim_inbound(now=float("inf"))
        assert event is not None
        assert event.event_type == "inbound_message"
        message = stored_message(event.event_type, event.payload_json)
        assert message is not None
        assert message == from_webhook(payloads[int(message.message_id.removeprefix("m-"))])


async def test_lone_surrogates_in_a_stored_body_are_replaced_when_read() -> None:
    # JSON.stringify writes half an emoji as an escape; it cannot be stored or posted as is.
    text = json.dumps(webhook(1)).replace("reply 1", "half \\ud83d")
    message = stored_message("InboundMessage", text)
    assert message is not None and message.body == "half \ufffd"


async def test_events_stored_by_the_previous_version_are_still_read(store: Store) -> None:
    """Before, a webhook was stored as the message's to_payload() under '<direction>_message'."""
    message = from_webhook(webhook(7))
    assert message is not None
    await store.enqueue_inbound(
        source="webhook",
        event_type="inbound_message",
        conversation_key=f"{LOCATION}:c-1",
        payload=message.to_payload(),
        dedupe_keys=["webhook:w-7"],
        ttl_seconds=60,
    )
    event = await store.claim_inbound(now=float("inf"))
    assert event is not None
    assert stored_message(event.event_type, event.payload_json) == message


async def test_a_burst_of_webhooks_wakes_the_worker_once_when_it_falls_due(store: Store) -> None:
    wakes = Wakes()
    service = InboundService(store=store, wake_worker=wakes)
    loop = asyncio.get_running_loop()
    stored_at = loop.time()
    for n in range(20):
        payload = webhook(n)
        assert await service.accept_webhook(
            f"w-{n}", "InboundMessage", payload, json.dumps(payload).encode()
        )
    assert wakes.count == 0  # none of them is due yet: waking now would find nothing
    await asyncio.wait_for(wakes.woken.wait(), 10 * INBOUND_SETTLE_SECONDS)
    assert loop.time() - stored_at >= INBOUND_SETTLE_SECONDS * 0.99
    assert wakes.count == 1
    # The next webhook after the wake gets a wake of its own.
    wakes.woken.clear()
    payload = webhook(99)
    assert await service.accept_webhook("w-99", "InboundMessage", payload)
    await asyncio.wait_for(wakes.woken.wait(), 10 * INBOUND_SETTLE_SECONDS)
    assert wakes.count == 2


async def test_a_polled_message_wakes_the_worker_at_once(store: Store) -> None:
    wakes = Wakes()
    service = InboundService(store=store, wake_worker=wakes)
    message = from_webhook(webhook(5))
    assert message is not None
    assert await service.accept_polled(message)
    assert wakes.count == 1
