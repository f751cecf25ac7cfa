"""Outbound sends (POST /conversations/messages), their statuses, scheduling and cancels."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from ._compose import ComposeMixin
from ._errors import ApiError
from ._media import MediaMixin
from ._models import CHANNELS, SimContact, SimEmail, SimMessage, now
from ._records import AttachmentSend
from ._store import LOCATION_EMAIL, _re

__all__ = ["SendingMixin"]

_NOT_ON_WHATSAPP = "Message failed: the recipient is not a WhatsApp user"


@dataclass
class _Timers:
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def later(self, delay: float, action: Callable[[], Coroutine[Any, Any, None]]) -> None:
        async def run() -> None:
            await asyncio.sleep(max(0.0, delay))
            await action()

        task = asyncio.create_task(run())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def cancel_all(self) -> None:
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class SendingMixin(MediaMixin, ComposeMixin):
    """What a send does, now or when scheduled (part of ``HighLevelSimulator``)."""

    cancelled: dict[str, SimMessage | SimEmail]
    auto_deliver_after: float | None
    _timers: _Timers

    def send(
        self, body: dict[str, Any], *, source: str = "api", user_id: str | None = None
    ) -> dict[str, Any]:
        """POST /conversations/messages on an already schema-valid body. Raises ApiError."""
        channel = CHANNELS[body["type"]]
        contact = self.contacts.get(body["contactId"])
        if contact is None:
            raise ApiError.bad_request("Contact not found")
        if channel.needs == "phone" and not contact.phone:
            raise ApiError.unprocessable(["Contact does not have a phone number"])
        if channel.needs == "email" and not contact.email:
            raise ApiError.unprocessable(["Contact does not have an email address"])
        if contact.dnd_blocks(channel):
            raise ApiError.unprocessable([f"Contact has DND enabled for {channel.name}"])
        body = self.check_send_references(contact, body)
        text: str = body.get("message") or ""
        html: str = body.get("html") or ""
        attachments: list[str] = list(body.get("attachments") or [])
        if not (text or html or attachments or body.get("templateId")):
            raise ApiError.unprocessable(["message should not be empty"])
        self.check_attachment_urls(attachments)
        scheduled_at: float | None = body.get("scheduledTimestamp")
        if scheduled_at is not None and scheduled_at <= time.time():
            raise ApiError.unprocessable(["scheduledTimestamp must be in the future"])
        if channel.name == "Email" and contact.email:
            answer = self._send_email(contact, contact.email, body, scheduled_at, source, user_id)
            self._record_attachment_send(
                AttachmentSend(
                    "Email",
                    contact.id,
                    attachments,
                    [answer["messageId"]],
                    answer["emailMessageId"],
                    source,
                )
            )
            return answer

        conversation = self._conversation(contact)
        not_on_whatsapp = channel.name == "WhatsApp" and not contact.whatsapp
        status = self._initial_status(scheduled_at, pending=not_on_whatsapp)
        # GMB sends each attachment as its own message, hence a list of ids.
        pieces: list[tuple[str, list[str]]]
        if channel.name == "GMB":
            pieces = ([(text, [])] if text else []) + [("", [url]) for url in attachments]
        else:
            pieces = [(text, attachments)]
        sent = [
            self._store_message(
                conversation,
                channel.name,
                direction="outbound",
                body=piece_text,
                status=status,
                attachments=piece_attachments,
                source=source,
                user_id=user_id,
                scheduled_at=scheduled_at,
                conversation_provider_id=body.get("conversationProviderId"),
            )
            for piece_text, piece_attachments in pieces
        ]
        for message in sent:
            message.to_number = body.get("toNumber")
            message.appointment_id = body.get("appointmentId")
            message.template_id = body.get("templateId")
        ids = [m.id for m in sent]
        self._record_attachment_send(
            AttachmentSend(channel.name, contact.id, attachments, ids, None, source)
        )
        for message in sent:
            if scheduled_at is not None:
                self._timers.later(
                    scheduled_at - time.time(), functools.partial(self._deliver_scheduled, message)
                )
                continue
            self._emit_message(message)
            self._after_send(message, not_on_whatsapp)
        response: dict[str, Any] = {
            "conversationId": conversation.id,
            "msg": "Message scheduled successfully."
            if scheduled_at
            else "Message queued successfully.",
            "status": "pending" if status in {"pending", "scheduled"} else "delivered",
        }
        if channel.name == "GMB":
            response["messageIds"] = [m.id for m in sent]
        else:
            response["messageId"] = sent[0].id
        return response

    def _send_email(
        self,
        contact: SimContact,
        contact_email: str,
        body: dict[str, Any],
        scheduled_at: float | None,
        source: str,
        user_id: str | None,
    ) -> dict[str, Any]:
        email_to: str | None = body.get("emailTo")  # checked by check_send_references
        existing = self.conversation_for(contact.id)
        thread: SimMessage | None = None
        if body.get("threadId"):
            thread = self._thread(existing, body["threadId"]) if existing else None
            if thread is None:
                raise ApiError.bad_request("Email thread not found")
        elif body.get("replyMessageId"):
            # Replying to an email implies its thread.
            thread = self._thread_of(existing, body["replyMessageId"]) if existing else None
        previous = self.emails[thread.email_ids[-1]] if thread and thread.email_ids else None
        subject = body.get("subject") or _re(previous.subject if previous else "")
        conversation = self._conversation(contact)
        email = self._store_email(
            conversation,
            thread,
            direction="outbound",
            status=self._initial_status(scheduled_at),
            subject=subject,
            html=body.get("html"),
            text=body.get("message") or "",
            from_=body.get("emailFrom") or LOCATION_EMAIL,
            to=[email_to or contact_email],
            cc=list(body.get("emailCc") or []),
            bcc=list(body.get("emailBcc") or []),
            attachments=list(body.get("attachments") or []),
            reply_to=body.get("replyMessageId"),
            reply_mode=body.get("emailReplyMode"),
            source=source,
            user_id=user_id,
            scheduled_at=scheduled_at,
        )
        email.appointment_id = body.get("appointmentId")
        email.template_id = body.get("templateId")
        if scheduled_at is not None:
            self._timers.later(
                scheduled_at - time.time(), lambda: self._deliver_scheduled_email(email)
            )
        else:
            self._emit_email(email)
            self._after_send(email, False)
        return {
            "conversationId": conversation.id,
            "messageId": email.thread_id,
            "emailMessageId": email.id,
            "msg": "Message scheduled successfully."
            if scheduled_at
            else "Message queued successfully.",
            "status": "pending"
            if scheduled_at or self.auto_deliver_after is not None
            else "delivered",
        }

    def _initial_status(self, scheduled_at: float | None, *, pending: bool = False) -> str:
        if scheduled_at is not None:
            return "scheduled"
        if pending or self.auto_deliver_after is not None:
            return "pending"
        return "delivered"

    def _after_send(self, item: SimMessage | SimEmail, not_on_whatsapp: bool) -> None:
        """Status changes that follow a send: WhatsApp failure, or the delayed delivery."""
        if not_on_whatsapp:
            self._set_status_now(item, "failed", _NOT_ON_WHATSAPP)
        elif self.auto_deliver_after is not None:

            async def deliver() -> None:
                if item.status == "pending":
                    self._set_status_now(item, "delivered", None)

            self._timers.later(self.auto_deliver_after, deliver)

    def _set_status_now(self, item: SimMessage | SimEmail, status: str, error: str | None) -> None:
        item.status, item.error = status, error
        if isinstance(item, SimEmail):
            thread = self.messages[item.thread_id]
            thread.status, thread.date_updated = status, now()
            self._emit_email(item)
        else:
            item.date_updated = now()
            self._emit_message(item)

    async def _deliver_scheduled(self, message: SimMessage) -> None:
        if message.status != "scheduled" or message.id not in self.messages:
            return  # cancelled meanwhile
        contact = self.contacts[message.contact_id]
        not_on_whatsapp = message.channel == "WhatsApp" and not contact.whatsapp
        message.status = self._initial_status(None, pending=not_on_whatsapp)
        message.date_updated = now()
        self._emit_message(message)
        self._after_send(message, not_on_whatsapp)

    async def _deliver_scheduled_email(self, email: SimEmail) -> None:
        if email.status != "scheduled" or email.id not in self.emails:
            return
        email.status = self._initial_status(None)
        thread = self.messages[email.thread_id]
        thread.status, thread.date_updated = email.status, now()
        self._emit_email(email)
        self._after_send(email, False)

    def cancel_scheduled(self, message_id: str) -> bool:
        message = self.messages.get(message_id)
        if message is None:
            return False
        if message.channel == "Email":
            scheduled = [e for e in message.email_ids if self.emails[e].status == "scheduled"]
            for email_id in scheduled:
                self.cancel_scheduled_email(email_id)
            return bool(scheduled)
        if message.status != "scheduled":
            return False
        self.cancelled[message.id] = self.messages.pop(message.id)
        return True

    def cancel_scheduled_email(self, email_message_id: str) -> bool:
        email = self.emails.get(email_message_id)
        if email is None or email.status != "scheduled":
            return False
        self.cancelled[email.id] = self.emails.pop(email.id)
        thread = self.messages[email.thread_id]
        thread.email_ids.remove(email.id)
        if not thread.email_ids:
            self.cancelled.setdefault(thread.id, self.messages.pop(thread.id))
        return True
