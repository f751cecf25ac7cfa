"""Several sub-accounts: their own contacts, tokens bound to them, and the CLI that lists them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from bot.sandbox.highlevel import (
    ADA_LOVELACE_ID,
    DEFAULT_LOCATION_ID,
    DEFAULT_TOKEN,
    HighLevelSimulator,
)
from bot.sandbox.highlevel.cli import run
from tests.sandbox_highlevel.conftest import Receiver
from tests.sandbox_highlevel.test_cli import parse, printed_settings

FORBIDDEN = "The token does not have access to this location."


@pytest.fixture
async def sim3() -> AsyncIterator[HighLevelSimulator]:
    sim = HighLevelSimulator(locations=3, webhook_retry_delay=0.01, webhook_timeout=2.0)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


def client(sim: HighLevelSimulator, location_id: str) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {sim.pit_for(location_id)}", "Version": "2021-07-28"}
    return httpx.AsyncClient(base_url=sim.base_url, headers=headers, timeout=5.0)


def test_locations_have_fixed_ids_names_tokens_and_their_own_contacts() -> None:
    sim = HighLevelSimulator(locations=3)
    first, second, third = sim.location_ids
    assert (first, second, third) == (
        DEFAULT_LOCATION_ID,
        "sbxLocation000000002",
        "sbxLocation000000003",
    )
    assert [sim.location_name(x) for x in sim.location_ids] == [
        "Sandbox Dental",
        "Sandbox Plumbing",
        "Sandbox Realty",
    ]
    assert sim.company_id == "sbxCompany0000000001"
    assert sim.pit_for(first) == DEFAULT_TOKEN == sim.token
    assert len({sim.pit_for(x) for x in sim.location_ids}) == 3
    one = HighLevelSimulator()
    assert [c.id for c in sim.contacts_of(first)] == [c.id for c in one.contacts.values()]
    assert one.location_ids == [DEFAULT_LOCATION_ID]
    names = [{c.name for c in sim.contacts_of(x)} for x in sim.location_ids]
    phones = [{c.phone for c in sim.contacts_of(x) if c.phone} for x in sim.location_ids]
    assert all(len(n) == 4 for n in names) and not (names[0] & names[1] or names[1] & names[2])
    assert not (phones[0] & phones[1] or phones[1] & phones[2])
    assert sim.find_location("plumbing") == second and sim.find_location("3") == third


async def test_each_token_reaches_only_its_own_location(sim3: HighLevelSimulator) -> None:
    second = sim3.location_ids[1]
    theirs = sim3.contacts_of(second)[0]
    async with client(sim3, second) as api:
        found = await api.post("/contacts/search", json={"locationId": second, "pageLimit": 50})
        assert found.status_code == 200
        ids = {c["id"] for c in found.json()["contacts"]}
        assert ids == {c.id for c in sim3.contacts_of(second)}
        other = await api.post(
            "/contacts/search", json={"locationId": sim3.location_id, "pageLimit": 50}
        )
        assert other.status_code == 403 and other.json()["message"] == FORBIDDEN
        ada = await api.get(f"/contacts/{ADA_LOVELACE_ID}")
        assert ada.status_code == 403 and ada.json()["error"] == "Forbidden"
        send_there = await api.post(
            "/conversations/messages",
            json={"type": "SMS", "contactId": ADA_LOVELACE_ID, "message": "hi"},
            headers={"Version": "2021-04-15"},
        )
        assert send_there.status_code == 403
        sent = await api.post(
            "/conversations/messages",
            json={"type": "SMS", "contactId": theirs.id, "message": "hi"},
            headers={"Version": "2021-04-15"},
        )
        assert sent.status_code == 200, sent.text
        conversation = sent.json()["conversationId"]
        upserted = await api.post(
            "/contacts/upsert",
            json={"locationId": second, "firstName": "Pat", "phone": "+14155559999"},
        )
        assert upserted.json()["contact"]["locationId"] == second
    async with client(sim3, sim3.location_id) as api:
        listed = await api.get(
            f"/conversations/{conversation}/messages", headers={"Version": "2021-04-15"}
        )
        assert listed.status_code == 403
        searched = await api.get(
            "/conversations/search",
            params={"locationId": sim3.location_id},
            headers={"Version": "2021-04-15"},
        )
        assert searched.json()["conversations"] == []
        # Same phone, other location: a different contact.
        duplicate = await api.get(
            "/contacts/search/duplicate",
            params={"locationId": sim3.location_id, "number": "+14155559999"},
        )
        assert duplicate.json()["contact"] is None
    assert sim3.contacts[theirs.id].location_id == second


async def test_webhooks_name_the_contacts_location(
    sim3: HighLevelSimulator, receiver: Receiver
) -> None:
    sim3.webhook_url = receiver.url
    third = sim3.location_ids[2]
    contact = next(c for c in sim3.contacts_of(third) if c.phone)
    await sim3.customer_reply(contact.id, "SMS", "Hello from the third")
    await sim3.drain_webhooks()
    [body] = receiver.bodies
    event = json.loads(body)
    assert (event["locationId"], event["contactId"]) == (third, contact.id)


async def test_cli_with_several_locations_prints_them_and_the_oauth_settings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    task = asyncio.create_task(run(parse("--locations", "3", "--token-ttl", "5")))
    output, settings = await printed_settings(capsys, task)
    output += capsys.readouterr().out
    try:
        assert set(settings) == {
            "GHL_API_URL",
            "GHL_CLIENT_ID",
            "GHL_CLIENT_SECRET",
            "GHL_MARKETPLACE_URL",
            "GHL_WEBHOOK_PUBLIC_KEY",
        }
        for index, name in ((1, "Sandbox Dental"), (2, "Sandbox Plumbing"), (3, "Sandbox Realty")):
            [line] = [
                x for x in output.splitlines() if f"sbxLocation00000000{index}" in x and name in x
            ]
            assert "token=" in line
        pit3 = next(
            line.split("token=")[1].strip()
            for line in output.splitlines()
            if "sbxLocation000000003" in line and "token=" in line
        )
        async with httpx.AsyncClient(timeout=5.0) as http:
            consent = await http.get(
                settings["GHL_MARKETPLACE_URL"] + "/oauth/chooselocation",
                params={
                    "response_type": "code",
                    "redirect_uri": "http://127.0.0.1:9/cb",
                    "client_id": settings["GHL_CLIENT_ID"],
                    "scope": "contacts.readonly",
                    "location": "sbxLocation000000003",
                },
            )
            [code] = parse_qs(urlsplit(consent.headers["Location"]).query)["code"]
            granted = await http.post(
                settings["GHL_API_URL"] + "/oauth/token",
                data={
                    "client_id": settings["GHL_CLIENT_ID"],
                    "client_secret": settings["GHL_CLIENT_SECRET"],
                    "grant_type": "authorization_code",
                    "code": code,
                },
            )
            assert granted.status_code == 200, granted.text
            assert granted.json()["expires_in"] == 5
            assert granted.json()["locationId"] == "sbxLocation000000003"
            searched = await http.post(
                settings["GHL_API_URL"] + "/contacts/search",
                json={"locationId": "sbxLocation000000003", "pageLimit": 10},
                headers={"Authorization": f"Bearer {pit3}", "Version": "2021-07-28"},
            )
            assert searched.status_code == 200 and searched.json()["total"] == 4
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
