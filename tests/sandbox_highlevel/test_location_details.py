"""GET /locations/{locationId}: the sub-account's details, for its own token or its agency's."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from bot.sandbox.highlevel import HighLevelSimulator
from tests.sandbox_highlevel._spec_check import LOCATIONS, response_errors
from tests.sandbox_highlevel.test_oauth import bearer, consent, exchange

PATH = "/locations/{locationId}"
WITH_LOCATIONS = "contacts.readonly locations.readonly"
ERROR_EXTRAS = frozenset({"traceId"})
FORBIDDEN = {
    "statusCode": 403,
    "message": "The token does not have access to this location.",
    "error": "Forbidden",
}


@pytest.fixture
async def sim3() -> AsyncIterator[HighLevelSimulator]:
    sim = HighLevelSimulator(locations=3, webhook_retry_delay=0.01, webhook_timeout=2.0)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


@pytest.fixture
async def http(sim3: HighLevelSimulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim3.base_url, timeout=5.0) as client:
        yield client


async def oauth_token(
    http: httpx.AsyncClient, sim: HighLevelSimulator, scope: str, **extra: str
) -> str:
    code = await consent(http, sim, scope=scope, **extra)
    granted = await exchange(http, sim, code)
    assert granted.status_code == 200, granted.text
    token: str = granted.json()["access_token"]
    return token


def without_trace(body: dict[str, object]) -> dict[str, object]:
    assert isinstance(body.pop("traceId"), str)
    return body


async def test_a_location_token_reads_its_own_location_as_the_spec_says(
    sim3: HighLevelSimulator, http: httpx.AsyncClient
) -> None:
    second, third = sim3.location_ids[1], sim3.location_ids[2]
    token = await oauth_token(http, sim3, WITH_LOCATIONS, location=second)
    answer = await http.get(f"/locations/{second}", headers=bearer(token))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert response_errors(LOCATIONS, "GET", PATH, 200, body) == []
    location = body["location"]
    assert (location["id"], location["name"]) == (second, "Sandbox Plumbing")
    assert location["companyId"] == sim3.company_id
    assert location["business"]["name"] == "Sandbox Plumbing"
    assert (location["city"], location["state"], location["country"]) == (
        "San Francisco",
        "CA",
        "US",
    )

    other = await http.get(f"/locations/{third}", headers=bearer(token))
    assert other.status_code == 403
    assert without_trace(other.json()) == FORBIDDEN
    # An id that exists nowhere is not this token's location either.
    unknown = await http.get("/locations/noSuchLocation000000", headers=bearer(token))
    assert unknown.status_code == 403

    # A location's Private Integration Token reads its own location too.
    pit = await http.get(f"/locations/{third}", headers=bearer(sim3.pit_for(third)))
    assert pit.status_code == 200 and pit.json()["location"]["name"] == "Sandbox Realty"
    assert [r.status for r in sim3.requests_to("GET", f"/locations/{second}")] == [200]


async def test_a_company_token_reads_every_location_of_its_agency(
    sim3: HighLevelSimulator, http: httpx.AsyncClient
) -> None:
    token = await oauth_token(http, sim3, WITH_LOCATIONS, user_type="Company")
    names = []
    for location_id in sim3.location_ids:
        answer = await http.get(f"/locations/{location_id}", headers=bearer(token))
        assert answer.status_code == 200, answer.text
        assert response_errors(LOCATIONS, "GET", PATH, 200, answer.json()) == []
        names.append(answer.json()["location"]["name"])
    assert names == [sim3.location_name(x) for x in sim3.location_ids]
    unknown = await http.get("/locations/noSuchLocation000000", headers=bearer(token))
    assert unknown.status_code == 400
    assert response_errors(LOCATIONS, "GET", PATH, 400, unknown.json(), extras=ERROR_EXTRAS) == []
    assert unknown.json()["message"] == "Location not found"


async def test_version_and_scope_are_required(
    sim3: HighLevelSimulator, http: httpx.AsyncClient
) -> None:
    second = sim3.location_ids[1]
    token = await oauth_token(http, sim3, WITH_LOCATIONS, location=second)
    authorised = {"Authorization": f"Bearer {token}"}
    no_version = await http.get(f"/locations/{second}", headers=authorised)
    assert no_version.status_code == 400
    assert no_version.json()["message"] == "version header was not found."
    no_token = await http.get(f"/locations/{second}", headers={"Version": "2021-07-28"})
    assert no_token.status_code == 401

    # An install that did not grant locations.readonly cannot read it.
    narrow = await oauth_token(http, sim3, "contacts.readonly", location=second)
    refused = await http.get(f"/locations/{second}", headers=bearer(narrow))
    assert refused.status_code == 401
    assert refused.json()["message"] == "The token is not authorized for this scope."
    assert response_errors(LOCATIONS, "GET", PATH, 401, refused.json(), extras=ERROR_EXTRAS) == []

    unknown_field = await http.get(
        f"/locations/{second}", params={"fields": "name"}, headers=bearer(token)
    )
    assert unknown_field.status_code == 422
    assert unknown_field.json()["message"] == ["property fields should not exist"]
