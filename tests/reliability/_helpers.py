"""Shared pieces of the reliability suites: reading Slack as a person would, and signed webhooks."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bot.sandbox.highlevel import HighLevelSimulator
from bot.sandbox.slack import SlackMessage, SlackSimulator
from tests.e2e.conftest import eventually
from tests.e2e.test_outbound import text_of

__all__ = [
    "PostState",
    "SignedWebhook",
    "action_ids",
    "all_posts",
    "eventually",
    "inbound_payload",
    "outbound_bodies",
    "post_state",
    "posts_containing",
    "sign_ed25519",
    "signed_body",
    "text_of",
]


class PostState:
    """What a send's Slack post tells a person, read from its visible text."""

    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"
    OTHER = "other"


def post_state(message: SlackMessage) -> str:
    shown = text_of(message)
    if "May not have been sent" in shown:
        return PostState.UNKNOWN
    if "Not sent" in shown:
        return PostState.FAILED
    if "Sent" in shown or "Delivered" in shown:
        return PostState.SENT
    if "Sending" in shown:
        return PostState.SENDING
    return PostState.OTHER


def action_ids(message: SlackMessage) -> list[str]:
    return [
        element.get("action_id", "")
        for block in message.blocks or []
        if block.get("type") == "actions"
        for element in block.get("elements", [])
    ]


def all_posts(slack: SlackSimulator, channels: Iterable[str]) -> list[SlackMessage]:
    """Every bot message a person can see in `channels`: roots and their thread replies."""
    found: list[SlackMessage] = []
    for channel in channels:
        for root in slack.channel_messages(channel):
            if not root.bot_id:
                continue
            found.extend(m for m in slack.thread(channel, root.ts) if m.bot_id)
    return found


def posts_containing(posts: Iterable[SlackMessage], needles: Iterable[str]) -> dict[str, list[Any]]:
    """For each needle, the posts whose visible text contains it."""
    wanted = list(needles)
    found: dict[str, list[Any]] = {needle: [] for needle in wanted}
    for post in posts:
        shown = text_of(post)
        for needle in wanted:
            if needle in shown:
                found[needle].append(post)
    return found


def outbound_bodies(highlevel: HighLevelSimulator) -> Counter[str]:
    """How many times each text is stored at HighLevel as a message sent to a customer."""
    return Counter(m.body for m in highlevel.messages.values() if m.direction == "outbound")


def sign_ed25519(key: Ed25519PrivateKey, body: bytes) -> str:
    return base64.b64encode(key.sign(body)).decode()


@dataclass(frozen=True)
class SignedWebhook:
    body: bytes
    signature: str
    message_id: str
    text: str

    @property
    def headers(self) -> dict[str, str]:
        return {"content-type": "application/json", "x-ghl-signature": self.signature}


def inbound_payload(
    *,
    location_id: str,
    contact_id: str,
    conversation_id: str,
    text: str,
    message_id: str | None = None,
    webhook_id: str | None = None,
) -> dict[str, Any]:
    """An InboundMessage webhook body shaped like the simulator's (and HighLevel's) own."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    return {
        "type": "InboundMessage",
        "locationId": location_id,
        "attachments": [],
        "body": text,
        "contactId": contact_id,
        "contentType": "text/plain",
        "conversationId": conversation_id,
        "dateAdded": stamp,
        "direction": "inbound",
        "messageType": "SMS",
        "messageId": message_id or uuid.uuid4().hex[:20],
        "status": "delivered",
        "webhookId": webhook_id or str(uuid.uuid4()),
        "timestamp": stamp,
    }


def signed_body(key: Ed25519PrivateKey, payload: dict[str, Any]) -> SignedWebhook:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return SignedWebhook(
        body=body,
        signature=sign_ed25519(key, body),
        message_id=str(payload.get("messageId")),
        text=str(payload.get("body")),
    )
