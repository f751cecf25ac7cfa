"""HighLevelSimulator: state, lifecycle, contacts; behaviour in its mixins, HTTP in ``_routes``."""

from __future__ import annotations

import asyncio
import random
import re
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ._customers import MESSAGE_STATUSES as MESSAGE_STATUSES
from ._customers import SANDBOX_USER_ID as SANDBOX_USER_ID
from ._customers import CustomersMixin
from ._customers import MessageChannel as MessageChannel
from ._faults import Faults, SlidingWindowLimiter
from ._inbox_state import InboxStateMixin
from ._locations import COMPANY_ID, LocationsMixin
from ._models import SimContact, SimConversation, SimEmail, SimMessage, new_id, now
from ._oauth import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, OAuthServer
from ._records import AmbiguousCustomer, CustomerReply, RequestRecord
from ._records import Upload as Upload
from ._records import trace_id as trace_id
from ._sending import _Timers
from ._store import LOCATION_EMAIL as LOCATION_EMAIL
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


def phone_key(raw: str) -> str:
    """Compare phones without formatting. A '+' lost to URL decoding stays lost (no match)."""
    return re.sub(r"[\s\-().]", "", raw)


class HighLevelSimulator(CustomersMixin, LocationsMixin, InboxStateMixin):
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
        whatsapp_upload_max_bytes: int = 100 * 1024 * 1024,
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
        self._init_media(upload_max_bytes, whatsapp_upload_max_bytes)

        self.contacts: dict[str, SimContact] = {}
        self._init_compose()
        self._init_locations(locations, with_seed_contacts)
        self.conversations: dict[str, SimConversation] = {}
        self.messages: dict[str, SimMessage] = {}
        self.emails: dict[str, SimEmail] = {}
        self.cancelled: dict[str, SimMessage | SimEmail] = {}
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
        additional_emails: list[str] | None = None,
        additional_phones: list[str] | None = None,
    ) -> SimContact:
        """A contact of ``location_id`` (default: the first location).

        ``additional_emails``/``additional_phones``: other addresses and numbers a send's
        ``emailTo``/``toNumber`` may name. Many at once: ``add_contacts``.
        """
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
            additional_emails=list(additional_emails or []),
            additional_phones=list(additional_phones or []),
        )
        self.contacts[contact.id] = contact
        return contact

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

    def update_contact(self, contact: SimContact, body: dict[str, Any]) -> None:
        """Apply an upsert's or PUT /contacts/{id}'s fields to `contact` (the rest kept in
        `extra`, as given)."""
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
            contact.dnd = bool(body["dnd"])
        if "dndSettings" in body:
            contact.dnd_settings.update(body["dndSettings"])
        if "tags" in body:
            contact.tags = list(body["tags"] or [])  # overwrites all tags
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

    def upsert(self, body: dict[str, Any]) -> tuple[bool, SimContact]:
        location_id = body.get("locationId") or self.location_id
        contact = self.find_duplicate(
            email=body.get("email"), number=body.get("phone"), location_id=location_id
        )
        created = contact is None
        if contact is None:
            contact = SimContact(id=new_id(), location_id=location_id)
            self.contacts[contact.id] = contact
        self.update_contact(contact, body)
        contact.date_updated = now()
        return created, contact
