"""What composing a message draws on: templates, appointments, verified senders, many contacts.

``ComposeMixin`` is part of ``HighLevelSimulator``: seed methods for tests, and the checks a send
(POST /conversations/messages) passes on ``emailFrom``, ``emailTo``, ``toNumber``,
``appointmentId`` and ``templateId``.
"""

from __future__ import annotations

import email.utils
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from ._errors import ApiError
from ._models import SimContact, iso, new_id, now

if TYPE_CHECKING:
    from ._locations import SimLocation

__all__ = ["TEMPLATE_KINDS", "ComposeMixin", "SimAppointment", "SimTemplate"]

TEMPLATE_KINDS = ("sms", "email", "whatsapp")  # the templates route's `type` enum

_FIRST_NAMES = (
    "Olivia", "Liam", "Emma", "Noah", "Amelia", "Oliver", "Sophia", "Elijah", "Mia", "James",
    "Harper", "Lucas", "Evelyn", "Mateo", "Aria", "Levi", "Chloe", "Ezra", "Nora", "Henry",
)  # fmt: skip
_SYLLABLES = (
    "bar", "cor", "dun", "fel", "gar", "hol", "jen", "kov", "lam", "mor",
    "nis", "pel", "quin", "ros", "sut", "tam", "vel", "wik", "yar", "zol",
)  # fmt: skip


@dataclass
class SimTemplate:
    """A location's message template (GET /locations/{locationId}/templates)."""

    id: str
    location_id: str
    name: str
    kind: str  # "sms", "email" or "whatsapp"
    body: str = ""
    subject: str = ""
    html: str = ""
    date_added: datetime = field(default_factory=now)

    def to_api(self) -> dict[str, Any]:
        """GetSmsTemplateResponseSchema, or GetEmailTemplateResponseSchema for email (the
        sandbox's templates have no attachments)."""
        if self.kind == "email":
            return {
                "id": self.id,
                "name": self.name,
                "type": self.kind,
                "dateAdded": iso(self.date_added),
                "template": {"subject": self.subject, "attachments": [], "html": self.html},
                "locationId": self.location_id,
            }
        return {
            "id": self.id,
            "name": self.name,
            "type": self.kind,
            "template": {"body": self.body, "attachments": []},
            "dateAdded": iso(self.date_added),
            "locationId": self.location_id,
            "urlAttachments": [],
        }


@dataclass
class SimAppointment:
    """A contact's appointment (GET /contacts/{contactId}/appointments)."""

    id: str
    location_id: str
    contact_id: str
    title: str
    start: datetime
    end: datetime
    status: str = "confirmed"
    calendar_id: str = "sbxCalendar000000001"
    date_added: datetime = field(default_factory=now)

    def to_api(self, timezone: str) -> dict[str, Any]:
        """GetEventSchema; times ISO 8601 in the location's time zone, with their offset."""
        zone = ZoneInfo(timezone)
        return {
            "id": self.id,
            "calendarId": self.calendar_id,
            "status": self.status,
            "title": self.title,
            "startTime": self.start.astimezone(zone).isoformat(),
            "endTime": self.end.astimezone(zone).isoformat(),
            "locationId": self.location_id,
            "contactId": self.contact_id,
            "appointmentStatus": self.status,
            "users": [],
            "dateAdded": iso(self.date_added),
            "dateUpdated": iso(self.date_added),
            "assignedResources": [],
        }


def _address(value: str) -> str:
    """The bare address of ``addr`` or ``Name <addr>``, lowercased."""
    return email.utils.parseaddr(value)[1].strip().lower()


def _digits(value: str) -> str:
    return re.sub(r"\D", "", value)


def _syllable_name(number: int) -> str:
    """A distinct pronounceable name per number (three syllables up to 8,000, then more)."""
    parts = []
    for _ in range(3):
        number, rest = divmod(number, len(_SYLLABLES))
        parts.append(_SYLLABLES[rest])
    while number:
        number, rest = divmod(number - 1, len(_SYLLABLES))
        parts.append(_SYLLABLES[rest])
    return "".join(reversed(parts)).capitalize()


class ComposeMixin:
    """Templates, appointments, verified senders and bulk contacts (of ``HighLevelSimulator``)."""

    contacts: dict[str, SimContact]
    locations: dict[str, SimLocation]
    templates: dict[str, SimTemplate]
    appointments: dict[str, SimAppointment]
    verified_senders: dict[str, list[str]]  # location id -> addresses (none: any is accepted)

    def _init_compose(self) -> None:
        self.templates = {}
        self.appointments = {}
        self.verified_senders = {}

    def _compose_location(self, location_id: str) -> SimLocation:
        location = self.locations.get(location_id)
        if location is None:
            raise KeyError(f"no location {location_id!r} in the sandbox")
        return location

    # ------------------------------------------------------------------ seeding

    def add_template(
        self,
        location_id: str,
        *,
        name: str,
        kind: str = "sms",
        body: str = "",
        subject: str = "",
        html: str = "",
        template_id: str | None = None,
    ) -> str:
        """A template of ``location_id``; ``kind`` sms, email or whatsapp. Returns its id."""
        self._compose_location(location_id)
        if kind not in TEMPLATE_KINDS:
            raise ValueError(f"kind must be one of {', '.join(TEMPLATE_KINDS)}, not {kind!r}")
        template = SimTemplate(
            id=template_id or new_id(),
            location_id=location_id,
            name=name,
            kind=kind,
            body=body,
            subject=subject,
            html=html,
        )
        self.templates[template.id] = template
        return template.id

    def templates_of(self, location_id: str) -> list[SimTemplate]:
        return [t for t in self.templates.values() if t.location_id == location_id]

    def add_appointment(
        self,
        location_id: str,
        contact_id: str,
        *,
        start: datetime,
        title: str = "Appointment",
        end: datetime | None = None,
        status: str = "confirmed",
    ) -> str:
        """An appointment of the location's contact; ``start`` timezone-aware. Returns its id."""
        self._compose_location(location_id)
        contact = self.contacts.get(contact_id)
        if contact is None or contact.location_id != location_id:
            raise KeyError(f"no contact {contact_id!r} in location {location_id!r}")
        if start.tzinfo is None or (end is not None and end.tzinfo is None):
            raise ValueError("appointment times must be timezone-aware")
        appointment = SimAppointment(
            id=new_id(),
            location_id=location_id,
            contact_id=contact_id,
            title=title,
            start=start,
            end=end if end is not None else start + timedelta(minutes=30),
            status=status,
        )
        self.appointments[appointment.id] = appointment
        return appointment.id

    def appointments_of(self, contact_id: str) -> list[SimAppointment]:
        """The contact's appointments, soonest first."""
        found = [a for a in self.appointments.values() if a.contact_id == contact_id]
        return sorted(found, key=lambda a: a.start)

    def add_verified_sender(self, location_id: str, address: str) -> None:
        """An address sends may use as ``emailFrom``. A location with none accepts any."""
        self._compose_location(location_id)
        bare = _address(address)
        if "@" not in bare:
            raise ValueError(f"not an email address: {address!r}")
        senders = self.verified_senders.setdefault(location_id, [])
        if bare not in senders:
            senders.append(bare)

    def add_contacts(self, location_id: str, count: int) -> list[SimContact]:
        """``count`` contacts of ``location_id`` with distinct names, phones and emails, fast.

        Names are a first name and a made-up surname (``Olivia Barcordun``), phones
        ``+1650LLNNNNNN`` (LL the location's number), emails ``first.last@bulkLL.example.com``.
        """
        location = self._compose_location(location_id)
        if not 0 <= count <= 1_000_000:
            raise ValueError("count must be between 0 and 1,000,000")
        start = sum(1 for c in self.contacts.values() if c.id.startswith("sbxBulk"))
        made: list[SimContact] = []
        for number in range(start, start + count):
            first = _FIRST_NAMES[number % len(_FIRST_NAMES)]
            last = _syllable_name(number)
            contact = SimContact(
                id=f"sbxBulk{location.index % 100:02d}{number:011d}",
                first_name=first,
                last_name=last,
                phone=f"+1650{location.index % 100:02d}{number:06d}",
                email=f"{first.lower()}.{last.lower()}@bulk{location.index}.example.com",
                location_id=location_id,
            )
            self.contacts[contact.id] = contact
            made.append(contact)
        return made

    # ------------------------------------------------------------------ sends

    def check_send_references(self, contact: SimContact, body: dict[str, Any]) -> dict[str, Any]:
        """Refuse a send whose ``emailFrom``/``emailTo``/``toNumber``/``appointmentId``/
        ``templateId`` is not the location's or the contact's (ApiError), as HighLevel does.

        Returns the body, with the template's text filled in when the send gave none.
        """
        location_id = contact.location_id
        email_from = body.get("emailFrom")
        senders = self.verified_senders.get(location_id)
        if email_from and senders and _address(email_from) not in senders:
            raise ApiError.unprocessable(
                [f"emailFrom {email_from} is not a verified sender of this location"]
            )
        email_to = body.get("emailTo")
        if email_to:
            own = [contact.email, *contact.additional_emails]
            if _address(email_to) not in {_address(a) for a in own if a}:
                raise ApiError.unprocessable(["emailTo must be an email address of the contact"])
        to_number = body.get("toNumber")
        if to_number:
            own = [contact.phone, *contact.additional_phones]
            if _digits(to_number) not in {_digits(p) for p in own if p}:
                raise ApiError.unprocessable(["toNumber must be a phone number of the contact"])
        appointment_id = body.get("appointmentId")
        if appointment_id:
            appointment = self.appointments.get(appointment_id)
            if appointment is None or appointment.contact_id != contact.id:
                raise ApiError.bad_request("Appointment not found for this contact")
        template_id = body.get("templateId")
        if not template_id:
            return body
        template = self.templates.get(template_id)
        if template is None or template.location_id != location_id:
            raise ApiError.bad_request("Template not found")
        if body.get("message") or body.get("html"):
            return body
        filled = dict(body)
        if template.kind == "email":
            filled["html"] = template.html
            filled.setdefault("subject", template.subject)
        else:
            filled["message"] = template.body
        return filled
