"""The client's calls for composing a message, against the HighLevel simulator over HTTP:
contact search, templates, a contact's appointments, the location's details."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import SecretStr

from bot.highlevel import (
    Appointment,
    ContactSearchResult,
    HighLevelClient,
    Location,
    MessageTemplate,
    RateLimiter,
    TemplateKind,
)
from bot.sandbox.highlevel import ADA_LOVELACE_ID, GRACE_HOPPER_ID, HighLevelSimulator
from tests.highlevel.conftest import ClientFactory, FakeHighLevel, Reply


@pytest.fixture
async def sim() -> AsyncIterator[HighLevelSimulator]:
    simulator = HighLevelSimulator()
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest.fixture
async def client(sim: HighLevelSimulator) -> AsyncIterator[HighLevelClient]:
    async with HighLevelClient(
        token=SecretStr(sim.token),
        location_id=sim.location_id,
        base_url=sim.base_url,
        limiter=RateLimiter(max_requests=1000, interval=1.0),
        timeout=httpx.Timeout(5.0),
        backoff_base=0.001,
        backoff_max=0.01,
    ) as hl:
        yield hl


async def test_search_contacts_finds_by_partial_name_and_honours_limit(
    sim: HighLevelSimulator, client: HighLevelClient
) -> None:
    made = sim.add_contacts(sim.location_id, 5000)
    target = made[2718]
    found = await client.search_contacts(f"{target.first_name} {target.last_name[:6]}".lower())
    assert isinstance(found, ContactSearchResult)
    assert target.id in [c.id for c in found.contacts]
    hit = next(c for c in found.contacts if c.id == target.id)
    assert (hit.first_name, hit.last_name, hit.phone) == (
        target.first_name,
        target.last_name,
        target.phone,
    )
    assert found.total == len(found.contacts)

    many = await client.search_contacts(target.first_name, limit=7)
    assert len(many.contacts) == 7
    assert many.total is not None and many.total > 7
    assert all(c.first_name == target.first_name for c in many.contacts)
    (sent,) = sim.requests_to("POST", "/contacts/search")[-1:]
    assert sent.body == {
        "locationId": sim.location_id,
        "pageLimit": 7,
        "query": target.first_name,
    }


async def test_search_contacts_is_retried_like_a_read(
    sim: HighLevelSimulator, client: HighLevelClient
) -> None:
    sim.faults.error_next = 1  # the next request answers 500 (a write would not be retried)
    found = await client.search_contacts("lovelace")
    assert [c.id for c in found.contacts] == [ADA_LOVELACE_ID]
    assert [r.status for r in sim.requests_to("POST", "/contacts/search")] == [500, 200]


async def test_list_templates_flattens_each_kind(
    sim: HighLevelSimulator, client: HighLevelClient
) -> None:
    sms = sim.add_template(sim.location_id, name="Reminder", body="See you at {{time}}")
    mail = sim.add_template(
        sim.location_id, name="Invoice", kind="email", subject="Invoice", html="<p>Due</p>"
    )
    wa = sim.add_template(sim.location_id, name="Hola", kind="whatsapp", body="Hola!")
    other = sim.add_location()
    sim.add_template(other, name="Another location's", body="no")

    templates = await client.list_templates()
    assert sorted(templates, key=lambda t: t.name) == [
        MessageTemplate(id=wa, name="Hola", kind=TemplateKind.WHATSAPP, body="Hola!"),
        MessageTemplate(
            id=mail, name="Invoice", kind=TemplateKind.EMAIL, subject="Invoice", html="<p>Due</p>"
        ),
        MessageTemplate(id=sms, name="Reminder", kind=TemplateKind.SMS, body="See you at {{time}}"),
    ]
    (request,) = sim.requests_to("GET", f"/locations/{sim.location_id}/templates")
    assert request.query["originId"] == sim.location_id
    assert request.query["deleted"] == "false"
    assert request.status == 200


async def test_list_templates_pages_with_skip(
    sim: HighLevelSimulator, client: HighLevelClient
) -> None:
    ids = {sim.add_template(sim.location_id, name=f"T{n:03d}", body=str(n)) for n in range(230)}
    templates = await client.list_templates()
    assert {t.id for t in templates} == ids
    requests = sim.requests_to("GET", f"/locations/{sim.location_id}/templates")
    assert [(r.query["skip"], r.query["limit"]) for r in requests] == [
        ("0", "100"),
        ("100", "100"),
        ("200", "100"),
    ]


async def test_list_templates_skips_unknown_types_and_reads_underscore_ids(
    fake: FakeHighLevel, make_client: ClientFactory
) -> None:
    templates = [
        {"_id": "tplSms", "name": "Old style", "type": "sms", "template": {"body": "Hi"}},
        {"id": "tplVoice", "name": "Voicemail", "type": "voicemail", "template": {"url": "x"}},
        {"id": "tplMail", "name": "Mail", "type": "email", "template": {"subject": "S"}},
    ]
    fake.script(
        "GET", "/locations/loc_TEST_1/templates", Reply({"templates": templates, "totalCount": 3})
    )
    found = await make_client().list_templates()
    assert found == [
        MessageTemplate(id="tplSms", name="Old style", kind=TemplateKind.SMS, body="Hi"),
        MessageTemplate(id="tplMail", name="Mail", kind=TemplateKind.EMAIL, subject="S"),
    ]
    assert len(fake.requests) == 1  # a short page ends the paging


async def test_contact_appointments(sim: HighLevelSimulator, client: HighLevelClient) -> None:
    sim.set_timezone(sim.location_id, "America/New_York")
    start = datetime(2030, 6, 1, 14, 0, tzinfo=UTC)
    first = sim.add_appointment(sim.location_id, ADA_LOVELACE_ID, title="Cleaning", start=start)
    second = sim.add_appointment(
        sim.location_id,
        ADA_LOVELACE_ID,
        title="Check-up",
        start=start + timedelta(days=7),
        end=start + timedelta(days=7, hours=1),
        status="cancelled",
    )
    sim.add_appointment(sim.location_id, GRACE_HOPPER_ID, title="Grace's", start=start)

    appointments = await client.contact_appointments(ADA_LOVELACE_ID)
    assert appointments == [
        Appointment(
            id=first,
            title="Cleaning",
            start_time=start,
            end_time=start + timedelta(minutes=30),
            appointmentStatus="confirmed",
        ),
        Appointment(
            id=second,
            title="Check-up",
            start_time=start + timedelta(days=7),
            end_time=start + timedelta(days=7, hours=1),
            appointmentStatus="cancelled",
        ),
    ]
    assert all(a.start_time is not None and a.start_time.tzinfo for a in appointments)
    assert await client.contact_appointments(GRACE_HOPPER_ID) != appointments


async def test_get_location(sim: HighLevelSimulator, client: HighLevelClient) -> None:
    sim.set_timezone(sim.location_id, "Australia/Sydney")
    location = await client.get_location()
    assert location == Location(
        id=sim.location_id, name=sim.location_name(sim.location_id), timezone="Australia/Sydney"
    )
