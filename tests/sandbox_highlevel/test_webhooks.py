"""Webhooks: Ed25519 signature over the raw body, envelope, shapes, and retry-only-on-429."""

from __future__ import annotations

import base64
import json
import socket
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from bot.sandbox.highlevel import (
    ADA_LOVELACE_ID,
    KATHERINE_JOHNSON_ID,
    HighLevelSimulator,
)
from tests.sandbox_highlevel.conftest import Receiver

SMS = {"type": "SMS", "contactId": ADA_LOVELACE_ID, "message": "Your table is ready"}


def events(receiver: Receiver) -> list[dict[str, Any]]:
    return [json.loads(body) for body in receiver.bodies]


async def test_signature_verifies_over_the_raw_body(
    api: httpx.AsyncClient, sim: HighLevelSimulator, receiver: Receiver
) -> None:
    sim.webhook_url = receiver.url
    sent = (await api.post("/conversations/messages", json=SMS)).json()
    await sim.drain_webhooks()
    assert len(receiver.bodies) == 1
    key = load_pem_public_key(sim.public_key_pem.encode())
    assert isinstance(key, Ed25519PublicKey)
    body, signature = receiver.bodies[0], receiver.signatures[0]
    assert signature is not None
    key.verify(base64.b64decode(signature), body)  # raises if wrong
    with pytest.raises(InvalidSignature):
        key.verify(base64.b64decode(signature), body.replace(b"ready", b"READY"))
    event = json.loads(body)
    assert event["type"] == "OutboundMessage"
    assert event["messageId"] == sent["messageId"]
    assert event["conversationId"] == sent["conversationId"]
    assert (event["source"], event["direction"], event["messageType"]) == ("api", "outbound", "SMS")
    assert event["body"] == "Your table is ready" and event["locationId"] == sim.location_id
    uuid.UUID(event["webhookId"])
    stamp = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
    assert abs(datetime.now(UTC) - stamp) < timedelta(seconds=5)
    assert event["timestamp"].endswith("Z")


async def test_signature_is_not_valid_under_another_key(
    api: httpx.AsyncClient, sim: HighLevelSimulator, receiver: Receiver
) -> None:
    sim.webhook_url = receiver.url
    await api.post("/conversations/messages", json=SMS)
    await sim.drain_webhooks()
    other = HighLevelSimulator()
    key = load_pem_public_key(other.public_key_pem.encode())
    assert isinstance(key, Ed25519PublicKey)
    signature = receiver.signatures[0]
    assert signature is not None
    with pytest.raises(InvalidSignature):
        key.verify(base64.b64decode(signature), receiver.bodies[0])


async def test_429_is_retried_then_delivered(
    api: httpx.AsyncClient, sim: HighLevelSimulator, receiver: Receiver
) -> None:
    sim.webhook_url = receiver.url
    receiver.answers = [429, 200]
    await api.post("/conversations/messages", json=SMS)
    await sim.drain_webhooks()
    assert len(receiver.bodies) == 2
    assert receiver.bodies[0] == receiver.bodies[1]  # same event, same webhookId
    (delivery,) = sim.webhook_deliveries
    assert delivery.attempts == [429, 200] and delivery.outcome == "delivered"


async def test_500_is_not_retried_and_the_event_is_lost(
    api: httpx.AsyncClient, sim: HighLevelSimulator, receiver: Receiver
) -> None:
    sim.webhook_url = receiver.url
    receiver.answers = [500]
    await api.post("/conversations/messages", json=SMS)
    await sim.drain_webhooks()
    assert len(receiver.bodies) == 1
    (delivery,) = sim.webhook_deliveries
    assert delivery.attempts == [500] and delivery.outcome == "dropped"


async def test_429_retries_give_up_after_max_attempts(receiver: Receiver) -> None:
    sim = HighLevelSimulator(
        webhook_url=receiver.url, webhook_retry_delay=0.01, webhook_max_attempts=3
    )
    await sim.start()
    try:
        receiver.answers = [429] * 10
        await sim.customer_reply(ADA_LOVELACE_ID, "SMS", "anyone there?")
        await sim.drain_webhooks()
    finally:
        await sim.stop()
    assert len(receiver.bodies) == 3
    assert sim.webhook_deliveries[0].outcome == "dropped"


async def test_unreachable_receiver_drops_the_event(sim: HighLevelSimulator) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sim.webhook_url = f"http://127.0.0.1:{port}/nobody-home"
    await sim.customer_reply(ADA_LOVELACE_ID, "SMS", "hello?")
    await sim.drain_webhooks()
    (delivery,) = sim.webhook_deliveries
    assert delivery.outcome == "dropped" and len(delivery.attempts) == 1
    assert isinstance(delivery.attempts[0], str)  # the connection error's name


async def test_without_url_events_are_recorded_as_undeliverable(sim: HighLevelSimulator) -> None:
    await sim.customer_reply(ADA_LOVELACE_ID, "SMS", "hi")
    (delivery,) = sim.webhook_deliveries
    assert delivery.outcome == "no_url" and delivery.attempts == []


async def test_email_events_carry_the_email_fields(
    api: httpx.AsyncClient, sim: HighLevelSimulator, receiver: Receiver
) -> None:
    sim.webhook_url = receiver.url
    sent = (
        await api.post(
            "/conversations/messages",
            json={
                "type": "Email",
                "contactId": KATHERINE_JOHNSON_ID,
                "subject": "Trajectory",
                "html": "<p>numbers attached</p>",
                "emailCc": ["cc@example.com"],
                "emailBcc": ["bcc@example.com"],
            },
        )
    ).json()
    reply = await sim.customer_reply(
        KATHERINE_JOHNSON_ID, "Email", "Checked them.", cc=["team@example.com"]
    )
    await sim.drain_webhooks()
    outbound, inbound = events(receiver)
    assert outbound["type"] == "OutboundMessage" and outbound["messageType"] == "Email"
    assert outbound["emailMessageId"] == sent["emailMessageId"]
    assert outbound["threadId"] == outbound["messageId"] == sent["messageId"]
    assert outbound["to"] == ["katherine@example.com"]
    assert (outbound["cc"], outbound["bcc"]) == (["cc@example.com"], ["bcc@example.com"])
    assert outbound["subject"] == "Trajectory" and outbound["provider"]
    assert outbound["from"].endswith(">")
    assert inbound["type"] == "InboundMessage" and inbound["direction"] == "inbound"
    assert inbound["emailMessageId"] == reply.id != sent["emailMessageId"]
    assert inbound["threadId"] == sent["messageId"]
    assert inbound["subject"] == "Re: Trajectory" and inbound["cc"] == ["team@example.com"]
    assert inbound["from"] == "Katherine Johnson <katherine@example.com>"


async def test_app_sends_and_status_changes_fire_outbound_events(
    sim: HighLevelSimulator, receiver: Receiver
) -> None:
    sim.webhook_url = receiver.url
    message = await sim.send_from_highlevel_app(ADA_LOVELACE_ID, "SMS", "Sent by a person")
    await sim.set_message_status(message.id, "failed", error="Carrier rejected")
    await sim.drain_webhooks()
    created, failed = events(receiver)
    assert created["source"] == "app" and created["userId"]
    assert created["messageId"] == failed["messageId"] == message.id
    assert failed["type"] == "OutboundMessage" and failed["status"] == "failed"
    assert failed["error"] == "Carrier rejected"
    assert created["webhookId"] != failed["webhookId"]


async def test_events_arrive_in_the_order_they_happened(
    sim: HighLevelSimulator, receiver: Receiver
) -> None:
    sim.webhook_url = receiver.url
    for text in ("one", "two", "three", "four"):
        await sim.customer_reply(ADA_LOVELACE_ID, "SMS", text)
    await sim.drain_webhooks()
    assert [e["body"] for e in events(receiver)] == ["one", "two", "three", "four"]


async def test_embedded_app_runs_its_own_background_delivery(receiver: Receiver) -> None:
    sim = HighLevelSimulator(webhook_url=receiver.url)
    runner = web.AppRunner(sim.app)  # served by someone else's runner, not sim.start()
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        async with httpx.AsyncClient(
            base_url=f"http://{host}:{port}",
            headers={"Authorization": f"Bearer {sim.token}", "Version": "2021-04-15"},
        ) as client:
            response = await client.post("/conversations/messages", json=SMS)
        assert response.status_code == 200
        await sim.drain_webhooks()
        assert [json.loads(b)["messageId"] for b in receiver.bodies] == [
            response.json()["messageId"]
        ]
    finally:
        await runner.cleanup()
