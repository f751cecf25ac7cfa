"""Plain records the simulator hands out: requests as received, customer replies, uploads."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from ._models import SimContact, SimEmail, SimMessage
from ._webhooks import WebhookDelivery

__all__ = [
    "AmbiguousCustomer",
    "AttachmentSend",
    "CustomerReply",
    "RequestRecord",
    "SignedUpload",
    "Upload",
    "trace_id",
]


@dataclass
class RequestRecord:
    """One request as received. ``body`` is the parsed JSON (or the multipart form fields)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any = None
    status: int = 0  # 0 while in flight, 499 if the client gave up first
    received_at: float = field(default_factory=time.time)


class AmbiguousCustomer(LookupError):
    """More than one contact answers to the name a person gave."""


@dataclass
class CustomerReply:
    """What ``reply_as`` did: the stored message (or email) and the webhook events it queued."""

    contact: SimContact
    channel: str
    item: SimMessage | SimEmail
    deliveries: list[WebhookDelivery]

    def to_json(self) -> dict[str, Any]:
        """The sandbox route's answer: ids to look the reply up by, and the webhook's fate."""
        item = self.item
        answer: dict[str, Any] = {
            "contactId": self.contact.id,
            "contactName": self.contact.name,
            "channel": self.channel,
            "conversationId": item.conversation_id,
            "messageId": item.thread_id if isinstance(item, SimEmail) else item.id,
        }
        if isinstance(item, SimEmail):
            answer["emailMessageId"] = item.id
        answer["webhooks"] = [
            {
                "url": d.url,
                "webhookId": d.webhook_id,
                "outcome": d.outcome,
                "attempts": list(d.attempts),
            }
            for d in self.deliveries
        ]
        answer["note"] = self.webhook_note()
        return answer

    def webhook_note(self) -> str:
        """One sentence on what became of the InboundMessage webhook."""
        if not self.deliveries or self.deliveries[0].url is None:
            return (
                "No webhook sent (the sandbox has no --webhook-url): the bridge finds the reply "
                "when it next polls HighLevel."
            )
        delivery = self.deliveries[0]
        last = delivery.attempts[-1] if delivery.attempts else None
        if delivery.outcome == "delivered":
            return f"Webhook delivered to {delivery.url} (HTTP {last})."
        if delivery.outcome == "dropped":
            return (
                f"Webhook to {delivery.url} failed ({last}). HighLevel retries only a 429, so "
                "the bridge will find this reply only by polling."
            )
        if last == 429:
            return (
                f"Webhook to {delivery.url} answered 429; it is retried later, as HighLevel does."
            )
        return f"Webhook to {delivery.url} queued; no answer yet."

    async def first_attempts(self) -> None:
        """Wait until each of its webhooks has had a first answer (bound it with a timeout)."""
        for delivery in self.deliveries:
            await delivery.tried.wait()


@dataclass
class Upload:
    """A file the simulator serves at ``url`` (under ``FILES_PREFIX``, no auth)."""

    filename: str
    content_type: str
    data: bytes
    url: str
    file_id: str = ""
    # "upload" (multipart), "signed" (initiate, PUT, complete) or "customer" (a customer's media)
    via: str = "upload"
    location_id: str = ""
    conversation_id: str = ""
    downloads: int = 0  # GETs of the URL (HEADs not counted)


@dataclass
class SignedUpload:
    """One ``upload/initiate``: a signed URL waiting for its PUT, then for ``upload/complete``."""

    upload_id: str
    token: str  # the random part of the signed URL's path
    file_path: str
    filename: str
    content_type: str
    channel: str
    location_id: str
    conversation_id: str
    max_bytes: int
    expires_at_ms: int  # Unix milliseconds, as the answer's expiresAt
    data: bytes | None = None  # None until a PUT succeeds
    puts: int = 0  # successful PUTs (a second one replaces the bytes, as in GCS)
    completed: Upload | None = None


@dataclass
class AttachmentSend:
    """One accepted send that carried attachments (``POST /conversations/messages``)."""

    channel: str
    contact_id: str
    attachments: list[str]
    message_ids: list[str]  # GMB: one per piece; Email: the thread id
    email_message_id: str | None
    source: str  # "api" or "app"


def trace_id() -> str:
    return str(uuid.uuid4())
