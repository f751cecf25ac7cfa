"""Connecting sub-accounts through the Marketplace app, end to end over real HTTP: a browser's
way through /ghl/install → HighLevel's chooser → the bridge's callback, an agency (Company)
install, and webhooks of locations the bridge has not connected."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bot.sandbox.highlevel import HighLevelSimulator
from bot.sandbox.highlevel._simulator import RequestRecord
from bot.sandbox.stack import INBOX_CHANNEL, SandboxStack
from tests.e2e.conftest import OAuthStackFactory, stack_store
from tests.e2e.test_highlevel_command import highlevel
from tests.reliability._helpers import (
    all_posts,
    eventually,
    inbound_payload,
    signed_body,
    text_of,
)

L1, L2, L3 = "sbxLocation000000001", "sbxLocation000000002", "sbxLocation000000003"


def bearer(record: RequestRecord) -> str:
    """The token a request to the simulator carried."""
    for name, value in record.headers.items():
        if name.lower() == "authorization" and value.startswith("Bearer "):
            return value.removeprefix("Bearer ")
    return ""


def token_location(sim: HighLevelSimulator, record: RequestRecord) -> str | None:
    """The location the request's token is bound to (None: unknown token, or a Company one)."""
    info = sim.token_info(bearer(record))
    return info.location_id if info is not None else None


async def test_a_location_install_through_the_browser_connects_it(
    oauth_stack: SandboxStack,
) -> None:
    sim = oauth_stack.highlevel
    page = await oauth_stack.install(location=L2)

    assert page.status == 200, page.text
    assert "HighLevel connected" in page.text
    # The page names the sub-account: the token response has no name, GET /locations/{id} has.
    assert sim.location_name(L2) == "Sandbox Plumbing"
    assert f"<li>Sandbox Plumbing <small>({L2})</small></li>" in page.text
    assert "/highlevel link" in page.text  # the next step in Slack
    # /ghl/install sent the browser to the marketplace with the bridge's own callback.
    chooser = urlsplit(page.install_redirect)
    assert f"{chooser.scheme}://{chooser.netloc}" == sim.base_url
    query = parse_qs(chooser.query)
    assert query["redirect_uri"] == [f"{oauth_stack.bridge_url}/ghl/oauth/callback"]
    assert query["client_id"] == [sim.oauth.client_id]
    assert {"conversations/message.write", "locations.readonly"} <= set(query["scope"][0].split())
    assert page.callback_url.startswith(f"{oauth_stack.bridge_url}/ghl/oauth/callback?code=")
    assert sim.oauth.counters.codes_exchanged == 1
    [lookup] = sim.requests_to("GET", f"/locations/{L2}")
    assert lookup.status == 200 and lookup.headers["Version"] == "2021-07-28"
    assert token_location(sim, lookup) == L2  # asked with the new Location token

    async with stack_store(oauth_stack) as store:
        record = await store.get_location(L2)
        others = [await store.get_location(L) for L in (L1, L3)]
    assert record is not None
    assert (record.status, record.auth) == ("connected", "location")
    assert record.name == "Sandbox Plumbing"  # so /highlevel status and link know it
    assert record.access_token and record.refresh_token and record.expires_at
    # Stored encrypted: no live token of the simulator appears in the row.
    for token in sim.oauth.tokens:
        assert token not in record.access_token
        assert token not in record.refresh_token
    assert others == [None, None]
    # /highlevel status names it too.
    status = await highlevel(oauth_stack, "status")
    assert "Sandbox Plumbing" in status and L2 in status

    async with httpx.AsyncClient(timeout=10) as browser:
        # The same code again (a reload of the callback page): HighLevel refuses it.
        again = await browser.get(page.callback_url)
        assert again.status_code == 400, again.text
        assert "already used" in again.text
        assert "/ghl/install" in again.text
        missing = await browser.get(f"{oauth_stack.bridge_url}/ghl/oauth/callback")
        assert missing.status_code == 400
        assert "no valid authorization code" in missing.text
        declined = await browser.get(
            f"{oauth_stack.bridge_url}/ghl/oauth/callback",
            params={"error": "access_denied", "error_description": "User denied"},
        )
        assert declined.status_code == 400
        assert "did not grant access" in declined.text
        garbage = await browser.get(
            f"{oauth_stack.bridge_url}/ghl/oauth/callback", params={"code": "not-a-code"}
        )
        assert garbage.status_code == 400
        assert "already used or has expired" in garbage.text
    assert sim.oauth.counters.code_rejections == 2
    async with stack_store(oauth_stack) as store:
        assert [r.location_id for r in await store.list_locations()] == [L2]


async def test_an_agency_install_connects_every_location_with_its_own_token(
    oauth_stack: SandboxStack,
) -> None:
    sim = oauth_stack.highlevel
    page = await oauth_stack.install(company=True)

    assert page.status == 200, page.text
    for location_id in (L1, L2, L3):
        assert location_id in page.text
        assert sim.location_name(location_id) in page.text
    assert [r.status for r in sim.requests_to("GET", "/oauth/installedLocations")] == [200]
    minted = sim.requests_to("POST", "/oauth/locationToken")
    assert sorted(r.status for r in minted) == [200, 200, 200]
    assert sim.oauth.counters.location_tokens == 3

    async with stack_store(oauth_stack) as store:
        company = await store.get_company(sim.company_id)
        records = await store.list_locations(status="connected")
    assert company is not None and company.status == "connected"
    assert [(r.location_id, r.name, r.auth, r.company_id) for r in records] == [
        (L1, "Sandbox Dental", "company", sim.company_id),
        (L2, "Sandbox Plumbing", "company", sim.company_id),
        (L3, "Sandbox Realty", "company", sim.company_id),
    ]
    assert all(r.access_token and r.refresh_token is None for r in records)
    assert len({r.access_token for r in records}) == 3


async def test_webhooks_of_locations_not_connected_are_answered_200_and_not_stored(
    oauth_stack_on: OAuthStackFactory,
) -> None:
    key = Ed25519PrivateKey.generate()
    sim = HighLevelSimulator(locations=3, signing_key=key)
    async with oauth_stack_on(highlevel=sim) as stack:
        url = f"{stack.bridge_url}/ghl/webhooks"

        def inbound(location_id: str, text: str) -> Any:
            contact = sim.contacts_of(location_id)[0]
            return signed_body(
                key,
                inbound_payload(
                    location_id=location_id,
                    contact_id=contact.id,
                    conversation_id=f"conversation-{location_id}",
                    text=text,
                ),
            )

        async with httpx.AsyncClient(timeout=10) as http:
            # Nothing connected yet: even the app's own location is not served.
            before = inbound(L1, "before any install")
            response = await http.post(url, content=before.body, headers=before.headers)
            assert response.status_code == 200
            assert response.json()["stored"] is False

            page = await stack.install(location=L1)
            assert page.status == 200
            foreign = inbound(L2, "a location the app is not connected to")
            response = await http.post(url, content=foreign.body, headers=foreign.headers)
            assert (response.status_code, response.json()["stored"]) == (200, False)
            ours = inbound(L1, "from the connected location")
            response = await http.post(url, content=ours.body, headers=ours.headers)
            assert response.json() == {"ok": True, "stored": True}

        # The simulator's own signed webhooks: an INSTALL of a location whose app install
        # this bridge never completed (no agency is connected) connects nothing.
        delivery = await sim.install(L3)
        await sim.drain_webhooks()
        assert delivery.outcome == "delivered"
        async with stack_store(stack) as store:
            assert await store.get_location(L3) is None
            assert await store.count_inbound() == 1

        shown = await eventually(
            lambda: "\n".join(text_of(p) for p in all_posts(stack.slack, [INBOX_CHANNEL]))
        )
        assert "from the connected location" in shown
        assert "before any install" not in shown
        assert "not connected to" not in shown
