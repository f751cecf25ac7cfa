"""What an outbox entry holds: the HighLevel request and what its Slack post shows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.compose import CheckedDraft, ReplyContext
from bot.files import SlackFileRef
from bot.highlevel import Contact, EmailReplyMode, MessageChannel, SendMessageRequest
from storage import OutboxEntry


@dataclass(frozen=True, slots=True)
class Display:
    """What the Slack post shows about the recipient, kept beside the request in the outbox."""

    contact_label: str
    contact_address: str | None
    created_contact: bool = False


def entry_payload(
    request: SendMessageRequest,
    display: Display,
    files: Sequence[SlackFileRef] = (),
    *,
    quiet_hours_override: bool = False,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "request": request.to_wire(),
        "display": {
            "contact_label": display.contact_label,
            "contact_address": display.contact_address,
            "created_contact": display.created_contact,
        },
    }
    if files:
        # The Slack files go with the send: uploaded by the worker, once each (outbox_files).
        payload["files"] = [file.to_json() for file in files]
    if quiet_hours_override:
        # The audit trail: someone chose "Send now anyway" inside the contact's quiet hours.
        payload["quiet_hours_override"] = True
    return payload


def files_of(entry: OutboxEntry) -> tuple[SlackFileRef, ...]:
    """The Slack files the send carries, in the order picked."""
    return tuple(SlackFileRef.from_json(item) for item in entry.payload.get("files") or ())


def is_purged(entry: OutboxEntry) -> bool:
    """Whether MESSAGE_RETENTION_DAYS purged the entry's message (storage/_retention.py)."""
    return bool(entry.payload.get("purged"))


def unpack_entry(entry: OutboxEntry) -> tuple[SendMessageRequest, Display]:
    payload = entry.payload
    display = payload.get("display") or {}
    return SendMessageRequest.model_validate(payload["request"]), Display(
        contact_label=str(display.get("contact_label") or entry.contact_id),
        contact_address=display.get("contact_address"),
        created_contact=bool(display.get("created_contact")),
    )


def build_request(
    checked: CheckedDraft,
    contact: Contact,
    reply: ReplyContext | None,
    *,
    default_from: str | None = None,
) -> SendMessageRequest:
    """The HighLevel send for a checked draft; an email without a From address of its own
    goes out from `default_from` (the sub-account's, `/highlevel from`), if any."""
    is_email = checked.channel is MessageChannel.EMAIL
    fields: dict[str, Any] = {
        "type": checked.channel,
        "contact_id": contact.id,
        "message": checked.message or None,
        "scheduled_timestamp": checked.schedule_at,
        "appointment_id": checked.appointment_id,
        "template_id": checked.template_id or None,
        "conversation_provider_id": checked.conversation_provider_id,
    }
    if is_email:
        fields |= {
            "subject": checked.subject,
            "html": checked.html,
            "email_cc": list(checked.cc) or None,
            "email_bcc": list(checked.bcc) or None,
            "email_from": checked.email_from or default_from,
            "email_to": checked.email_to,
        }
        if reply is not None and reply.email_thread_id:
            # The seed: threadId is "the message ID that contains multiple email messages in
            # the thread" and replyMessageId the "ID of message being replied to"; with both,
            # HighLevel files the reply in the customer's existing mailbox thread.
            fields |= {
                "thread_id": reply.email_thread_id,
                "reply_message_id": reply.reply_message_id,
                "email_reply_mode": _reply_mode(checked, reply),
            }
    else:
        fields |= {"from_number": checked.from_number, "to_number": checked.to_number}
    return SendMessageRequest(**fields)


def _reply_mode(checked: CheckedDraft, reply: ReplyContext) -> EmailReplyMode:
    """The person's choice in the composer, else what the reply was opened as."""
    if checked.reply_all is not None:
        return EmailReplyMode.REPLY_ALL if checked.reply_all else EmailReplyMode.REPLY
    return reply.email_reply_mode or EmailReplyMode.REPLY
