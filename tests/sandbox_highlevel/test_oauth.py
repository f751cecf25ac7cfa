"""The simulated Marketplace app: chooselocation, /oauth/token, Company tokens, revocation."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from bot.sandbox.highlevel import ADA_LOVELACE_ID, HighLevelSimulator
from tests.sandbox_highlevel.conftest import Receiver

REDIRECT = "http://127.0.0.1:9/ghl/oauth/callback"
SCOPE = "conversations.readonly conversations/message.write contacts.readonly"
V2 = {"Version": "2021-07-28"}
FORBIDDEN = {
    "statusCode": 403,
    "message": "The token does not have access to this location.",
    "error": "Forbidden",
}


async def started(**options: Any) -> HighLevelSimulator:
    sim = HighLevelSimulator(locations=3, webhook_retry_delay=0.01, webhook_timeout=2.0, **options)
    await sim.start()
    return sim


@pytest.fixture
async def sim3() -> AsyncIterator[HighLevelSimulator]:
    sim = await started()
    try:
        yield sim
    finally:
        await sim.stop()


@pytest.fixture
async def http(sim3: HighLevelSimulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim3.base_url, timeout=5.0) as client:
        yield client


async def consent(
    client: httpx.AsyncClient,
    sim: HighLevelSimulator,
    path: str = "/oauth/chooselocation",
    **extra: str,
) -> str:
    params = {
        "response_type": "code",
        "redirect_uri": REDIRECT,
        "client_id": sim.oauth.client_id,
        "scope": SCOPE,
        **extra,
    }
    answer = await client.get(path, params=params)
    assert answer.status_code == 302, answer.text
    target = urlsplit(answer.headers["Location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == REDIRECT
    [code] = parse_qs(target.query)["code"]
    return code


def token_form(sim: HighLevelSimulator, **fields: str) -> dict[str, str]:
    return {"client_id": sim.oauth.client_id, "client_secret": sim.oauth.client_secret, **fields}


async def exchange(client: httpx.AsyncClient, sim: HighLevelSimulator, code: str) -> httpx.Response:
    form = token_form(sim, grant_type="authorization_code", code=code, redirect_uri=REDIRECT)
    return await client.post("/oauth/token", data=form)


async def refresh(client: httpx.AsyncClient, sim: HighLevelSimulator, token: str) -> httpx.Response:
    form = token_form(sim, grant_type="refresh_token", refresh_token=token)
    return await client.post("/oauth/token", data=form)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **V2}


async def test_location_install_redirects_with_a_code_that_exchanges_once(
    sim3: HighLevelSimulator, http: httpx.AsyncClient
) -> None:
    second = sim3.location_ids[1]
    answer = await http.get(
        "/v2/oauth/chooselocation",
        params={
            "response_type": "code",
            "redirect_uri": REDIRECT,
            "client_id": sim3.oauth.client_id,
            "scope": SCOPE,
            "location": second,
            "state": "s-1",
        },
    )
    assert answer.status_code == 302
    query = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert query["state"] == ["s-1"]
    assert sim3.oauth.scopes_requested == [SCOPE]
    assert sim3.installed_location_ids == [second]

    granted = await exchange(http, sim3, query["code"][0])
    assert granted.status_code == 200, granted.text
    body = granted.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 86399
    assert (body["userType"], body["locationId"]) == ("Location", second)
    assert (body["companyId"], body["scope"]) == (sim3.company_id, SCOPE)
    assert body["userId"] and body["refresh_token"] and "approvedLocations" not in body

    own = sim3.contacts_of(second)[0]
    mine = await http.get(f"/contacts/{own.id}", headers=bearer(body["access_token"]))
    assert mine.status_code == 200 and mine.json()["contact"]["locationId"] == second
    theirs = await http.get(f"/contacts/{ADA_LOVELACE_ID}", headers=bearer(body["access_token"]))
    assert theirs.status_code == 403
    assert {k: v for k, v in theirs.json().items() if k != "traceId"} == FORBIDDEN

    again = await exchange(http, sim3, query["code"][0])
    assert again.status_code == 400
    assert again.json() == {
        "error": "invalid_grant",
        "error_description": "Invalid grant: authorization code is invalid",
    }
    unknown = await exchange(http, sim3, "f" * 40)
    assert unknown.status_code == 400 and unknown.json()["error"] == "invalid_grant"
    assert sim3.oauth.counters.code_rejections == 2
    assert sim3.oauth.counters.tokens_issued == 1


async def test_bad_clients_and_requests_are_refused(
    sim3: HighLevelSimulator, http: httpx.AsyncClient
) -> None:
    page = await http.get(
        "/oauth/chooselocation",
        params={"response_type": "code", "redirect_uri": REDIRECT, "client_id": "nope-x"},
    )
    assert page.status_code == 400 and "text/html" in page.headers["content-type"]
    unknown_location = await http.get(
        "/oauth/chooselocation",
        params={
            "response_type": "code",
            "redirect_uri": REDIRECT,
            "client_id": sim3.oauth.client_id,
            "location": "nowhere",
        },
    )
    assert unknown_location.status_code == 400
    code = await consent(http, sim3)
    wrong_secret = await http.post(
        "/oauth/token",
        data={**token_form(sim3, grant_type="authorization_code", code=code), "client_secret": "x"},
    )
    assert wrong_secret.status_code == 401 and wrong_secret.json()["error"] == "invalid_client"
    as_json = await http.post(
        "/oauth/token", json=token_form(sim3, grant_type="authorization_code", code=code)
    )
    assert as_json.status_code == 400 and as_json.json()["error"] == "invalid_request"
    # Neither spent the code.
    assert (await exchange(http, sim3, code)).status_code == 200


async def test_refresh_rotates_and_a_reused_refresh_token_is_refused_and_counted(
    sim3: HighLevelSimulator, http: httpx.AsyncClient
) -> None:
    first = (await exchange(http, sim3, await consent(http, sim3))).json()
    second = await refresh(http, sim3, first["refresh_token"])
    assert second.status_code == 200
    rotated = second.json()
    assert rotated["refresh_token"] != first["refresh_token"]
    assert rotated["access_token"] != first["access_token"]
    assert rotated["locationId"] == sim3.location_id
    assert sim3.oauth.counters.refresh_token_reuses == 0

    reused = await refresh(http, sim3, first["refresh_token"])
    assert reused.status_code == 400
    assert reused.json() == {
        "error": "invalid_grant",
        "error_description": "Invalid grant: refresh token is invalid",
    }
    assert sim3.oauth.counters.refresh_token_reuses == 1
    third = await refresh(http, sim3, rotated["refresh_token"])
    assert third.status_code == 200
    ok = await http.get(
        f"/contacts/{ADA_LOVELACE_ID}", headers=bearer(third.json()["access_token"])
    )
    assert ok.status_code == 200
    counters = sim3.oauth.counters
    assert (counters.refreshes, counters.tokens_issued, counters.refresh_token_reuses) == (2, 3, 1)
    token = sim3.token_info(third.json()["access_token"])
    assert token is not None and token.requests == 1 and token.kind == "access"


async def test_the_grace_window_answers_a_concurrent_refresh_alike_when_switched_on() -> None:
    sim = await started(refresh_grace_seconds=30.0)
    try:
        async with httpx.AsyncClient(base_url=sim.base_url) as http:
            first = (await exchange(http, sim, await consent(http, sim))).json()
            one, two = await asyncio.gather(
                refresh(http, sim, first["refresh_token"]),
                refresh(http, sim, first["refresh_token"]),
            )
        assert one.status_code == two.status_code == 200
        assert one.json() == two.json()
        assert sim.oauth.counters.refresh_token_reuses == 0
        assert sim.oauth.counters.refresh_grace_answers == 1
    finally:
        await sim.stop()


async def test_an_access_token_expires_after_token_ttl_and_refresh_recovers() -> None:
    sim = await started(token_ttl=1)
    try:
        async with httpx.AsyncClient(base_url=sim.base_url, timeout=5.0) as http:
            granted = (await exchange(http, sim, await consent(http, sim))).json()
            assert granted["expires_in"] == 1
            path = f"/contacts/{ADA_LOVELACE_ID}"
            issued = time.monotonic()
            assert (
                await http.get(path, headers=bearer(granted["access_token"]))
            ).status_code == 200
            deadline = issued + 5.0
            while True:
                answer = await http.get(path, headers=bearer(granted["access_token"]))
                if answer.status_code != 200 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            assert answer.status_code == 401
            assert time.monotonic() - issued >= 0.9  # not before its lifetime
            body = answer.json()
            assert (body["statusCode"], body["message"], body["error"]) == (
                401,
                "Invalid JWT",
                "Unauthorized",
            )
            renewed = await refresh(http, sim, granted["refresh_token"])
            fresh = bearer(renewed.json()["access_token"])
            assert (await http.get(path, headers=fresh)).status_code == 200
    finally:
        await sim.stop()


async def test_a_company_install_lists_locations_and_mints_location_tokens(
    sim3: HighLevelSimulator, http: httpx.AsyncClient
) -> None:
    code = await consent(http, sim3, user_type="Company")
    company = (await exchange(http, sim3, code)).json()
    assert company["userType"] == "Company" and "locationId" not in company
    assert company["approvedLocations"] == sim3.location_ids
    assert company["companyId"] == sim3.company_id

    app_id = sim3.oauth.client_id.split("-")[0]
    listed = await http.get(
        "/oauth/installedLocations",
        params={"companyId": sim3.company_id, "appId": app_id, "isInstalled": "true"},
        headers=bearer(company["access_token"]),
    )
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert body["count"] == 3 and body["installToFutureLocations"] is False
    assert [loc["_id"] for loc in body["locations"]] == sim3.location_ids
    assert body["locations"][1]["name"] == sim3.location_name(sim3.location_ids[1])
    assert all(loc["isInstalled"] and loc["address"] for loc in body["locations"])

    tokens = {}
    for location_id in sim3.location_ids:
        minted = await http.post(
            "/oauth/locationToken",
            data={"companyId": sim3.company_id, "locationId": location_id},
            headers=bearer(company["access_token"]),
        )
        assert minted.status_code == 200, minted.text
        answer = minted.json()
        assert answer["locationId"] == location_id and "refresh_token" not in answer
        assert answer["expires_in"] == 86399
        tokens[location_id] = answer["access_token"]
    third = sim3.location_ids[2]
    contact = sim3.contacts_of(third)[0].id
    assert (
        await http.get(f"/contacts/{contact}", headers=bearer(tokens[third]))
    ).status_code == 200
    cross = await http.get(f"/contacts/{contact}", headers=bearer(tokens[sim3.location_id]))
    assert cross.status_code == 403
    as_company = await http.get(f"/contacts/{contact}", headers=bearer(company["access_token"]))
    assert as_company.status_code == 403
    as_location = await http.get(
        "/oauth/installedLocations",
        params={"companyId": sim3.company_id, "appId": app_id},
        headers=bearer(tokens[third]),
    )
    assert as_location.status_code == 401
    assert sim3.oauth.counters.location_tokens == 3


async def test_uninstall_revokes_tokens_and_sends_a_signed_webhook(
    sim3: HighLevelSimulator, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    sim3.webhook_url = receiver.url
    second = sim3.location_ids[1]
    granted = (await exchange(http, sim3, await consent(http, sim3, location=second))).json()
    await sim3.drain_webhooks()
    key = load_pem_public_key(sim3.public_key_pem.encode())
    assert isinstance(key, Ed25519PublicKey)
    [install_body] = receiver.bodies
    install = json.loads(install_body)
    assert (install["type"], install["locationId"], install["companyId"]) == (
        "INSTALL",
        second,
        sim3.company_id,
    )
    assert install["appId"] == sim3.oauth.app_id and install["webhookId"] and install["timestamp"]

    answer = await http.post(f"/_sandbox/locations/{second}/uninstall")
    assert answer.status_code == 200, answer.text
    assert answer.json()["webhook"]["outcome"] == "delivered"
    uninstall_body = receiver.bodies[1]
    signature = receiver.signatures[1]
    assert signature is not None
    key.verify(base64.b64decode(signature), uninstall_body)  # raises if the signature is wrong
    event = json.loads(uninstall_body)
    assert {k: event[k] for k in ("type", "appId", "locationId")} == {
        "type": "UNINSTALL",
        "appId": sim3.oauth.app_id,
        "locationId": second,
    }
    assert event["webhookId"] and event["timestamp"].endswith("Z")

    contact = sim3.contacts_of(second)[0].id
    revoked = await http.get(f"/contacts/{contact}", headers=bearer(granted["access_token"]))
    assert revoked.status_code == 401 and revoked.json()["message"] == "Invalid JWT"
    again = await refresh(http, sim3, granted["refresh_token"])
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert sim3.oauth.counters.refresh_token_reuses == 0  # revoked, not reused
    assert second not in sim3.installed_location_ids
    pit = await http.get(f"/contacts/{contact}", headers=bearer(sim3.pit_for(second)))
    assert pit.status_code == 200  # a Private Integration Token is not the app's


async def test_a_later_install_sends_install_and_a_company_token_reaches_it(
    sim3: HighLevelSimulator, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    company = (await exchange(http, sim3, await consent(http, sim3, user_type="Company"))).json()
    sim3.webhook_url = receiver.url
    added = sim3.add_location("Sandbox Garage")
    minted_early = await http.post(
        "/oauth/locationToken",
        data={"companyId": sim3.company_id, "locationId": added},
        headers=bearer(company["access_token"]),
    )
    assert minted_early.status_code == 400  # not installed there yet
    answer = await http.post(f"/_sandbox/locations/{added}/install")
    assert answer.status_code == 200 and answer.json()["webhook"]["outcome"] == "delivered"
    event = json.loads(receiver.bodies[-1])
    assert (event["type"], event["locationId"]) == ("INSTALL", added)
    minted = await http.post(
        "/oauth/locationToken",
        data={"companyId": sim3.company_id, "locationId": added},
        headers=bearer(company["access_token"]),
    )
    assert minted.status_code == 200 and minted.json()["locationId"] == added
    unknown = await http.post("/_sandbox/locations/nowhere/install")
    assert unknown.status_code == 404


async def test_unknown_tokens_keep_the_gateway_answer(
    sim3: HighLevelSimulator, http: httpx.AsyncClient
) -> None:
    answer = await http.get(f"/contacts/{ADA_LOVELACE_ID}", headers=bearer("not-a-token"))
    assert answer.status_code == 401
    assert answer.json()["message"] == "Invalid token: access token is invalid"
    granted = (await exchange(http, sim3, await consent(http, sim3))).json()
    as_bearer = await http.get(
        f"/contacts/{ADA_LOVELACE_ID}", headers=bearer(granted["refresh_token"])
    )
    assert as_bearer.status_code == 401
