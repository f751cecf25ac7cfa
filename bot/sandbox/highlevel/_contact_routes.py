"""Contact endpoints: duplicate look-up, upsert, search and get."""

from __future__ import annotations

import functools
from typing import Any

from aiohttp import web

from ._api_base import CONT, ApiBase, _json
from ._errors import ApiError
from ._models import SimContact
from ._records import trace_id
from ._search import SEARCH_FIELDS, filter_errors, group_holds, query_matches, sort_key

__all__ = ["APPOINTMENTS_PATH", "ContactEndpoints"]

APPOINTMENTS_PATH = "/contacts/{contactId}/appointments"


class ContactEndpoints(ApiBase):
    """``/contacts/...`` (part of the app's ``_Api``)."""

    async def duplicate_contact(self, request: web.Request) -> web.Response:
        query = self._query(request, CONT, "/contacts/search/duplicate")
        location_id = self._check_location(request, query.get("locationId"))
        email, number = query.get("email"), query.get("number")
        if not email and not number:
            raise ApiError.bad_request("number or email is required")
        contact = self.sim.find_duplicate(
            email=str(email) if email else None,
            number=str(number) if number else None,
            location_id=location_id,
        )
        found = contact.to_api(location_id) if contact else None
        return _json(200, {"contact": found})

    async def upsert_contact(self, request: web.Request) -> web.Response:
        self._query(request, CONT, "/contacts/upsert")
        body = await self._body(request, "UpsertContactDto", CONT)
        self._check_location(request, body["locationId"])
        created, contact = self.sim.upsert(body)
        return _json(
            200,
            {
                "new": created,
                "contact": contact.to_api(contact.location_id),
                "traceId": trace_id(),
            },
        )

    async def search_contacts(self, request: web.Request) -> web.Response:
        self._query(request, CONT, "/contacts/search")
        body = await self._body(request, "SearchBodyV2DTO", CONT)
        location_id = self._check_location(request, body["locationId"])
        filters: list[dict[str, Any]] = body.get("filters") or []
        sort: list[dict[str, str]] = body.get("sort") or []
        errors = filter_errors(filters, "filters") + [
            f"sort.{i}.field must be one of the following values: {', '.join(SEARCH_FIELDS)}"
            for i, rule in enumerate(sort)
            if rule["field"] not in SEARCH_FIELDS
        ]
        if "searchAfter" in body:
            errors.append("searchAfter is not supported by the sandbox: page with page")
        if errors:
            raise ApiError.unprocessable(errors)
        contacts = self.sim.contacts_of(location_id)
        text = str(body.get("query") or "").strip().lower()
        if text:  # on the stored contacts, before building answers: fast over thousands
            contacts = [c for c in contacts if query_matches(_searchable(c), c.phone, text)]
        limit = int(body["pageLimit"])
        start = (int(body.get("page", 1)) - 1) * limit
        if not filters and not sort:
            page = [c.to_api(location_id) for c in contacts[start : start + limit]]
            return _json(200, {"contacts": page, "total": len(contacts), "traceId": trace_id()})
        found = [contact.to_api(location_id) for contact in contacts]
        found = [entry for entry in found if group_holds(entry, "AND", filters)]
        for rule in reversed(sort):  # stable sorts, last key first
            found.sort(
                key=functools.partial(sort_key, rule["field"]),
                reverse=rule["direction"] == "desc",
            )
        page = found[start : start + limit]
        return _json(200, {"contacts": page, "total": len(found), "traceId": trace_id()})

    async def contact_appointments(self, request: web.Request) -> web.Response:
        """GET /contacts/{contactId}/appointments: ``{"events": [GetEventSchema...]}``."""
        self._query(request, CONT, APPOINTMENTS_PATH)
        sim = self.sim
        contact = sim.contacts.get(request.match_info["contactId"])
        if contact is None:
            raise ApiError.bad_request("Contact not found")
        location_id = self._check_location(request, contact.location_id)
        timezone = sim.locations[location_id].timezone
        events = [a.to_api(timezone) for a in sim.appointments_of(contact.id)]
        return _json(200, {"events": events})

    async def get_contact(self, request: web.Request) -> web.Response:
        self._query(request, CONT, "/contacts/{contactId}")
        contact = self.sim.contacts.get(request.match_info["contactId"])
        if contact is None:
            raise ApiError.bad_request("Contact not found")
        self._check_location(request, contact.location_id)
        return _json(200, {"contact": contact.to_api(contact.location_id)})


def _searchable(contact: SimContact) -> tuple[str | None, ...]:
    company = contact.extra.get("companyName")
    return (
        contact.first_name,
        contact.last_name,
        contact.name,
        contact.email,
        company if isinstance(company, str) else None,
    )
