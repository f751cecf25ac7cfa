"""HighLevelOAuth against a real OAuth server on 127.0.0.1 (tests/tenancy/_oauth_server.py)."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr

from bot.highlevel import (
    AuthError,
    HighLevelOAuth,
    InvalidGrantError,
    ServerError,
    UnavailableError,
    ValidationError,
)
from tests.tenancy._oauth_server import (
    APP_ID,
    CLIENT_ID,
    CLIENT_SECRET,
    VERSION,
    OAuthServer,
    running,
)


@pytest.fixture
async def server() -> AsyncIterator[OAuthServer]:
    async with running(OAuthServer()) as started:
        yield started


@pytest.fixture
async def oauth(server: OAuthServer) -> AsyncIterator[HighLevelOAuth]:
    client = HighLevelOAuth(
        client_id=CLIENT_ID, client_secret=SecretStr(CLIENT_SECRET), base_url=server.url
    )
    yield client
    await client.aclose()


async def test_code_exchange_is_form_encoded_without_version(
    server: OAuthServer, oauth: HighLevelOAuth
) -> None:
    code = server.code_for_location("loc-1", "comp-1")
    grant = await oauth.exchange_code(
        code, redirect_uri="https://bridge.example/ghl/oauth/callback"
    )
    assert grant.user_type == "Location"
    assert grant.location_id == "loc-1" and grant.company_id == "comp-1"
    assert server.live(grant.access_token.get_secret_value(), "loc-1")
    assert grant.refresh_token is not None and grant.expires_in == server.ttl
    [seen] = server.seen
    assert seen.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
    assert "Version" not in seen.headers
    assert seen.form == {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": "https://bridge.example/ghl/oauth/callback",
    }


async def test_used_code_and_used_refresh_token_are_invalid_grant(
    server: OAuthServer, oauth: HighLevelOAuth
) -> None:
    code = server.code_for_location("loc-1")
    grant = await oauth.exchange_code(code, redirect_uri="https://x/cb")
    with pytest.raises(InvalidGrantError) as used_code:
        await oauth.exchange_code(code, redirect_uri="https://x/cb")
    assert used_code.value.status_code == 400
    assert grant.refresh_token is not None
    renewed = await oauth.refresh(grant.refresh_token, user_type="Location")
    assert renewed.refresh_token is not None
    assert renewed.refresh_token.get_secret_value() != grant.refresh_token.get_secret_value()
    assert server.seen[-1].form["grant_type"] == "refresh_token"
    assert server.seen[-1].form["user_type"] == "Location"
    with pytest.raises(InvalidGrantError):
        await oauth.refresh(grant.refresh_token, user_type="Location")
    assert server.reuses == 1


async def test_bad_client_secret_is_auth_error(server: OAuthServer) -> None:
    client = HighLevelOAuth(
        client_id=CLIENT_ID, client_secret=SecretStr("nope"), base_url=server.url
    )
    try:
        with pytest.raises(AuthError) as caught:
            await client.exchange_code(server.code_for_location("l"), redirect_uri="https://x/cb")
    finally:
        await client.aclose()
    assert not isinstance(caught.value, InvalidGrantError)
    assert "client id/secret" in str(caught.value)


async def test_server_error_on_refresh_may_have_acted(
    server: OAuthServer, oauth: HighLevelOAuth
) -> None:
    grant = await oauth.exchange_code(server.code_for_location("l"), redirect_uri="https://x/cb")
    server.fail_refresh.append((502, False))
    assert grant.refresh_token is not None
    with pytest.raises(ServerError) as caught:
        await oauth.refresh(grant.refresh_token, user_type="Location")
    assert caught.value.may_have_acted


async def test_no_server_is_unavailable_and_certainly_not_acted() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = HighLevelOAuth(
        client_id=CLIENT_ID,
        client_secret=SecretStr(CLIENT_SECRET),
        base_url=f"http://127.0.0.1:{port}",
        timeout=httpx.Timeout(2.0),
    )
    try:
        with pytest.raises(UnavailableError) as caught:
            await client.refresh(SecretStr("rt-x"), user_type="Location")
    finally:
        await client.aclose()
    assert not caught.value.may_have_acted


async def test_company_token_lists_every_page_and_mints_location_tokens(
    server: OAuthServer, oauth: HighLevelOAuth
) -> None:
    many = [(f"loc-{i:03d}", f"Client {i}") for i in range(230)]
    code = server.code_for_company("comp-9", many)
    grant = await oauth.exchange_code(code, redirect_uri="https://x/cb")
    assert grant.user_type == "Company" and grant.company_id == "comp-9"
    assert grant.location_id is None and len(grant.approved_locations) == 230

    found = await oauth.installed_locations(grant.access_token, company_id="comp-9", app_id=APP_ID)
    assert [(x.location_id, x.name) for x in found] == many
    pages = [s for s in server.seen if s.path == "/oauth/installedLocations"]
    assert len(pages) == 3
    for page in pages:
        assert page.headers["Version"] == VERSION
        assert page.headers["Authorization"] == f"Bearer {grant.access_token.get_secret_value()}"
        assert page.query["isInstalled"] == "true"

    minted = await oauth.location_token(
        grant.access_token, company_id="comp-9", location_id="loc-007"
    )
    assert minted.user_type == "Location" and minted.location_id == "loc-007"
    assert minted.refresh_token is None
    assert server.live(minted.access_token.get_secret_value(), "loc-007")
    seen = server.seen[-1]
    assert seen.form == {"companyId": "comp-9", "locationId": "loc-007"}
    assert seen.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
    assert seen.headers["Version"] == VERSION


async def test_refused_company_token_is_auth_error(oauth: HighLevelOAuth) -> None:
    with pytest.raises(AuthError):
        await oauth.installed_locations(SecretStr("at-stale"), company_id="c", app_id=APP_ID)


async def test_location_name_reads_get_locations_with_the_location_token(
    server: OAuthServer, oauth: HighLevelOAuth
) -> None:
    grant = await oauth.exchange_code(
        server.code_for_location("loc-1"), redirect_uri="https://x/cb"
    )
    server.location_names["loc-1"] = "  Sandbox Plumbing "
    assert await oauth.location_name(grant.access_token, "loc-1") == "Sandbox Plumbing"
    seen = server.seen[-1]
    assert (seen.method, seen.path) == ("GET", "/locations/loc-1")
    assert seen.headers["Version"] == VERSION
    assert seen.headers["Authorization"] == f"Bearer {grant.access_token.get_secret_value()}"
    assert seen.query == {}

    del server.location_names["loc-1"]  # an answer without a name
    assert await oauth.location_name(grant.access_token, "loc-1") is None
    server.location_names["loc-1"] = "   "
    assert await oauth.location_name(grant.access_token, "loc-1") is None


async def test_location_name_errors_use_the_usual_mapping(
    server: OAuthServer, oauth: HighLevelOAuth
) -> None:
    grant = await oauth.exchange_code(
        server.code_for_location("loc-1"), redirect_uri="https://x/cb"
    )
    with pytest.raises(AuthError) as other:  # another location's: 403
        await oauth.location_name(grant.access_token, "loc-2")
    assert other.value.status_code == 403
    with pytest.raises(AuthError) as stale:
        await oauth.location_name(SecretStr("at-stale"), "loc-1")
    assert stale.value.status_code == 401
    server.fail_location_lookup = 400
    with pytest.raises(ValidationError):
        await oauth.location_name(grant.access_token, "loc-1")
    server.fail_location_lookup = 503
    with pytest.raises(ServerError) as failed:
        await oauth.location_name(grant.access_token, "loc-1")
    assert not failed.value.may_have_acted  # a read


async def test_tokens_and_codes_never_reach_the_log(
    server: OAuthServer, oauth: HighLevelOAuth, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    code = server.code_for_company("comp-1", [("loc-1", "One")])
    grant = await oauth.exchange_code(code, redirect_uri="https://x/cb")
    assert grant.refresh_token is not None
    await oauth.refresh(grant.refresh_token, user_type="Company")
    with pytest.raises(InvalidGrantError) as caught:
        await oauth.refresh(grant.refresh_token, user_type="Company")
    assert await oauth.location_name(grant.access_token, "loc-1") == "One"  # agency-access
    text = caplog.text + str(caught.value) + repr(grant)
    assert server.issued
    for secret in [*server.issued, code, CLIENT_SECRET]:
        assert secret not in text
