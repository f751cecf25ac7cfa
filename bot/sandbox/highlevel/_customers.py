"""Simulated people: customers who reply, HighLevel app users who send, status changes."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal, cast, overload

from . import _spec
from ._errors import ApiError
from ._models import CHANNELS, SimContact, SimEmail, SimMessage, now
from ._records import AmbiguousCustomer, CustomerReply
from ._sending import SendingMixin
from ._store import LOCATION_EMAIL, _re

__all__ = ["MESSAGE_STATUSES", "SANDBOX_USER_ID", "CustomersMixin", "MessageChannel"]

SANDBOX_USER_ID = "sbxUser0000000000001"

MessageChannel = Literal["SMS", "WhatsApp", "RCS", "GMB", "FB", "IG", "Live_Chat", "Custom"]
MESSAGE_STATUSES = frozenset(_spec.enum_of(_spec.CONVERSATIONS, "GetMessageResponseDto", "status"))


class CustomersMixin(SendingMixin):
    """The people around the location, simulated (part of ``HighLevelSimulator``)."""

    @overload
    async def customer_reply(
        self,
        contact_id: str,
        channel: Literal["Email"],
        text: str = "",
        *,
        subject: str | None = None,
        thread_id: str | None = None,
        cc: list[str] | None = None,
        html: str | None = None,
        attachments: list[str] | None = None,
        media: list[tuple[str, bytes, str]] | None = None,
    ) -> SimEmail: ...

    @overload
    async def customer_reply(
        self,
        contact_id: str,
        channel: MessageChannel,
        text: str = "",
        *,
        attachments: list[str] | None = None,
        media: list[tuple[str, bytes, str]] | None = None,
        late_media: bool | None = None,
        media_after_reads: int | None = None,
    ) -> SimMessage: ...

    async def customer_reply(
        self,
        contact_id: str,
        channel: str,
        text: str = "",
        *,
        subject: str | None = None,
        thread_id: str | None = None,
        cc: list[str] | None = None,
        html: str | None = None,
        attachments: list[str] | None = None,
        media: list[tuple[str, bytes, str]] | None = None,
        late_media: bool | None = None,
        media_after_reads: int | None = None,
    ) -> SimMessage | SimEmail:
        """The contact writes to the location: stores an inbound message, fires InboundMessage.

        An email reply joins ``thread_id`` (default: the contact's latest email thread), with
        subject "Re: <that thread's last subject>" unless given. ``media`` (filename, bytes,
        content type) become served files whose URLs follow ``attachments``. WhatsApp media
        are late by default (HLD#299, ``late_media``): the webhook has an empty body and no
        attachments, and GET message shows them after ``media_arrives(id)`` or, with
        ``media_after_reads=N``, from the (N+1)th GET of the message on.
        """
        contact = self._contact(contact_id)
        spec = CHANNELS.get(channel)
        if spec is None:
            raise ValueError(f"unknown channel {channel!r}")
        if spec.needs == "phone" and not contact.phone:
            raise ValueError(f"{contact.name} has no phone number to reply from")
        if spec.needs == "email" and not contact.email:
            raise ValueError(f"{contact.name} has no email address to reply from")
        if late_media is None:
            late_media = channel == "WhatsApp" and bool(media)
        if late_media and (channel == "Email" or not (media or attachments)):
            raise ValueError("late_media needs media (or attachments) on a non-Email channel")
        if media_after_reads is not None and (not late_media or media_after_reads < 0):
            raise ValueError("media_after_reads needs late media and a count of 0 or more")
        origin = self._files_origin() if media else ""  # fails before anything is stored
        if channel == "Email":
            existing = self.conversation_for(contact.id)
            if thread_id is None:
                thread = self._latest_thread(existing) if existing else None
            else:
                thread = self._thread(existing, thread_id)
                if thread is None:
                    raise ValueError(f"no email thread {thread_id!r} with {contact.name}")
            previous = self.emails[thread.email_ids[-1]] if thread and thread.email_ids else None
            replying_to_us = previous is not None and previous.direction == "outbound"
            conversation = self._conversation(contact)
            conversation.unread_count += 1
            urls = self._customer_files(conversation, media or [], origin)
            email = self._store_email(
                conversation,
                thread,
                direction="inbound",
                status="delivered",
                subject=subject
                if subject is not None
                else _re(previous.subject if previous else ""),
                html=html,
                text=text,
                from_=f"{contact.name} <{contact.email}>",
                to=[previous.from_ if previous and replying_to_us else LOCATION_EMAIL],
                cc=cc or [],
                attachments=[*(attachments or []), *urls],
                reply_to=previous.id if previous else None,
            )
            self._emit_email(email)
            return email
        conversation = self._conversation(contact)
        conversation.unread_count += 1
        urls = self._customer_files(conversation, media or [], origin)
        message = self._store_message(
            conversation,
            channel,
            direction="inbound",
            body=text,
            status="delivered",
            attachments=[*(attachments or []), *urls],
        )
        message.media_pending = late_media
        message.media_reads_left = media_after_reads
        self._emit_message(message)
        return message

    def add_history(
        self,
        contact_id: str,
        count: int,
        *,
        channel: MessageChannel = "SMS",
        text: str = "Earlier message {n}",
        days_ago: float = 30.0,
    ) -> list[SimMessage]:
        """``count`` messages the conversation had before now, oldest first, with no webhooks:
        a customer's history from before the bridge (or from before a thread was opened).

        They alternate, customer first (inbound, then a HighLevel user's reply, outbound), one
        minute apart from ``days_ago`` days back; ``text`` is formatted with ``n`` (1 = the
        oldest). The conversation lists them before anything that happens after this call.
        """
        if count < 0:
            raise ValueError("count must be 0 or more")
        contact = self._contact(contact_id)
        if CHANNELS[channel].needs == "phone" and not contact.phone:
            raise ValueError(f"{contact.name} has no phone number for {channel} history")
        conversation = self._conversation(contact)
        start = now() - timedelta(days=days_ago)
        added: list[SimMessage] = []
        for index in range(count):
            inbound = index % 2 == 0
            message = self._store_message(
                conversation,
                channel,
                direction="inbound" if inbound else "outbound",
                body=text.format(n=index + 1),
                status="delivered",
                attachments=[],
                source=None if inbound else "app",
                user_id=None if inbound else SANDBOX_USER_ID,
            )
            message.date_added = message.date_updated = start + timedelta(minutes=index)
            added.append(message)
        return added

    def find_customer(self, ref: str) -> SimContact:
        """The contact that ``ref`` names: its id, phone (any formatting), email, or name.

        A name is the full name or the first name, in any case. Raises ``LookupError`` with a
        message for a person when nothing or more than one contact matches.
        """
        wanted = ref.strip()
        if not wanted:
            raise LookupError("Name the customer: a contact id, phone number, email or name.")
        if wanted in self.contacts:
            return self.contacts[wanted]
        lowered = wanted.lower()
        digits = re.sub(r"\D", "", wanted)
        phone_like = len(digits) >= 7 and re.fullmatch(r"[+\d\s\-().]+", wanted) is not None
        matches = [
            contact
            for contact in self.contacts.values()
            if (contact.email is not None and contact.email.lower() == lowered)
            or (
                phone_like
                and contact.phone is not None
                and re.sub(r"\D", "", contact.phone) == digits
            )
        ]
        if not matches:
            matches = [
                contact
                for contact in self.contacts.values()
                if lowered in {contact.name.lower(), contact.first_name.lower()}
            ]
        if len(matches) == 1:
            return matches[0]
        if matches:
            names = ", ".join(f"{c.name} ({c.id})" for c in matches)
            raise AmbiguousCustomer(f"{wanted!r} matches several contacts: {names}. Use the id.")
        raise LookupError(
            f"No contact {wanted!r} in the sandbox: use a contact id, phone number, email or "
            "name (the sandbox lists them at start-up)."
        )

    async def reply_as(
        self,
        ref: str,
        text: str,
        *,
        channel: str | None = None,
        subject: str | None = None,
    ) -> CustomerReply:
        """A person's way to make a customer answer: ``customer_reply`` with lenient input.

        ``ref`` as in ``find_customer``; ``channel`` in any case, by default SMS when the
        contact has a phone and Email otherwise. Raises ``LookupError`` for an unknown contact
        and ``ValueError`` for anything else a person can get wrong, each with a message.
        """
        contact = self.find_customer(ref)
        if not text.strip():
            raise ValueError("The reply is empty: give the text the customer writes.")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate: no webhook could carry it
            raise ValueError("The reply is not valid Unicode text.") from exc
        if channel is None:
            if not contact.phone and not contact.email:
                raise ValueError(f"{contact.name} has neither a phone number nor an email address.")
            name = "SMS" if contact.phone else "Email"
        else:
            by_lower = {known.lower(): known for known in CHANNELS}
            found = by_lower.get(channel.strip().lower())
            if found is None:
                raise ValueError(f"Unknown channel {channel!r}: use one of {', '.join(CHANNELS)}.")
            name = found
        if subject is not None and name != "Email":
            raise ValueError("A subject is for Email replies only.")
        already = len(self.webhooks.deliveries)
        item: SimMessage | SimEmail
        if name == "Email":
            item = await self.customer_reply(contact.id, "Email", text, subject=subject)
        else:
            item = await self.customer_reply(contact.id, cast(MessageChannel, name), text)
        return CustomerReply(contact, name, item, self.webhooks.deliveries[already:])

    @overload
    async def send_from_highlevel_app(
        self,
        contact_id: str,
        channel: Literal["Email"],
        text: str = "",
        *,
        subject: str | None = None,
        thread_id: str | None = None,
        html: str | None = None,
        attachments: list[str] | None = None,
        user_id: str = SANDBOX_USER_ID,
    ) -> SimEmail: ...

    @overload
    async def send_from_highlevel_app(
        self,
        contact_id: str,
        channel: MessageChannel,
        text: str = "",
        *,
        attachments: list[str] | None = None,
        user_id: str = SANDBOX_USER_ID,
    ) -> SimMessage: ...

    async def send_from_highlevel_app(
        self,
        contact_id: str,
        channel: str,
        text: str = "",
        *,
        subject: str | None = None,
        thread_id: str | None = None,
        html: str | None = None,
        attachments: list[str] | None = None,
        user_id: str = SANDBOX_USER_ID,
    ) -> SimMessage | SimEmail:
        """A person in the HighLevel app writes to the contact (OutboundMessage, source "app")."""
        body: dict[str, Any] = {"type": channel, "contactId": contact_id}
        if text:
            body["message"] = text
        for key, value in (
            ("subject", subject),
            ("threadId", thread_id),
            ("html", html),
            ("attachments", attachments),
        ):
            if value is not None:
                body[key] = value
        try:
            result = self.send(body, source="app", user_id=user_id)
        except ApiError as exc:
            raise ValueError(str(exc)) from exc
        if channel == "Email":
            return self.emails[result["emailMessageId"]]
        ids = result.get("messageIds") or [result["messageId"]]
        return self.messages[ids[0]]

    async def set_message_status(
        self, message_id: str, status: str, error: str | None = None
    ) -> None:
        """Change a message's (or email's) status and fire the webhook HighLevel would.

        For an email thread id the change applies to the thread's latest email.
        """
        if status not in MESSAGE_STATUSES:
            raise ValueError(
                f"unknown status {status!r}; expected one of {sorted(MESSAGE_STATUSES)}"
            )
        if message_id in self.emails:
            email = self.emails[message_id]
        elif message_id in self.messages:
            message = self.messages[message_id]
            if message.channel != "Email":
                message.status, message.error, message.date_updated = status, error, now()
                self._emit_message(message)
                return
            if not message.email_ids:
                raise KeyError(message_id)
            email = self.emails[message.email_ids[-1]]
        else:
            raise KeyError(message_id)
        email.status, email.error = status, error
        thread = self.messages[email.thread_id]
        thread.status, thread.error, thread.date_updated = status, error, now()
        self._emit_email(email)
