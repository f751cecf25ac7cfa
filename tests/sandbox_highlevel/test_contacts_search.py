"""POST /contacts/search: free-text query, filters, sort, pages; validation like HighLevel's."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bot.sandbox.highlevel import (
    ADA_LOVELACE_ID,
    ALAN_TURING_ID,
    GRACE_HOPPER_ID,
    KATHERINE_JOHNSON_ID,
    HighLevelSimulator,
)

CONTACTS_VERSION = {"Version": "2021-07-28"}


async def search(
    api: httpx.AsyncClient, sim: HighLevelSimulator, **body: Any
) -> tuple[list[str], int]:
    response = await api.post(
        "/contacts/search",
        json={"locationId": sim.location_id, "pageLimit": 20, **body},
        headers=CONTACTS_VERSION,
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    return [contact["id"] for contact in answer["contacts"]], answer["total"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("lovelace", [ADA_LOVELACE_ID]),
        ("Grace Hopper", [GRACE_HOPPER_ID]),
        ("KATHERINE@example.com", [KATHERINE_JOHNSON_ID]),
        ("+14155550102", [ALAN_TURING_ID]),
        ("(415) 555-0100", [ADA_LOVELACE_ID]),
        ("4155550", [ADA_LOVELACE_ID, ALAN_TURING_ID]),
        ("example.com", [ADA_LOVELACE_ID, GRACE_HOPPER_ID, KATHERINE_JOHNSON_ID]),
        ("nobody at all", []),
    ],
)
async def test_query_finds_by_name_phone_and_email(
    api: httpx.AsyncClient, sim: HighLevelSimulator, query: str, expected: list[str]
) -> None:
    assert await search(api, sim, query=query) == (expected, len(expected))


async def test_query_finds_by_company(api: httpx.AsyncClient, sim: HighLevelSimulator) -> None:
    upserted = await api.post(
        "/contacts/upsert",
        json={"locationId": sim.location_id, "firstName": "Mary", "companyName": "NACA Langley"},
        headers=CONTACTS_VERSION,
    )
    assert upserted.status_code == 200
    assert await search(api, sim, query="langley") == ([upserted.json()["contact"]["id"]], 1)


async def test_filters_and_groups(api: httpx.AsyncClient, sim: HighLevelSimulator) -> None:
    by_phone = [{"field": "phone", "operator": "eq", "value": "+1 415 555 0102"}]
    assert await search(api, sim, filters=by_phone) == ([ALAN_TURING_ID], 1)
    no_phone = [{"field": "phone", "operator": "not_exists"}]
    assert await search(api, sim, filters=no_phone) == ([GRACE_HOPPER_ID], 1)
    either = [
        {
            "group": "OR",
            "filters": [
                {"field": "email", "operator": "eq", "value": "GRACE@example.com"},
                {"field": "firstNameLowerCase", "operator": "contains", "value": "kath"},
            ],
        },
        {"field": "lastName", "operator": "not_eq", "value": "Johnson"},
    ]
    assert await search(api, sim, filters=either) == ([GRACE_HOPPER_ID], 1)


async def test_pages_and_sort(api: httpx.AsyncClient, sim: HighLevelSimulator) -> None:
    by_name_desc = [{"field": "firstNameLowerCase", "direction": "desc"}]
    first = await search(api, sim, pageLimit=3, page=1, sort=by_name_desc)
    second = await search(api, sim, pageLimit=3, page=2, sort=by_name_desc)
    assert first == ([KATHERINE_JOHNSON_ID, GRACE_HOPPER_ID, ALAN_TURING_ID], 4)
    assert second == ([ADA_LOVELACE_ID], 4)


async def test_the_official_python_sdk_version_header_is_answered(
    api: httpx.AsyncClient, sim: HighLevelSimulator
) -> None:
    # highlevel-api-python sends Version: v3 and the body as given; it used to get a 404.
    response = await api.post(
        "/contacts/search",
        json={"locationId": sim.location_id, "pageLimit": 1, "query": "ada"},
        headers={"Version": "v3"},
    )
    assert response.status_code == 200
    assert [c["id"] for c in response.json()["contacts"]] == [ADA_LOVELACE_ID]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, ["locationId should not be empty", "pageLimit should not be empty"]),
        (
            {"pageLimit": "20"},
            ["pageLimit must be a number conforming to the specified constraints"],
        ),
        ({"pageLimit": 501}, ["pageLimit must not be greater than 500"]),
        ({"pageLimit": 20, "limit": 5}, ["property limit should not exist"]),
        (
            {"pageLimit": 20, "query": "x" * 76},
            ["query must be shorter than or equal to 75 characters"],
        ),
        (
            {"pageLimit": 20, "filters": [{"field": "phone", "operator": "like", "value": "1"}]},
            [
                "filters.0.operator must be one of the following values: eq, not_eq, contains, "
                "not_contains, exists, not_exists, range"
            ],
        ),
        (
            {"pageLimit": 20, "filters": [{"field": "shoeSize", "operator": "eq", "value": 9}]},
            ["filters.0.field must be one of the following values: "],
        ),
        (
            {"pageLimit": 20, "filters": [{"field": "phone", "operator": "eq"}]},
            ["filters.0.value should not be empty"],
        ),
        (
            {"pageLimit": 20, "filters": [{"group": "OR"}]},
            ["filters.0 must have group and filters, and nothing else"],
        ),
    ],
)
async def test_invalid_bodies_get_422_saying_what_is_wrong(
    api: httpx.AsyncClient, sim: HighLevelSimulator, body: dict[str, Any], expected: list[str]
) -> None:
    if body:
        body = {"locationId": sim.location_id, **body}
    response = await api.post("/contacts/search", json=body, headers=CONTACTS_VERSION)
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["error"] == "Unprocessable Entity"
    assert len(answer["message"]) == len(expected)
    for message, start in zip(answer["message"], expected, strict=True):
        assert message.startswith(start), answer


async def test_malformed_json_is_400_and_another_location_is_403(
    api: httpx.AsyncClient, sim: HighLevelSimulator
) -> None:
    malformed = await api.post(
        "/contacts/search",
        content=b'{"locationId": ',
        headers={**CONTACTS_VERSION, "Content-Type": "application/json"},
    )
    assert malformed.status_code == 400
    assert malformed.json()["message"].startswith("Unexpected token in JSON")
    elsewhere = await api.post(
        "/contacts/search",
        json={"locationId": "otherLocation00000001", "pageLimit": 5},
        headers=CONTACTS_VERSION,
    )
    assert elsewhere.status_code == 403
