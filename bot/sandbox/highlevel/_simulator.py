"""HighLevelSimulator: state, behaviour and the Python API (the HTTP side is in ``_routes``)."""

from __future__ import annotations

import asyncio
import functools
import random
import re
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal, cast, overload

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import _spec
from ._errors import ApiError
from ._faults import Faults, SlidingWindowLimiter
from ._locations import COMPANY_ID, LocationsMixin
from ._models import (
    CHANNELS,
    SimContact,
    SimConversation,
    SimEmail,
    SimMessage,
    iso,
    new_id,
    now,
)
from ._oauth import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, OAuthServer
from ._webhooks import WebhookDelivery, WebhookSender

__all__ = [
    "DEFAULT_LOCATION_ID",
    "DEFAULT_TOKEN",
    "AmbiguousCustomer",
    "CustomerReply",
    "HighLevelSimulator",
    "RequestRecord",
]

DEFAULT_LOCATION_ID = "sbxLocation000000001"
# A published, sandbox-only credential: it opens nothing but this simulator.
DEFAULT_TOKEN = "sandbox-token-0000000000000000"  # noqa: S105
SANDBOX_USER_ID = "sbxUser0000000000001"
LOCATION_EMAIL = "Sandbox Location <sandbox@example.com>"

MessageChannel = Literal["SMS", "WhatsApp", "GMB", "FB", "IG", "Live_Chat", "Custom"]
MESSAGE_STATUSES = frozenset(_spec.enum_of(_spec.CONVERSATIONS, "GetMessageResponseDto", "status"))
_NOT_ON_WHATSAPP = "Message failed: the recipient is not a WhatsApp user"


@dataclass
class RequestRecord:
    """One request as received. ``body`` is the parsed JSON (or the multipart form fields)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any = None
    status: int = 0  # 0 while in flight, 499 if the client gave up first


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
    filename: str
    content_type: str
    data: bytes
    url: str


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


def phone_key(raw: str) -> str:
    """Compare phones without formatting. A '+' lost to URL decoding stays lost (no match)."""
    return re.sub(r"[\s\-().]", "", raw)


class HighLevelSimulator(LocationsMixin):
    """A HighLevel (LeadConnector) agency and its sub-accounts on 127.0.0.1, spec-faithful.

    See ``README.md`` beside this file for its behaviour and the choices made where
    HighLevel's documentation is vague.
    """

    def __init__(
        self,
        *,
        location_id: str = DEFAULT_LOCATION_ID,
        token: str = DEFAULT_TOKEN,
        rate_limit_max: int = 100,
        rate_limit_interval_ms: int = 10_000,
        rate_limit_daily: int = 200_000,
        webhook_url: str | None = None,
        signing_key: Ed25519PrivateKey | None = None,
        seed: int = 0,
        faults: Faults | None = None,
        webhook_timeout: float = 10.0,
        webhook_max_attempts: int = 4,
        webhook_retry_delay: float = 600.0,
        auto_deliver_after: float | None = None,
        search_lag: float = 0.0,
        strict_unknown_fields: bool = True,
        upload_max_bytes: int = 5 * 1024 * 1024,
        with_seed_contacts: bool = True,
        locations: int = 1,
        oauth_client_id: str = DEFAULT_CLIENT_ID,
        oauth_client_secret: str = DEFAULT_CLIENT_SECRET,
        token_ttl: int = 86399,
        refresh_grace_seconds: float = 0.0,
    ) -> None:
        self.location_id = location_id
        self.token = token
        self.oauth = OAuthServer(
            client_id=oauth_client_id,
            client_secret=oauth_client_secret,
            company_id=COMPANY_ID,
            token_ttl=token_ttl,
            refresh_grace_seconds=refresh_grace_seconds,
        )
        self.faults = faults if faults is not None else Faults()
        # Seeded on purpose: the same seed must inject the same faults into the same requests.
        self.rng = random.Random(seed)  # noqa: S311
        self.limiter = SlidingWindowLimiter(
            rate_limit_max, rate_limit_interval_ms, rate_limit_daily
        )
        self.webhooks = WebhookSender(
            signing_key if signing_key is not None else Ed25519PrivateKey.generate(),
            timeout=webhook_timeout,
            max_attempts=webhook_max_attempts,
            retry_delay=webhook_retry_delay,
            rng=self.rng,
        )
        self.webhooks.url = webhook_url
        self.auto_deliver_after = auto_deliver_after
        self.search_lag = search_lag
        self.strict_unknown_fields = strict_unknown_fields
        self.upload_max_bytes = upload_max_bytes

        self.contacts: dict[str, SimContact] = {}
        self._init_locations(locations, with_seed_contacts)
        self.conversations: dict[str, SimConversation] = {}
        self.messages: dict[str, SimMessage] = {}
        self.emails: dict[str, SimEmail] = {}
        self.cancelled: dict[str, SimMessage | SimEmail] = {}
        self.uploads: dict[str, Upload] = {}
        self.requests: list[RequestRecord] = []

        self._seq = 0
        self._order: dict[str, int] = {}  # message id -> activity sequence (newest = largest)
        self._timers = _Timers()
        self.stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None

        from ._routes import build_app  # late import: routes need this class's type only

        self.app = build_app(self)

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on ``host:port`` (0 picks a free port); returns the base URL."""
        if self._runner is not None:
            raise RuntimeError("the simulator is already running")
        self.stopping = asyncio.Event()
        runner = web.AppRunner(
            self.app,
            handle_signals=False,
            access_log=None,
            handler_cancellation=True,  # a client that gives up cancels its hung request
            shutdown_timeout=1.0,
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        sockets = runner.addresses
        bound_host, bound_port = sockets[0][0], sockets[0][1]
        shown = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
        self._base_url = f"http://{shown}:{bound_port}"
        return self._base_url

    async def stop(self) -> None:
        self.stopping.set()  # releases hung requests at once
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.shutdown_background()

    async def start_background(self) -> None:
        """Start webhook delivery (the app's startup hook runs it, also when embedded)."""
        await self.webhooks.start()

    async def shutdown_background(self) -> None:
        await self._timers.cancel_all()
        await self.webhooks.stop()

    async def __aenter__(self) -> HighLevelSimulator:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the simulator is not running: await start() first")
        return self._base_url

    @property
    def public_key_pem(self) -> str:
        """The Ed25519 public key (PEM) that verifies ``x-ghl-signature``."""
        return self.webhooks.public_key_pem

    @property
    def webhook_url(self) -> str | None:
        return self.webhooks.url

    @webhook_url.setter
    def webhook_url(self, url: str | None) -> None:
        self.webhooks.url = url

    @property
    def webhook_deliveries(self) -> list[WebhookDelivery]:
        return self.webhooks.deliveries

    async def drain_webhooks(self) -> None:
        """Wait until every webhook emitted so far is delivered or dropped."""
        await self.webhooks.drain()

    # ------------------------------------------------------------------ introspection

    def add_contact(
        self,
        first_name: str,
        last_name: str = "",
        *,
        phone: str | None = None,
        email: str | None = None,
        whatsapp: bool = False,
        dnd: bool = False,
        dnd_settings: dict[str, dict[str, str]] | None = None,
        tags: list[str] | None = None,
        contact_id: str | None = None,
        location_id: str | None = None,
    ) -> SimContact:
        """A contact of ``location_id`` (default: the first location)."""
        contact = SimContact(
            id=contact_id or new_id(),
            first_name=first_name,
            last_name=last_name,
            phone=phone,
            email=email,
            whatsapp=whatsapp,
            dnd=dnd,
            dnd_settings=dnd_settings or {},
            tags=tags or [],
            location_id=self._location(location_id or self.location_id).id,
        )
        self.contacts[contact.id] = contact
        return contact

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

    def sent_count(self, channel: str | None = None) -> int:
        """Outbound sends made through the API (emails count one per email, not per thread)."""
        count = sum(
            1
            for m in self.messages.values()
            if m.direction == "outbound"
            and m.source == "api"
            and m.channel != "Email"
            and (channel is None or m.channel == channel)
        )
        if channel in (None, "Email"):
            count += sum(
                1 for e in self.emails.values() if e.direction == "outbound" and e.source == "api"
            )
        return count

    def requests_to(self, method: str, path: str) -> list[RequestRecord]:
        return [r for r in self.requests if r.method == method and r.path == path]

    # ------------------------------------------------------------------ customer simulation

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
    ) -> SimEmail: ...

    @overload
    async def customer_reply(
        self,
        contact_id: str,
        channel: MessageChannel,
        text: str = "",
        *,
        attachments: list[str] | None = None,
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
    ) -> SimMessage | SimEmail:
        """The contact writes to the location: stores an inbound message, fires InboundMessage.

        An email reply joins ``thread_id`` (default: the contact's latest email thread), with
        subject "Re: <that thread's last subject>" unless given.
        """
        contact = self._contact(contact_id)
        spec = CHANNELS.get(channel)
        if spec is None:
            raise ValueError(f"unknown channel {channel!r}")
        if spec.needs == "phone" and not contact.phone:
            raise ValueError(f"{contact.name} has no phone number to reply from")
        if spec.needs == "email" and not contact.email:
            raise ValueError(f"{contact.name} has no email address to reply from")
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
                attachments=attachments or [],
                reply_to=previous.id if previous else None,
            )
            self._emit_email(email)
            return email
        conversation = self._conversation(contact)
        conversation.unread_count += 1
        message = self._store_message(
            conversation,
            channel,
            direction="inbound",
            body=text,
            status="delivered",
            attachments=attachments or [],
        )
        self._emit_message(message)
        return message

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

    # ------------------------------------------------------------------ behaviour (HTTP + API)

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
        text: str = body.get("message") or ""
        html: str = body.get("html") or ""
        attachments: list[str] = list(body.get("attachments") or [])
        if not (text or html or attachments or body.get("templateId")):
            raise ApiError.unprocessable(["message should not be empty"])
        scheduled_at: float | None = body.get("scheduledTimestamp")
        if scheduled_at is not None and scheduled_at <= time.time():
            raise ApiError.unprocessable(["scheduledTimestamp must be in the future"])
        if channel.name == "Email" and contact.email:
            return self._send_email(contact, contact.email, body, scheduled_at, source, user_id)

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
        email_to: str | None = body.get("emailTo")
        if email_to is not None and email_to.lower() != contact_email.lower():
            raise ApiError.unprocessable(["emailTo must be an email address of the contact"])
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

    # ------------------------------------------------------------------ contacts

    def find_duplicate(
        self, *, email: str | None, number: str | None, location_id: str | None = None
    ) -> SimContact | None:
        # Email first, then phone: HighLevel's order when duplicates are allowed.
        candidates = [
            c for c in self.contacts.values() if location_id is None or c.location_id == location_id
        ]
        if email:
            for contact in candidates:
                if contact.email and contact.email.lower() == email.lower():
                    return contact
        if number:
            wanted = phone_key(number)
            for contact in candidates:
                if contact.phone and phone_key(contact.phone) == wanted:
                    return contact
        return None

    def upsert(self, body: dict[str, Any]) -> tuple[bool, SimContact]:
        location_id = body.get("locationId") or self.location_id
        contact = self.find_duplicate(
            email=body.get("email"), number=body.get("phone"), location_id=location_id
        )
        created = contact is None
        if contact is None:
            contact = SimContact(id=new_id(), location_id=location_id)
            self.contacts[contact.id] = contact
        if "name" in body and not ({"firstName", "lastName"} & body.keys()):
            first, _, last = (body["name"] or "").partition(" ")
            contact.first_name, contact.last_name = first, last
        if "firstName" in body:
            contact.first_name = body["firstName"] or ""
        if "lastName" in body:
            contact.last_name = body["lastName"] or ""
        if "email" in body:
            contact.email = body["email"] or None
        if "phone" in body:
            contact.phone = phone_key(body["phone"]) if body["phone"] else None
        if "dnd" in body:
            contact.dnd = body["dnd"]
        if "dndSettings" in body:
            contact.dnd_settings.update(body["dndSettings"])
        if "tags" in body:
            contact.tags = list(body["tags"])  # upsert overwrites all tags
        handled = {
            "name",
            "firstName",
            "lastName",
            "email",
            "phone",
            "dnd",
            "dndSettings",
            "tags",
            "locationId",
            "createNewIfDuplicateAllowed",
        }
        contact.extra.update({k: v for k, v in body.items() if k not in handled})
        contact.date_updated = now()
        return created, contact

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
            "attachments": list(message.attachments),
            "body": message.body,
            "contactId": message.contact_id,
            "contentType": message.content_type,
            "conversationId": message.conversation_id,
            "dateAdded": iso(message.date_added),
            "direction": message.direction,
            "messageType": message.channel,
            "messageId": message.id,
            "status": message.status,
        }
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


def trace_id() -> str:
    return str(uuid.uuid4())
