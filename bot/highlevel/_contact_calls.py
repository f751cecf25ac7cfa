"""Contact and location calls of the HighLevel client: find, get, upsert and search contacts,
a contact's appointments, the location and its message templates (all with the contacts
Version).

Kept apart from `_client` (which mixes this in); every call still goes through the client's
`_request` (token, rate limit, retries, errors).
"""

from __future__ import annotations

from ._calls import ClientCalls
from ._models import (
    Appointment,
    Contact,
    ContactSearchResult,
    Location,
    MessageTemplate,
    UpsertContactRequest,
    UpsertContactResponse,
    _AppointmentsAnswer,
    _TemplatesPage,
    _WireTemplate,
)
from ._wire import _Kind, _seg, _unexpected, _unwrap

TEMPLATES_PAGE_SIZE = 100
TEMPLATES_MAX_PAGES = 5


class ContactCalls(ClientCalls):
    """Mixed into HighLevelClient."""

    # -----------------------------------------------------------------------------------------
    # Contacts

    async def find_contact(
        self, *, phone: str | None = None, email: str | None = None
    ) -> Contact | None:
        """GET /contacts/search/duplicate: the location's contact with this phone/email, or None."""
        if not phone and not email:
            raise ValueError("give phone or email")
        params = {"locationId": self._location_id}
        if phone:
            params["number"] = phone  # the API's name for it; httpx encodes "+" as %2B
        if email:
            params["email"] = email
        body = await self._read(
            "/contacts/search/duplicate", params=params, version=self._contacts_version
        )
        if not isinstance(body, dict) or "contact" not in body:
            raise _unexpected("/contacts/search/duplicate", "no 'contact' key", kind=_Kind.READ)
        if body["contact"] is None:
            return None
        return self._parse(Contact, body["contact"], kind=_Kind.READ)

    async def get_contact(self, contact_id: str) -> Contact:
        """GET /contacts/{id}."""
        body = await self._read(f"/contacts/{_seg(contact_id)}", version=self._contacts_version)
        return self._parse(Contact, _unwrap(body, "contact"), kind=_Kind.READ)

    async def upsert_contact(self, req: UpsertContactRequest) -> UpsertContactResponse:
        """POST /contacts/upsert in this location.

        Treated as a non-idempotent write (no retry after a timeout or 5xx): upsert matches by
        the location's duplicate rules, contact search lags behind creation (HLD#5) and
        ``createNewIfDuplicateAllowed`` creates outright, so a blind retry can create a second
        contact. Callers that know their request is a pure update may retry themselves.
        """
        payload = req.to_wire()
        payload["locationId"] = self._location_id
        body = await self._request(
            "POST",
            "/contacts/upsert",
            kind=_Kind.WRITE,
            version=self._contacts_version,
            json=payload,
        )
        return self._parse(UpsertContactResponse, body, kind=_Kind.WRITE)

    async def search_contacts(self, query: str, *, limit: int = 20) -> ContactSearchResult:
        """POST /contacts/search: the location's contacts matching ``query`` (name, phone, email,
        company), first ``limit`` of them. Changes nothing, so it is retried like a read."""
        body = await self._request(
            "POST",
            "/contacts/search",
            kind=_Kind.READ,
            version=self._contacts_version,
            json={"locationId": self._location_id, "pageLimit": limit, "query": query},
        )
        return self._parse(ContactSearchResult, body, kind=_Kind.READ)

    async def contact_appointments(self, contact_id: str) -> list[Appointment]:
        """GET /contacts/{id}/appointments (``{"events": [...]}``)."""
        body = await self._read(
            f"/contacts/{_seg(contact_id)}/appointments", version=self._contacts_version
        )
        return self._parse(_AppointmentsAnswer, body, kind=_Kind.READ).events

    # -----------------------------------------------------------------------------------------
    # Location (Version 2021-07-28, as contacts)

    async def get_location(self) -> Location:
        """GET /locations/{locationId}: this location's name and time zone."""
        body = await self._read(
            f"/locations/{_seg(self._location_id)}", version=self._contacts_version
        )
        return self._parse(Location, _unwrap(body, "location"), kind=_Kind.READ)

    async def list_templates(self) -> list[MessageTemplate]:
        """GET /locations/{locationId}/templates: SMS, WhatsApp and email templates.

        Pages of ``TEMPLATES_PAGE_SIZE`` by ``skip`` until a short page, at most
        ``TEMPLATES_MAX_PAGES``. Templates of other types are left out.
        """
        path = f"/locations/{_seg(self._location_id)}/templates"
        found: dict[str, MessageTemplate] = {}
        for page in range(TEMPLATES_MAX_PAGES):
            params: dict[str, str | int] = {
                "originId": self._location_id,
                "deleted": "false",
                "limit": TEMPLATES_PAGE_SIZE,
                "skip": page * TEMPLATES_PAGE_SIZE,
            }
            body = await self._read(path, params=params, version=self._contacts_version)
            entries = self._parse(_TemplatesPage, body, kind=_Kind.READ).templates
            for entry in entries:
                if str(entry.get("type") or "").lower() not in {"sms", "email", "whatsapp"}:
                    continue  # other kinds (e.g. voicemail) have other shapes: not ours
                template = self._parse(_WireTemplate, entry, kind=_Kind.READ).to_template()
                if template is not None:
                    found.setdefault(template.id, template)
            if len(entries) < TEMPLATES_PAGE_SIZE:
                break
        return list(found.values())
