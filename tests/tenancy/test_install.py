"""OAuthInstaller over a real OAuth server and real stores: Location and Company installs,
INSTALL/UNINSTALL events, and no token ever stored in plain text."""

from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from bot.highlevel import AccessLostError, InvalidGrantError
from bot.tenancy.install import BRIDGE_SCOPES, NAME_LOOKUP_SECONDS, OAuthInstaller
from tests.tenancy._oauth_server import CLIENT_ID, OAuthServer
from tests.tenancy.conftest import REDIRECT_URI, Instances

AGENCY = [("loc-a", "Alpha Dental"), ("loc-b", "Beta Gym"), ("loc-c", "Gamma Spa")]


async def test_install_url_names_the_app_redirect_and_scopes(instances: Instances) -> None:
    _keeper, installer = await instances.new()
    url = installer.install_url()
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == (
        "https://marketplace.example/oauth/chooselocation"
    )
    assert " " not in url
    query = parse_qs(parts.query, strict_parsing=True)
    assert query == {
        "response_type": ["code"],
        "redirect_uri": [REDIRECT_URI],
        "client_id": [CLIENT_ID],
        "scope": [" ".join(BRIDGE_SCOPES)],
    }
    assert set(BRIDGE_SCOPES) == {
        "conversations.readonly",
        "conversations/message.readonly",
        "conversations/message.write",
        "contacts.readonly",
        "contacts.write",
        "oauth.readonly",
        "oauth.write",
        "locations.readonly",
        "locations/templates.readonly",
        "conversations.write",
        "users.readonly",
    }


async def test_location_install_connects_that_location(
    instances: Instances, server: OAuthServer
) -> None:
    keeper, installer = await instances.new()
    server.location_names["loc-1"] = "Sandbox Plumbing"
    outcome = await installer.complete(server.code_for_location("loc-1", "comp-1"))
    assert outcome.kind == "Location" and outcome.locations == [("loc-1", "Sandbox Plumbing")]
    token = await keeper.access_token("loc-1")
    assert server.live(token.get_secret_value(), "loc-1")
    assert [s.form.get("redirect_uri") for s in server.seen if s.path == "/oauth/token"] == [
        REDIRECT_URI
    ]
    # The name was asked for with the new Location token itself.
    [lookup] = [s for s in server.seen if s.path == "/locations/loc-1"]
    assert lookup.headers["Authorization"] == f"Bearer {token.get_secret_value()}"
    row = await keeper._store.get_location("loc-1")
    assert row is not None
    assert (row.name, row.auth, row.status) == ("Sandbox Plumbing", "location", "connected")
    with pytest.raises(InvalidGrantError):  # the code was used
        await installer.complete(server.code_for_location("loc-1") + "x")


@pytest.mark.parametrize("failure", [403, 503, "hang"])
async def test_a_failed_name_lookup_still_connects_the_location_unnamed(
    instances: Instances,
    server: OAuthServer,
    failure: int | str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="bot.tenancy.install")
    keeper, default = await instances.new()
    assert default._name_timeout == NAME_LOOKUP_SECONDS == 2.0
    installer = OAuthInstaller(
        default._store,
        default._oauth,
        keeper,
        client_id=CLIENT_ID,
        marketplace_url="https://marketplace.example",
        redirect_uri=REDIRECT_URI,
        app_id="app123",
        name_timeout=0.3,
    )
    server.location_names["loc-1"] = "Never Shown"
    if failure == "hang":
        server.hold_location_lookup = True
    else:
        server.fail_location_lookup = int(failure)
    started = time.monotonic()
    outcome = await installer.complete(server.code_for_location("loc-1", "comp-1"))
    assert time.monotonic() - started < 2.0
    assert outcome.kind == "Location" and outcome.locations == [("loc-1", None)]
    row = await keeper._store.get_location("loc-1")
    assert row is not None and (row.name, row.status) == (None, "connected")
    token = await keeper.access_token("loc-1")
    assert server.live(token.get_secret_value(), "loc-1")
    [told] = [r for r in caplog.records if "name of location loc-1" in r.getMessage()]
    assert told.levelno == logging.INFO
    for secret in server.issued:
        assert secret not in caplog.text


async def test_a_reinstall_whose_lookup_fails_keeps_the_known_name(
    instances: Instances, server: OAuthServer
) -> None:
    _keeper, installer = await instances.new()
    server.location_names["loc-1"] = "Sandbox Plumbing"
    await installer.complete(server.code_for_location("loc-1", "comp-1"))
    server.fail_location_lookup = 500
    again = await installer.complete(server.code_for_location("loc-1", "comp-1"))
    assert again.locations == [("loc-1", "Sandbox Plumbing")]


async def test_company_install_connects_every_installed_location(
    instances: Instances, server: OAuthServer
) -> None:
    keeper, installer = await instances.new()
    outcome = await installer.complete(server.code_for_company("comp-1", AGENCY))
    assert outcome.kind == "Company" and outcome.company_id == "comp-1"
    assert outcome.locations == [(lid, name) for lid, name in AGENCY]
    assert outcome.failed == []
    store = keeper._store
    for location_id, name in AGENCY:
        row = await store.get_location(location_id)
        assert row is not None
        assert (row.auth, row.name, row.company_id, row.status) == (
            "company",
            name,
            "comp-1",
            "connected",
        )
        token = await keeper.access_token(location_id)
        assert server.live(token.get_secret_value(), location_id)
    company = await store.get_company("comp-1")
    assert company is not None and company.status == "connected"


async def test_company_locations_and_the_company_token_are_renewed(
    instances: Instances, server: OAuthServer
) -> None:
    server.ttl = 2.0
    one, installer = await instances.new()
    two, _ = await instances.new()
    await installer.complete(server.code_for_company("comp-1", AGENCY))
    deadline = time.monotonic() + 5.0
    failures: list[str] = []

    async def caller(location_id: str) -> None:
        keeper = one if location_id != "loc-b" else two
        while time.monotonic() < deadline:
            token = await keeper.access_token(location_id)
            if not server.live(token.get_secret_value(), location_id):
                failures.append(location_id)
            await asyncio.sleep(0.02)  # pacing the calls

    await asyncio.gather(*(caller(lid) for lid, _ in AGENCY for _ in range(2)))
    assert failures == []
    assert server.reuses == 0
    assert server.refreshes >= 2  # the agency's token, refreshed ahead of its expiry
    minted = [s for s in server.seen if s.path == "/oauth/locationToken"]
    assert len(minted) >= 3 * 3  # each location renewed from the agency token


async def test_install_event_of_a_connected_agency_mints_the_location(
    instances: Instances, server: OAuthServer
) -> None:
    keeper, installer = await instances.new()
    await installer.complete(server.code_for_company("comp-1", AGENCY[:2]))
    server.locations["comp-1"].append(("loc-new", "New Client"))
    outcome = await installer.on_install_event(
        {"type": "INSTALL", "appId": "app123", "companyId": "comp-1", "locationId": "loc-new"}
    )
    assert outcome is not None and outcome.locations == [("loc-new", "New Client")]
    token = await keeper.access_token("loc-new")
    assert server.live(token.get_secret_value(), "loc-new")
    # A Location install of an agency we do not hold: its callback brings the token.
    assert (
        await installer.on_install_event(
            {"type": "INSTALL", "companyId": "comp-other", "locationId": "loc-x"}
        )
        is None
    )
    assert await keeper._store.get_location("loc-x") is None
    # The agency-level INSTALL names no location: nothing to mint.
    assert await installer.on_install_event({"type": "INSTALL", "companyId": "comp-1"}) is None


async def test_uninstall_events_disconnect_and_tell_once(
    instances: Instances, server: OAuthServer
) -> None:
    keeper, installer = await instances.new()
    _other, other_installer = await instances.new()
    await installer.complete(server.code_for_location("loc-1", "comp-9"))
    await installer.complete(server.code_for_company("comp-1", AGENCY))
    event = {"type": "UNINSTALL", "appId": "app123", "locationId": "loc-1"}
    assert await installer.on_uninstall_event(event) == ["loc-1"]
    assert await other_installer.on_uninstall_event(event) == []  # delivered twice
    assert [call[0] for call in instances.lost.calls] == ["loc-1"]
    with pytest.raises(AccessLostError):
        await keeper.access_token("loc-1")

    gone = await installer.on_uninstall_event({"type": "UNINSTALL", "companyId": "comp-1"})
    assert sorted(gone) == ["loc-a", "loc-b", "loc-c"]
    assert sorted(call[0] for call in instances.lost.calls) == ["loc-1", "loc-a", "loc-b", "loc-c"]
    for location_id, _ in AGENCY:
        row = await keeper._store.get_location(location_id)
        assert row is not None and row.status == "disconnected"
    company = await keeper._store.get_company("comp-1")
    assert company is not None and company.status == "disconnected"


async def test_no_token_is_stored_in_plain_text(instances: Instances, server: OAuthServer) -> None:
    keeper, installer = await instances.new()
    await installer.complete(server.code_for_location("loc-1"))
    await installer.complete(server.code_for_company("comp-1", AGENCY))
    for location_id in ("loc-1", "loc-a"):
        token = await keeper.access_token(location_id)
        await keeper.refreshed(location_id, token)
    await keeper.company_token("comp-1", rejected=await keeper.company_token("comp-1"))
    assert server.refreshes == 2 and len(server.issued) >= 10
    rows = instances.backend.query("SELECT * FROM ghl_locations") + instances.backend.query(
        "SELECT * FROM ghl_companies"
    )
    assert len(rows) == 5
    dumped = "\n".join(repr(row) for row in rows)
    assert "gAAAA" in dumped  # Fernet tokens are there...
    for issued in server.issued:
        assert issued not in dumped  # ...and no plain token
