"""Bolt's own OAuth flow (install page → authorize → redirect → oauth.v2.access) and token
rotation, run against the simulator over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from aiohttp.test_utils import TestServer
from slack_sdk.errors import SlackTokenRotationError
from slack_sdk.oauth.installation_store import FileInstallationStore
from slack_sdk.oauth.token_rotation.async_rotator import AsyncTokenRotator
from slack_sdk.web.async_client import AsyncWebClient

from bot.sandbox.slack import SlackSimulator
from tests.sandbox_slack._support import bolt_oauth_app

CLIENT_ID = "111.222"
CLIENT_SECRET = "bolt-client-secret"
SIGNING_SECRET = "bolt-signing-secret"
ACME = "T0ACME"
SALES = "C0SALES"


@dataclass
class Stage:
    sim: SlackSimulator
    bolt_url: str
    store: FileInstallationStore


@pytest.fixture
async def stage(tmp_path: Path) -> AsyncIterator[Stage]:
    sim = SlackSimulator(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        signing_secret=SIGNING_SECRET,
        token_rotation=True,
        token_ttl=3600,
    )
    acme = sim.add_workspace(ACME, "Acme Corp")
    acme.add_user("U0CAROL", "carol")
    acme.add_channel(SALES, "sales")
    await sim.start()
    app, store = bolt_oauth_app(
        sim,
        tmp_path,
        signing_secret=SIGNING_SECRET,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
    )
    server = TestServer(app.web_app(), host="127.0.0.1")
    await server.start_server()
    bolt_url = str(server.make_url("")).rstrip("/")
    # Bolt sends no redirect_uri here: Slack uses the app's configured Redirect URL.
    sim.oauth_redirect_uri = f"{bolt_url}/slack/oauth_redirect"
    try:
        yield Stage(sim, bolt_url, store)
    finally:
        await server.close()
        await sim.stop()


async def test_bolt_installs_into_a_chosen_workspace_and_rotates(stage: Stage) -> None:
    sim = stage.sim
    async with httpx.AsyncClient(follow_redirects=False) as browser:
        install = await browser.get(f"{stage.bolt_url}/slack/install")
        assert install.status_code == 302
        authorize = await browser.get(install.headers["location"] + f"&team={ACME}")
        assert authorize.status_code == 302
        # Bolt's state cookie is Secure; browsers still send it to http://127.0.0.1, httpx
        # does not, so it is carried by hand.
        cookie = install.headers["set-cookie"].split(";", 1)[0]
        done = await browser.get(authorize.headers["location"], headers={"Cookie": cookie})
    assert done.status_code == 200, done.text

    installation = await stage.store.async_find_installation(enterprise_id=None, team_id=ACME)
    assert installation is not None
    assert installation.team_id == ACME
    assert installation.team_name == "Acme Corp"
    assert installation.bot_user_id == sim.workspace(ACME).bot_user_id
    assert installation.bot_id == sim.workspace(ACME).bot_id  # from auth.test
    assert installation.bot_refresh_token is not None
    assert installation.bot_token_expires_at is not None
    assert sim.oauth_counters.codes_exchanged == 1

    bot = installation.to_bot()
    rotator = AsyncTokenRotator(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        client=AsyncWebClient(base_url=sim.api_url),
    )
    # Within Bolt's 120-minute margin of a one-hour token, the rotator refreshes.
    refreshed = await rotator.perform_bot_token_rotation(bot=bot, minutes_before_expiration=120)
    assert refreshed is not None
    assert refreshed.bot_token != bot.bot_token
    assert sim.oauth_counters.refreshes == 1
    client = AsyncWebClient(token=refreshed.bot_token, base_url=sim.api_url)
    await client.chat_postMessage(channel=SALES, text="rotated")
    assert [m.text for m in sim.workspace(ACME).channel_messages(SALES)] == ["rotated"]
    # A second instance refreshing with the same (now used) refresh token is refused.
    with pytest.raises(SlackTokenRotationError, match="invalid_refresh_token"):
        await rotator.perform_bot_token_rotation(bot=bot, minutes_before_expiration=120)
    assert sim.oauth_counters.refresh_token_reuses == 1


async def test_bolt_stores_an_org_wide_install_as_the_organization(stage: Stage) -> None:
    async with httpx.AsyncClient(follow_redirects=False) as browser:
        install = await browser.get(f"{stage.bolt_url}/slack/install")
        query = "&enterprise=E0GRID&enterprise_name=Grid%20Co"
        authorize = await browser.get(install.headers["location"] + query)
        cookie = install.headers["set-cookie"].split(";", 1)[0]
        done = await browser.get(authorize.headers["location"], headers={"Cookie": cookie})
    assert done.status_code == 200, done.text

    installation = await stage.store.async_find_installation(
        enterprise_id="E0GRID", team_id=None, is_enterprise_install=True
    )
    assert installation is not None
    assert installation.is_enterprise_install is True
    assert (installation.enterprise_id, installation.enterprise_name) == ("E0GRID", "Grid Co")
    assert installation.team_id is None
    # Bolt takes the organization's URL from auth.test.
    assert installation.enterprise_url == "https://grid-co.enterprise.slack.com/"
    assert await stage.store.async_find_installation(enterprise_id=None, team_id=ACME) is None
