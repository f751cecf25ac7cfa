"""OAuth v2 in the simulator: authorize seam, code exchange, rotation, revoke, uninstall."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bot.sandbox.slack import SlackSimulator
from tests.sandbox_slack._support import ALICE, GENERAL, refused, seed

CLIENT_ID = "111.222"
CLIENT_SECRET = "the-client-secret"
SIGNING_SECRET = "uninstall-signing-secret"
ACME = "T0ACME"
CAROL = "U0CAROL"
SALES = "C0SALES"
REDIRECT = "http://127.0.0.1:9/slack/oauth_redirect"


async def _start(**options: object) -> SlackSimulator:
    sim = SlackSimulator(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        signing_secret=SIGNING_SECRET,
        **options,  # type: ignore[arg-type]
    )
    seed(sim)
    acme = sim.add_workspace(ACME, "Acme Corp")
    acme.add_user(CAROL, "carol")
    acme.add_channel(SALES, "sales")
    await sim.start()
    return sim


@pytest.fixture
async def osim() -> AsyncIterator[SlackSimulator]:
    sim = await _start()
    try:
        yield sim
    finally:
        await sim.stop()


@pytest.fixture
async def rsim() -> AsyncIterator[SlackSimulator]:
    sim = await _start(token_rotation=True, token_ttl=600)
    try:
        yield sim
    finally:
        await sim.stop()


async def _authorize(sim: SlackSimulator, **extra: str) -> dict[str, list[str]]:
    """Follow the install link as a browser would, up to (not into) the redirect."""
    params = {
        "client_id": CLIENT_ID,
        "scope": "chat:write,commands",
        "state": "s-123",
        "redirect_uri": REDIRECT,
        **extra,
    }
    async with httpx.AsyncClient() as http:
        answer = await http.get(sim.authorize_url, params=params)
    assert answer.status_code == 302
    location = answer.headers["location"]
    assert location.startswith(REDIRECT + "?")
    return parse_qs(urlsplit(location).query)


def _oauth(sim: SlackSimulator) -> AsyncWebClient:
    return AsyncWebClient(base_url=sim.api_url)


async def test_authorize_code_exchange_installs_into_the_chosen_workspace(
    osim: SlackSimulator,
) -> None:
    redirect = await _authorize(osim, team=ACME)
    assert redirect["state"] == ["s-123"]
    code = redirect["code"][0]
    answer = await _oauth(osim).oauth_v2_access(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, code=code, redirect_uri=REDIRECT
    )
    assert answer["ok"] is True
    assert answer["token_type"] == "bot"
    assert answer["access_token"].startswith("xoxb-")
    assert answer["scope"] == "chat:write,commands"
    assert answer["team"] == {"id": ACME, "name": "Acme Corp"}
    assert answer["bot_user_id"] == osim.workspace(ACME).bot_user_id
    assert answer["app_id"] == osim.app_id
    assert answer["enterprise"] is None
    assert answer["is_enterprise_install"] is False
    assert answer["authed_user"] == {"id": CAROL}
    assert "refresh_token" not in answer and "expires_in" not in answer

    bot = AsyncWebClient(token=answer["access_token"], base_url=osim.api_url)
    assert (await bot.auth_test())["team_id"] == ACME
    await bot.chat_postMessage(channel=SALES, text="installed")
    assert [m.text for m in osim.workspace(ACME).channel_messages(SALES)] == ["installed"]
    assert (await refused(bot.chat_postMessage(channel=GENERAL, text="x")))["error"] == (
        "channel_not_found"
    )

    again = await refused(
        _oauth(osim).oauth_v2_access(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, code=code)
    )
    assert again["error"] == "invalid_code"
    counters = osim.oauth_counters
    assert (counters.codes_issued, counters.codes_exchanged, counters.tokens_issued) == (1, 1, 1)
    assert counters.invalid_codes == 1
    recorded = osim.calls_to("oauth.v2.access")
    assert [c.ok for c in recorded] == [True, False]
    assert all("code" not in c.args and "client_secret" not in c.args for c in recorded)


async def test_authorize_defaults_to_the_first_workspace_and_can_be_denied(
    osim: SlackSimulator,
) -> None:
    code = (await _authorize(osim))["code"][0]
    answer = await _oauth(osim).oauth_v2_access(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, code=code
    )
    assert answer["team"]["id"] == osim.team_id
    assert answer["authed_user"] == {"id": ALICE}
    denied = await _authorize(osim, deny="1")
    assert denied == {"error": ["access_denied"], "state": ["s-123"]}
    async with httpx.AsyncClient() as http:
        wrong = await http.get(
            osim.authorize_url, params={"client_id": "nope", "redirect_uri": REDIRECT}
        )
        unknown = await http.get(
            osim.authorize_url,
            params={"client_id": CLIENT_ID, "redirect_uri": REDIRECT, "team": "T0NOPE"},
        )
    assert (wrong.status_code, wrong.text) == (400, "invalid_client_id")
    assert unknown.status_code == 400


async def test_client_credentials_and_redirect_uri_are_checked(osim: SlackSimulator) -> None:
    code = (await _authorize(osim))["code"][0]
    oauth = _oauth(osim)
    bad_id = await refused(
        oauth.oauth_v2_access(client_id="999.999", client_secret=CLIENT_SECRET, code=code)
    )
    bad_secret = await refused(
        oauth.oauth_v2_access(client_id=CLIENT_ID, client_secret="wrong", code=code)
    )
    bad_redirect = await refused(
        oauth.oauth_v2_access(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            code=code,
            redirect_uri="http://127.0.0.1:9/elsewhere",
        )
    )
    assert (bad_id["error"], bad_secret["error"], bad_redirect["error"]) == (
        "invalid_client_id",
        "bad_client_secret",
        "bad_redirect_uri",
    )
    # Failed attempts did not use the code up; form-posted credentials work too.
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{osim.api_url}oauth.v2.access",
            data={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "code": code},
        )
    assert answer.json()["ok"] is True
    assert osim.oauth_counters.codes_exchanged == 1


async def test_an_unused_code_expires_after_ten_minutes(osim: SlackSimulator) -> None:
    code = (await _authorize(osim))["code"][0]
    osim.advance_clock(10 * 60 + 1)
    expired = await refused(
        _oauth(osim).oauth_v2_access(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, code=code)
    )
    assert expired["error"] == "invalid_code"


async def test_rotation_issues_expiring_tokens_and_single_use_refresh_tokens(
    rsim: SlackSimulator,
) -> None:
    code = (await _authorize(rsim, team=ACME))["code"][0]
    oauth = _oauth(rsim)
    first = await oauth.oauth_v2_access(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, code=code)
    assert first["expires_in"] == 600
    assert first["refresh_token"].startswith("xoxe-1-")

    refreshed = await oauth.oauth_v2_access(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        grant_type="refresh_token",
        refresh_token=first["refresh_token"],
    )
    assert refreshed["token_type"] == "bot"
    assert refreshed["team"]["id"] == ACME
    assert refreshed["expires_in"] == 600
    assert refreshed["access_token"] != first["access_token"]
    assert refreshed["refresh_token"] != first["refresh_token"]

    # Two instances refreshing with the same refresh token: only one wins.
    reuse = await refused(
        oauth.oauth_v2_access(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            grant_type="refresh_token",
            refresh_token=first["refresh_token"],
        )
    )
    assert reuse["error"] == "invalid_refresh_token"
    unknown = await refused(
        oauth.oauth_v2_access(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            grant_type="refresh_token",
            refresh_token="xoxe-1-never-issued",
        )
    )
    assert unknown["error"] == "invalid_refresh_token"
    counters = rsim.oauth_counters
    assert (counters.tokens_issued, counters.refreshes, counters.refresh_token_reuses) == (2, 1, 1)

    # Both access tokens work until they expire; then every method says token_expired.
    old = AsyncWebClient(token=first["access_token"], base_url=rsim.api_url)
    new = AsyncWebClient(token=refreshed["access_token"], base_url=rsim.api_url)
    assert (await old.auth_test())["team_id"] == ACME
    rsim.advance_clock(601)
    for call in (old.auth_test(), new.chat_postMessage(channel=SALES, text="late")):
        assert (await refused(call))["error"] == "token_expired"
    assert rsim.workspace(ACME).channel_messages(SALES) == []
    # The seeded token of the workspace does not expire.
    seeded = AsyncWebClient(token=rsim.bot_token_for(ACME), base_url=rsim.api_url)
    assert (await seeded.auth_test())["ok"] is True


async def test_expire_token_makes_one_token_expire_now(rsim: SlackSimulator) -> None:
    code = (await _authorize(rsim))["code"][0]
    answer = await _oauth(rsim).oauth_v2_access(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, code=code
    )
    token = answer["access_token"]
    assert token in rsim.live_tokens(rsim.team_id)
    rsim.expire_token(token)
    assert token not in rsim.live_tokens()
    bot = AsyncWebClient(token=token, base_url=rsim.api_url)
    assert (await refused(bot.conversations_info(channel=GENERAL)))["error"] == "token_expired"


async def test_auth_revoke_revokes_only_the_calling_token(osim: SlackSimulator) -> None:
    client = AsyncWebClient(token=osim.bot_token, base_url=osim.api_url)
    acme = AsyncWebClient(token=osim.bot_token_for(ACME), base_url=osim.api_url)
    assert (await client.auth_revoke(test=True))["revoked"] is False
    assert (await client.auth_test())["ok"] is True
    assert (await client.auth_revoke())["revoked"] is True
    assert (await refused(client.auth_test()))["error"] == "token_revoked"
    assert (await refused(client.auth_revoke()))["error"] == "token_revoked"
    assert (await acme.auth_test())["team_id"] == ACME
    assert osim.oauth_counters.tokens_revoked == 1


@pytest.fixture
async def events_app() -> AsyncIterator[tuple[str, list[tuple[str, dict[str, str]]]]]:
    """A real app endpoint that verifies Slack's signature like Bolt does."""
    received: list[tuple[str, dict[str, str]]] = []
    verifier = SignatureVerifier(SIGNING_SECRET)

    async def events(request: web.Request) -> web.Response:
        body = await request.text()
        headers = dict(request.headers)
        if not verifier.is_valid_request(body, headers):
            return web.Response(status=401)
        received.append((body, headers))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/slack/events", events)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/slack/events")), received
    finally:
        await server.close()


async def test_uninstall_revokes_the_workspace_and_sends_signed_events(
    osim: SlackSimulator,
    events_app: tuple[str, list[tuple[str, dict[str, str]]]],
) -> None:
    url, received = events_app
    code = (await _authorize(osim, team=ACME))["code"][0]
    installed = await _oauth(osim).oauth_v2_access(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, code=code
    )
    osim.events_url = url

    deliveries = await osim.uninstall(ACME)

    assert [(d.event_type, d.status) for d in deliveries] == [
        ("app_uninstalled", 200),
        ("tokens_revoked", 200),
    ]
    assert len(received) == 2
    envelopes = [json.loads(body) for body, _ in received]
    for envelope in envelopes:
        assert envelope["type"] == "event_callback"
        assert envelope["team_id"] == ACME
        assert envelope["api_app_id"] == osim.app_id
        assert envelope["token"] == osim.verification_token
        assert envelope["event_id"].startswith("Ev")
        assert isinstance(envelope["event_time"], int)
    assert envelopes[0]["event"]["type"] == "app_uninstalled"
    assert envelopes[1]["event"]["tokens"] == {"bot": [osim.workspace(ACME).bot_user_id]}
    assert len({e["event_id"] for e in envelopes}) == 2

    for token in (installed["access_token"], osim.bot_token_for(ACME)):
        gone = AsyncWebClient(token=token, base_url=osim.api_url)
        assert (await refused(gone.auth_test()))["error"] == "token_revoked"
    assert osim.live_tokens(ACME) == []
    # The other workspace keeps working.
    home = AsyncWebClient(token=osim.bot_token, base_url=osim.api_url)
    assert (await home.auth_test())["team_id"] == osim.team_id


async def test_uninstall_signature_fails_with_another_secret(
    events_app: tuple[str, list[tuple[str, dict[str, str]]]],
) -> None:
    url, received = events_app
    sim = SlackSimulator(signing_secret="some-other-secret", events_url=url)
    await sim.start()
    try:
        deliveries = await sim.uninstall(sim.team_id)
    finally:
        await sim.stop()
    assert [d.status for d in deliveries] == [401, 401]
    assert received == []


async def test_uninstall_without_an_events_url_only_revokes(osim: SlackSimulator) -> None:
    assert await osim.uninstall(ACME) == []
    acme = AsyncWebClient(token=osim.bot_token_for(ACME), base_url=osim.api_url)
    assert (await refused(acme.auth_test()))["error"] == "token_revoked"
    # Installing again after an uninstall works, with fresh tokens.
    code = (await _authorize(osim, team=ACME))["code"][0]
    again = await _oauth(osim).oauth_v2_access(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, code=code
    )
    bot = AsyncWebClient(token=again["access_token"], base_url=osim.api_url)
    assert (await bot.auth_test())["team_id"] == ACME


async def test_an_org_wide_install_names_the_organization_and_no_team(
    rsim: SlackSimulator,
) -> None:
    redirect = await _authorize(rsim, team=ACME, enterprise="E0GRID", enterprise_name="Grid Co")
    oauth = _oauth(rsim)
    answer = await oauth.oauth_v2_access(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, code=redirect["code"][0]
    )
    assert answer["is_enterprise_install"] is True
    assert answer["enterprise"] == {"id": "E0GRID", "name": "Grid Co"}
    assert answer["team"] is None
    assert answer["authed_user"] == {"id": CAROL}
    assert rsim.calls_to("oauth.v2.access")[-1].team_id == ACME

    # auth.test (Bolt calls it during the install) names the organization and its URL.
    bot = AsyncWebClient(token=answer["access_token"], base_url=rsim.api_url)
    identity = await bot.auth_test()
    assert identity["enterprise_id"] == "E0GRID"
    assert identity["is_enterprise_install"] is True
    assert identity["url"] == "https://grid-co.enterprise.slack.com/"
    assert identity["team_id"] == ACME
    # A refreshed token is still the organization's.
    refreshed = await oauth.oauth_v2_access(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        grant_type="refresh_token",
        refresh_token=answer["refresh_token"],
    )
    assert (refreshed["team"], refreshed["enterprise"]["id"]) == (None, "E0GRID")
    assert refreshed["is_enterprise_install"] is True
    # The revoke the app may answer an org-wide install with works on its token.
    assert (await bot.auth_revoke())["revoked"] is True
    assert answer["access_token"] not in rsim.live_tokens(ACME)


async def test_a_workspace_install_says_no_enterprise_and_names_a_default_org(
    osim: SlackSimulator,
) -> None:
    plain = (await _authorize(osim, team=ACME))["code"][0]
    answer = await _oauth(osim).oauth_v2_access(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, code=plain
    )
    identity = await AsyncWebClient(token=answer["access_token"], base_url=osim.api_url).auth_test()
    assert identity["is_enterprise_install"] is False
    assert "enterprise_id" not in identity
    assert identity["url"] == "https://acme-corp.slack.com/"

    unnamed = (await _authorize(osim, enterprise="E0GRID"))["code"][0]
    org = await _oauth(osim).oauth_v2_access(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, code=unnamed
    )
    assert org["enterprise"] == {"id": "E0GRID", "name": "Org E0GRID"}
    assert osim.calls_to("oauth.v2.access")[-1].team_id == osim.team_id
