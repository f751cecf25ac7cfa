"""Where the simulator keeps conversations, messages and emails, and the webhooks they emit."""

from __future__ import annotations

import time
from typing import Any, Literal

from ._models import SimContact, SimConversation, SimEmail, SimMessage, iso, new_id, now
from ._webhooks import WebhookSender

__all__ = ["LOCATION_EMAIL", "StoreMixin"]

LOCATION_EMAIL = "Sandbox Location <sandbox@example.com>"


class StoreMixin:
    """Storage helpers and webhook payloads (part of ``HighLevelSimulator``)."""

    contacts: dict[str, SimContact]
    conversations: dict[str, SimConversation]
    messages: dict[str, SimMessage]
    emails: dict[str, SimEmail]
    webhooks: WebhookSender
    _seq: int
    _order: dict[str, int]  # message id -> activity sequence (newest = largest)

    def conversation_for(self, contact_id: str) -> SimConversation | None:
        for conversation in self.conversations.values():
            if conversation.contact_id == contact_id:
                return conversation
        return None

    def messages_for(self, conversation_id: str) -> list[SimMessage]:
        """The conversation's messages, oldest first (an email thread is one message)."""
        return [m for m in self.messages.values() if m.conversation_id == conversation_id]

    def emails_for(self, conversation_id: str) -> list[SimEmail]:
        return [e for e in self.emails.values() if e.conversation_id == conversation_id]

    # ------------------------------------------------------------------ storage helpers

    def _contact(self, contact_id: str) -> SimContact:
        contact = self.contacts.get(contact_id)
        if contact is None:
            raise KeyError(f"no contact {contact_id!r}")
        return contact

    def _conversation(self, contact: SimContact) -> SimConversation:
        """One conversation per contact, created on first use."""
        existing = self.conversation_for(contact.id)
        if existing is not None:
            return existing
        conversation = SimConversation(
            id=new_id(), contact_id=contact.id, created_monotonic=time.monotonic()
        )
        self.conversations[conversation.id] = conversation
        return conversation

    def _thread(self, conversation: SimConversation | None, thread_id: str) -> SimMessage | None:
        thread = self.messages.get(thread_id)
        if (
            thread is None
            or thread.channel != "Email"
            or conversation is None
            or thread.conversation_id != conversation.id
        ):
            return None
        return thread

    def _thread_of(self, conversation: SimConversation | None, any_id: str) -> SimMessage | None:
        email = self.emails.get(any_id)
        return self._thread(conversation, email.thread_id if email else any_id)

    def _latest_thread(self, conversation: SimConversation) -> SimMessage | None:
        threads = [m for m in self.messages_for(conversation.id) if m.channel == "Email"]
        return max(threads, key=lambda m: self._order[m.id], default=None)

    def _touch(self, message_id: str) -> None:
        self._seq += 1
        self._order[message_id] = self._seq

    def activity_order(self, message_id: str) -> int:
        return self._order.get(message_id, 0)

    def _store_message(
        self,
        conversation: SimConversation,
        channel: str,
        *,
        direction: Literal["inbound", "outbound"],
        body: str,
        status: str,
        attachments: list[str],
        source: str | None = None,
        user_id: str | None = None,
        scheduled_at: float | None = None,
        conversation_provider_id: str | None = None,
    ) -> SimMessage:
        message = SimMessage(
            id=new_id(),
            conversation_id=conversation.id,
            contact_id=conversation.contact_id,
            channel=channel,
            direction=direction,
            body=body,
            status=status,
            source=source if direction == "outbound" else None,
            user_id=user_id,
            attachments=attachments,
            scheduled_at=scheduled_at,
            conversation_provider_id=conversation_provider_id,
        )
        self.messages[message.id] = message
        self._touch(message.id)
        return message

    def _store_email(
        self,
        conversation: SimConversation,
        thread: SimMessage | None,
        *,
        direction: Literal["inbound", "outbound"],
        status: str,
        subject: str,
        html: str | None,
        text: str,
        from_: str,
        to: list[str],
        cc: list[str],
        attachments: list[str],
        bcc: list[str] | None = None,
        reply_to: str | None = None,
        reply_mode: str | None = None,
        source: str | None = None,
        user_id: str | None = None,
        scheduled_at: float | None = None,
    ) -> SimEmail:
        if thread is None:
            # A new thread is one conversation message; its id is the threadId of its emails.
            thread = self._store_message(
                conversation,
                "Email",
                direction=direction,
                body="",
                status=status,
                attachments=[],
                source=source,
                user_id=user_id,
                scheduled_at=scheduled_at,
            )
        else:
            thread.status, thread.date_updated = status, now()
            self._touch(thread.id)
        email = SimEmail(
            id=new_id(),
            thread_id=thread.id,
            conversation_id=conversation.id,
            contact_id=conversation.contact_id,
            direction=direction,
            status=status,
            subject=subject,
            body=html if html else text,
            content_type="text/html" if html else "text/plain",
            from_=from_,
            to=to,
            cc=cc,
            bcc=bcc or [],
            attachments=attachments,
            reply_to_message_id=reply_to,
            reply_mode=reply_mode,
            source=source if direction == "outbound" else None,
            user_id=user_id,
            scheduled_at=scheduled_at,
        )
        self.emails[email.id] = email
        thread.email_ids.append(email.id)
        thread.attachments.extend(attachments)
        return email

    # ------------------------------------------------------------------ webhook payloads

    def _emit_message(self, message: SimMessage) -> None:
        payload: dict[str, Any] = {
            "type": "OutboundMessage" if message.direction == "outbound" else "InboundMessage",
            "locationId": self.contacts[message.contact_id].location_id,
            "attachments": message.visible_attachments,
            "body": message.visible_body,
            "contactId": message.contact_id,
            "contentType": message.content_type,
            "conversationId": message.conversation_id,
            "dateAdded": iso(message.date_added),
            "direction": message.direction,
            "messageType": message.channel,
            "messageId": message.id,
            "status": message.status,
        }
        if message.media_pending:
            del payload["attachments"]  # HLD#299: WhatsApp media webhooks have none at all
        self._common_optional(payload, message.source, message.user_id, message.error)
        if message.conversation_provider_id:
            payload["conversationProviderId"] = message.conversation_provider_id
        self.webhooks.emit(payload)

    def _emit_email(self, email: SimEmail) -> None:
        payload: dict[str, Any] = {
            "type": "OutboundMessage" if email.direction == "outbound" else "InboundMessage",
            "locationId": self.contacts[email.contact_id].location_id,
            "attachments": list(email.attachments),
            "body": email.body,
            "contactId": email.contact_id,
            "contentType": email.content_type,
            "conversationId": email.conversation_id,
            "dateAdded": iso(email.date_added),
            "direction": email.direction,
            "messageType": "Email",
            "messageId": email.thread_id,
            "emailMessageId": email.id,
            "threadId": email.thread_id,
            "provider": email.provider,
            "from": email.from_,
            "to": list(email.to),
            "cc": list(email.cc),
            "bcc": list(email.bcc),
            "subject": email.subject,
            "status": email.status,
        }
        self._common_optional(payload, email.source, email.user_id, email.error)
        self.webhooks.emit(payload)

    @staticmethod
    def _common_optional(
        payload: dict[str, Any], source: str | None, user_id: str | None, error: str | None
    ) -> None:
        if source is not None:
            payload["source"] = source
        if user_id is not None:
            payload["userId"] = user_id
        if error is not None:
            payload["error"] = error


def _re(subject: str) -> str:
    if not subject:
        return ""
    return subject if subject.lower().startswith("re:") else f"Re: {subject}"
