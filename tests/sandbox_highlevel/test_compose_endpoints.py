"""What composing a message needs from the simulator: contact search over thousands, templates,
appointments, the location's time zone, and the checks a send makes on what it names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from bot.sandbox.highlevel import (
    ADA_LOVELACE_ID,
    GRACE_HOPPER_ID,
    HighLevelSimulator,
    SimContact,
)
from tests.sandbox_highlevel._spec_check import (
    CONTACTS,
    LOCATIONS,
    response_errors,
    schema_errors,
)

CONTACTS_VERSION = {"Version": "2021-07-28"}
SEND = "/conversations/messages"


def brute_force(contacts: list[SimContact], text: str) -> set[str]:
    """The test's own reading of "substring, any case, of a name, email or phone"."""
    wanted = text.lower()
    return {
        c.id
        for c in contacts
        if any(
            wanted in (value or "").lower()
            for value in (c.first_name, c.last_name, c.name, c.email, c.phone)
        )
    }


async def search(
    api: httpx.AsyncClient, location_id: str, query: str, limit: int = 100, **extra: Any
) -> dict[str, Any]:
    response = await api.post(
        "/contacts/search",
        json={"locationId": location_id, "pageLimit": limit, "query": query},
        headers={**CONTACTS_VERSION, **extra},
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


# ------------------------------------------------------------------ search over 5,000


async def test_bulk_seed_makes_5000_distinct_contacts(sim: HighLevelSimulator) -> None:
    made = sim.add_contacts(sim.location_id, 5000)
    assert len(made) == 5000
    assert len({c.id for c in made}) == 5000
    assert len({c.name for c in made}) == 5000
    assert len({c.phone for c in made}) == 5000
    assert len({c.email for c in made}) == 5000
    assert all(c.location_id == sim.location_id for c in made)
    assert len(sim.contacts_of(sim.location_id)) == 5000 + 4  # and the four seeded ones


async def test_search_over_5000_finds_by_partial_name(
    sim: HighLevelSimulator, api: httpx.AsyncClient
) -> None:
    made = sim.add_contacts(sim.location_id, 5000)
    target = made[4321]
    # Partial first name and partial surname, in another case.
    query = f"{target.first_name[2:]} {target.last_name[:5]}".upper()
    everyone = sim.contacts_of(sim.location_id)
    expected = brute_force(everyone, query)
    assert target.id in expected
    assert len(expected) < 10  # a query that narrows, so finding the target means something

    answer = await search(api, sim.location_id, query)
    assert {c["id"] for c in answer["contacts"]} == expected
    assert answer["total"] == len(expected)

    # Phone digits however formatted, and email, find it alone.
    digits = target.phone[-10:] if target.phone else ""
    formatted = f"({digits[:3]}) {digits[3:6]}-{digits[6:]}"
    assert [c["id"] for c in (await search(api, sim.location_id, formatted))["contacts"]] == [
        target.id
    ]
    assert [
        c["id"] for c in (await search(api, sim.location_id, target.email or "?"))["contacts"]
    ] == [target.id]

    for contact in made[100:4900:800]:
        found = await search(api, sim.location_id, contact.last_name.lower())
        assert contact.id in {c["id"] for c in found["contacts"]}


async def test_search_honours_page_limit_and_matches_each_name_part(
    sim: HighLevelSimulator, api: httpx.AsyncClient
) -> None:
    sim.add_contacts(sim.location_id, 400)
    everyone = sim.contacts_of(sim.location_id)
    expected = brute_force(everyone, "olivia")
    assert len(expected) > 7
    answer = await search(api, sim.location_id, "olivia", limit=7)
    assert len(answer["contacts"]) == 7
    assert answer["total"] == len(expected)
    assert {c["id"] for c in answer["contacts"]} <= expected
    # First name alone, last name alone, full name, company.
    assert [c["id"] for c in (await search(api, sim.location_id, "ADA"))["contacts"]] == [
        ADA_LOVELACE_ID
    ]
    assert [c["id"] for c in (await search(api, sim.location_id, "hopper"))["contacts"]] == [
        GRACE_HOPPER_ID
    ]
    assert [c["id"] for c in (await search(api, sim.location_id, "grace hop"))["contacts"]] == [
        GRACE_HOPPER_ID
    ]
    upserted = await api.post(
        "/contacts/upsert",
        json={"locationId": sim.location_id, "firstName": "Mary", "companyName": "Acme Widgets"},
        headers=CONTACTS_VERSION,
    )
    assert upserted.status_code == 200, upserted.text
    found = await search(api, sim.location_id, "widget")
    assert [c["id"] for c in found["contacts"]] == [upserted.json()["contact"]["id"]]


async def test_search_never_mixes_locations(
    sim: HighLevelSimulator, api: httpx.AsyncClient
) -> None:
    other = sim.add_location()
    theirs = sim.add_contacts(other, 300)
    ours = sim.add_contacts(sim.location_id, 300)
    # Same first names in both: the query matches people of both locations.
    mine = await search(api, sim.location_id, "olivia", limit=500)
    assert mine["contacts"]
    assert {c["locationId"] for c in mine["contacts"]} == {sim.location_id}
    assert {c["id"] for c in mine["contacts"]} == brute_force(ours, "olivia")
    headers = {"Authorization": f"Bearer {sim.pit_for(other)}"}
    their_answer = await search(api, other, "olivia", limit=500, **headers)
    assert {c["id"] for c in their_answer["contacts"]} == brute_force(theirs, "olivia")
    # Asking for the other location with our token is refused.
    refused = await api.post(
        "/contacts/search",
        json={"locationId": other, "pageLimit": 10, "query": "olivia"},
        headers=CONTACTS_VERSION,
    )
    assert refused.status_code == 403


# ------------------------------------------------------------------ templates


async def test_templates_need_origin_id(sim: HighLevelSimulator, api: httpx.AsyncClient) -> None:
    sim.add_template(sim.location_id, name="Hello", body="Hi there")
    path = f"/locations/{sim.location_id}/templates"
    missing = await api.get(path, headers=CONTACTS_VERSION)
    assert missing.status_code == 422, missing.text
    assert "originId should not be empty" in missing.json()["message"]
    ok = await api.get(path, params={"originId": sim.location_id}, headers=CONTACTS_VERSION)
    assert ok.status_code == 200, ok.text


async def test_templates_answer_in_the_spec_shape_and_page(
    sim: HighLevelSimulator, api: httpx.AsyncClient
) -> None:
    sms = sim.add_template(sim.location_id, name="Reminder", kind="sms", body="See you soon")
    mail = sim.add_template(
        sim.location_id, name="Invoice", kind="email", subject="Your invoice", html="<p>Due</p>"
    )
    wa = sim.add_template(sim.location_id, name="WA hello", kind="whatsapp", body="Hola")
    other = sim.add_location()
    sim.add_template(other, name="Not ours", body="secret")
    path = f"/locations/{sim.location_id}/templates"
    params = {"originId": sim.location_id, "deleted": "false", "limit": "100", "skip": "0"}
    response = await api.get(path, params=params, headers=CONTACTS_VERSION)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["totalCount"] == 3
    by_id = {t["id"]: t for t in answer["templates"]}
    assert set(by_id) == {sms, mail, wa}
    assert by_id[sms]["type"] == "sms"
    assert by_id[sms]["template"]["body"] == "See you soon"
    assert by_id[mail]["template"]["subject"] == "Your invoice"
    assert by_id[mail]["template"]["html"] == "<p>Due</p>"
    assert by_id[wa]["type"] == "whatsapp"
    assert by_id[wa]["template"]["body"] == "Hola"
    for entry in answer["templates"]:
        schema = "GetEmailTemplateResponseSchema" if entry["type"] == "email" else None
        errors = schema_errors(LOCATIONS, schema or "GetSmsTemplateResponseSchema", entry)
        assert errors == [], errors
    # Paging by skip (an offset) and filtering by type.
    first = await api.get(path, params={**params, "limit": "2"}, headers=CONTACTS_VERSION)
    rest = await api.get(
        path, params={**params, "limit": "2", "skip": "2"}, headers=CONTACTS_VERSION
    )
    ids = [t["id"] for t in first.json()["templates"] + rest.json()["templates"]]
    assert len(first.json()["templates"]) == 2
    assert sorted(ids) == sorted([sms, mail, wa])
    emails = await api.get(path, params={**params, "type": "email"}, headers=CONTACTS_VERSION)
    assert [t["id"] for t in emails.json()["templates"]] == [mail]
    # Another location's templates are not ours to read.
    theirs = await api.get(
        f"/locations/{other}/templates", params={"originId": other}, headers=CONTACTS_VERSION
    )
    assert theirs.status_code == 403


# ------------------------------------------------------------------ appointments and location


async def test_appointments_of_a_contact_in_the_spec_shape(
    sim: HighLevelSimulator, api: httpx.AsyncClient
) -> None:
    sim.set_timezone(sim.location_id, "Europe/London")
    start = datetime(2030, 1, 15, 9, 30, tzinfo=UTC)
    later = sim.add_appointment(
        sim.location_id, ADA_LOVELACE_ID, title="Check-up", start=start + timedelta(days=1)
    )
    sooner = sim.add_appointment(
        sim.location_id, ADA_LOVELACE_ID, title="Cleaning", start=start, status="cancelled"
    )
    sim.add_appointment(sim.location_id, GRACE_HOPPER_ID, title="Not Ada's", start=start)
    response = await api.get(f"/contacts/{ADA_LOVELACE_ID}/appointments", headers=CONTACTS_VERSION)
    assert response.status_code == 200, response.text
    body = response.json()
    assert response_errors(CONTACTS, "GET", "/contacts/{contactId}/appointments", 200, body) == []
    events = body["events"]
    assert [e["id"] for e in events] == [sooner, later]
    assert events[0]["title"] == "Cleaning"
    assert events[0]["appointmentStatus"] == "cancelled"
    assert datetime.fromisoformat(events[0]["startTime"]) == start
    assert datetime.fromisoformat(events[0]["endTime"]) == start + timedelta(minutes=30)
    unknown = await api.get("/contacts/nobody/appointments", headers=CONTACTS_VERSION)
    assert unknown.status_code == 400


async def test_location_timezone_can_be_seeded(
    sim: HighLevelSimulator, api: httpx.AsyncClient
) -> None:
    sim.set_timezone(sim.location_id, "Asia/Kolkata")
    response = await api.get(f"/locations/{sim.location_id}", headers=CONTACTS_VERSION)
    assert response.status_code == 200, response.text
    assert response.json()["location"]["timezone"] == "Asia/Kolkata"
    other = sim.add_location("Sandbox Tokyo", timezone="Asia/Tokyo")
    assert sim.locations[other].timezone == "Asia/Tokyo"
    with pytest.raises(ValueError, match="time zone"):
        sim.set_timezone(sim.location_id, "Mars/Olympus")


# ------------------------------------------------------------------ sends naming things


async def send(api: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await api.post(SEND, json=body)


async def test_email_from_must_be_a_verified_sender_once_any_is_set(
    sim: HighLevelSimulator, api: httpx.AsyncClient
) -> None:
    email = {"type": "Email", "contactId": ADA_LOVELACE_ID, "subject": "Hi", "html": "<p>x</p>"}
    # No verified senders configured: any emailFrom goes.
    anyone = await send(api, **email, emailFrom="whoever@example.org")
    assert anyone.status_code == 200, anyone.text
    sim.add_verified_sender(sim.location_id, "Front Desk <desk@dental.example.com>")
    refused = await send(api, **email, emailFrom="whoever@example.org")
    assert refused.status_code == 422
    assert "emailFrom" in " ".join(refused.json()["message"])
    before = len(sim.emails)
    accepted = await send(api, **email, emailFrom="DESK@dental.example.com")
    assert accepted.status_code == 200, accepted.text
    assert len(sim.emails) == before + 1
    stored = sim.emails[accepted.json()["emailMessageId"]]
    assert stored.from_ == "DESK@dental.example.com"


async def test_email_to_must_be_one_of_the_contacts_addresses(
    sim: HighLevelSimulator, api: httpx.AsyncClient
) -> None:
    contact = sim.add_contact(
        "Mary", "Jackson", email="mary@example.com", additional_emails=["mj@work.example.com"]
    )
    email = {"type": "Email", "contactId": contact.id, "subject": "Hi", "message": "Hello"}
    refused = await send(api, **email, emailTo="stranger@example.com")
    assert refused.status_code == 422
    assert refused.json()["message"] == ["emailTo must be an email address of the contact"]
    assert sim.sent_count("Email") == 0
    accepted = await send(api, **email, emailTo="mj@work.example.com")
    assert accepted.status_code == 200, accepted.text
    assert sim.emails[accepted.json()["emailMessageId"]].to == ["mj@work.example.com"]


async def test_to_number_must_be_one_of_the_contacts_numbers(
    sim: HighLevelSimulator, api: httpx.AsyncClient
) -> None:
    contact = sim.add_contact(
        "Dorothy", "Vaughan", phone="+14155550199", additional_phones=["+14155550177"]
    )
    sms = {"type": "SMS", "contactId": contact.id, "message": "Running late"}
    refused = await send(api, **sms, toNumber="+14155550000")
    assert refused.status_code == 422
    assert refused.json()["message"] == ["toNumber must be a phone number of the contact"]
    assert sim.sent_count("SMS") == 0
    accepted = await send(api, **sms, toNumber="+14155550177")
    assert accepted.status_code == 200, accepted.text
    assert sim.messages[accepted.json()["messageId"]].to_number == "+14155550177"


async def test_appointment_id_must_be_the_contacts(
    sim: HighLevelSimulator, api: httpx.AsyncClient
) -> None:
    start = datetime(2030, 3, 1, 15, 0, tzinfo=UTC)
    ada_visit = sim.add_appointment(sim.location_id, ADA_LOVELACE_ID, start=start)
    grace_visit = sim.add_appointment(sim.location_id, GRACE_HOPPER_ID, start=start)
    sms = {"type": "SMS", "contactId": ADA_LOVELACE_ID, "message": "See you then"}
    for wrong in (grace_visit, "noSuchAppointment000"):
        refused = await send(api, **sms, appointmentId=wrong)
        assert refused.status_code == 400, refused.text
        assert "Appointment" in refused.json()["message"]
    assert sim.sent_count() == 0
    accepted = await send(api, **sms, appointmentId=ada_visit)
    assert accepted.status_code == 200, accepted.text
    assert sim.messages[accepted.json()["messageId"]].appointment_id == ada_visit


async def test_template_id_must_be_the_locations(
    sim: HighLevelSimulator, api: httpx.AsyncClient
) -> None:
    ours = sim.add_template(sim.location_id, name="Reminder", body="Your visit is tomorrow")
    other = sim.add_location()
    theirs = sim.add_template(other, name="Theirs", body="Not for you")
    sms = {"type": "SMS", "contactId": ADA_LOVELACE_ID}
    for wrong in (theirs, "noSuchTemplate000000"):
        refused = await send(api, **sms, templateId=wrong)
        assert refused.status_code == 400, refused.text
        assert refused.json()["message"] == "Template not found"
    assert sim.sent_count() == 0
    accepted = await send(api, **sms, templateId=ours)
    assert accepted.status_code == 200, accepted.text
    stored = sim.messages[accepted.json()["messageId"]]
    assert stored.template_id == ours
    assert stored.body == "Your visit is tomorrow"  # the template's text, as none was given
