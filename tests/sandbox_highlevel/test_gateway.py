"""Gateway behaviour: auth, Version header, location scoping, rate limit, unknown routes, log."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from bot.sandbox.highlevel import ADA_LOVELACE_ID, HighLevelSimulator
from tests.sandbox_highlevel.conftest import api_headers


async def test_wrong_or_missing_token_is_401(sim: HighLevelSimulator) -> None:
    async with httpx.AsyncClient(base_url=sim.base_url) as client:
        wrong = await client.get(
            f"/contacts/{ADA_LOVELACE_ID}",
            headers={"Authorization": "Bearer not-the-token", "Version": "2021-07-28"},
        )
        missing = await client.get(
            f"/contacts/{ADA_LOVELACE_ID}", headers={"Version": "2021-07-28"}
        )
    for response in (wrong, missing):
        assert response.status_code == 401
        body = response.json()
        assert body["statusCode"] == 401 and body["error"] == "Unauthorized"
        assert body["message"] == "Invalid token: access token is invalid"
        assert response.headers["X-RateLimit-Remaining"] == "100"  # not counted, still told


async def test_missing_version_header_is_rejected_before_anything_else(
    sim: HighLevelSimulator,
) -> None:
    async with httpx.AsyncClient(base_url=sim.base_url) as client:
        response = await client.post(
            "/conversations/messages",
            headers={"Authorization": f"Bearer {sim.token}"},
            json={"type": "SMS", "contactId": ADA_LOVELACE_ID, "message": "x"},
        )
    assert response.status_code == 400
    assert response.json()["message"] == "version header was not found."
    assert sim.sent_count() == 0


async def test_unknown_version_value_is_rejected(sim: HighLevelSimulator) -> None:
    async with httpx.AsyncClient(base_url=sim.base_url) as client:
        response = await client.get(
            f"/contacts/{ADA_LOVELACE_ID}", headers=api_headers(sim, version="2020-01-01")
        )
    assert response.status_code == 400
    assert response.json()["message"] == "version header is invalid"


@pytest.mark.parametrize(
    "version",
    [
        "2021-04-15",  # the conversations spec
        "2021-07-28",  # the contacts spec
        "2023-02-21",  # what the official TypeScript SDK sends
        "v3",  # what the official Python SDK sends
    ],
)
async def test_every_published_version_works_on_sends_and_look_ups(
    sim: HighLevelSimulator, version: str
) -> None:
    async with httpx.AsyncClient(
        base_url=sim.base_url, headers=api_headers(sim, version)
    ) as client:
        sent = await client.post(
            "/conversations/messages",
            json={"type": "SMS", "contactId": ADA_LOVELACE_ID, "message": "hello"},
        )
        contact = await client.get(f"/contacts/{ADA_LOVELACE_ID}")
    assert sent.status_code == 200 and contact.status_code == 200
    assert sim.sent_count("SMS") == 1


async def test_other_location_is_forbidden(api: httpx.AsyncClient) -> None:
    response = await api.get(
        "/contacts/search/duplicate",
        params={"locationId": "someOtherLocation001", "email": "ada@example.com"},
    )
    assert response.status_code == 403
    assert response.json()["message"] == "The token does not have access to this location."
    upsert = await api.post(
        "/contacts/upsert", json={"locationId": "someOtherLocation001", "firstName": "Eve"}
    )
    assert upsert.status_code == 403


async def test_rate_limit_counts_down_then_429_then_recovers() -> None:
    sim = HighLevelSimulator(rate_limit_max=5, rate_limit_interval_ms=500)
    await sim.start()
    try:
        async with httpx.AsyncClient(base_url=sim.base_url, headers=api_headers(sim)) as client:
            remaining = []
            for _ in range(5):
                response = await client.get(f"/contacts/{ADA_LOVELACE_ID}")
                assert response.status_code == 200
                assert response.headers["X-RateLimit-Max"] == "5"
                assert response.headers["X-RateLimit-Interval-Milliseconds"] == "500"
                assert response.headers["X-RateLimit-Limit-Daily"] == "200000"
                remaining.append(int(response.headers["X-RateLimit-Remaining"]))
            assert remaining == [4, 3, 2, 1, 0]
            limited = await client.get(f"/contacts/{ADA_LOVELACE_ID}")
            assert limited.status_code == 429
            assert limited.headers["X-RateLimit-Remaining"] == "0"
            assert limited.headers["X-RateLimit-Daily-Remaining"] == "199995"
            await asyncio.sleep(0.55)
            again = await client.get(f"/contacts/{ADA_LOVELACE_ID}")
            assert again.status_code == 200
            assert again.headers["X-RateLimit-Remaining"] == "4"
    finally:
        await sim.stop()


async def test_rate_limited_send_is_not_stored() -> None:
    sim = HighLevelSimulator(rate_limit_max=1, rate_limit_interval_ms=60_000)
    await sim.start()
    try:
        async with httpx.AsyncClient(base_url=sim.base_url, headers=api_headers(sim)) as client:
            body = {"type": "SMS", "contactId": ADA_LOVELACE_ID, "message": "x"}
            first = await client.post("/conversations/messages", json=body)
            second = await client.post("/conversations/messages", json=body)
        assert (first.status_code, second.status_code) == (200, 429)
        assert sim.sent_count() == 1
    finally:
        await sim.stop()


async def test_unknown_route_is_a_nest_style_404(api: httpx.AsyncClient) -> None:
    response = await api.post("/conversations/messages/inbound", json={})
    assert response.status_code == 404
    assert response.json()["message"] == "Cannot POST /conversations/messages/inbound"


async def test_request_log_records_what_arrived(
    api: httpx.AsyncClient, sim: HighLevelSimulator
) -> None:
    body = {"type": "SMS", "contactId": ADA_LOVELACE_ID, "message": "logged"}
    await api.post("/conversations/messages", json=body, params={})
    await api.get("/conversations/search", params={"locationId": sim.location_id})
    send, search = sim.requests
    assert (send.method, send.path, send.status, send.body) == (
        "POST",
        "/conversations/messages",
        200,
        body,
    )
    assert send.headers["Version"] == "2021-04-15"
    assert (search.method, search.query, search.status) == (
        "GET",
        {"locationId": sim.location_id},
        200,
    )
    assert sim.requests_to("POST", "/conversations/messages") == [send]
