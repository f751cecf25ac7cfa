"""SandboxStack's Slack install mode: the settings it gives the bridge, the simulator wired to
the bridge, a browser's way through `/slack/install` (against a real Bolt OAuth app on loopback),
and drivers per workspace."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from aiohttp.test_utils import TestServer
from slack_sdk.oauth.installation_store import FileInstallationStore

from bot.sandbox.slack import SlackSimulator
from bot.sandbox.stack import AGENT_USER, SANDBOX_SIGNING_SECRET, SandboxStack, cookie_header
from tests.sandbox_slack._support import bolt_oauth_app

ACME = "T0ACME"
CAROL = "U0CAROL"


def _simulator() -> SlackSimulator:
    sim = SlackSimulator(post_rate_per_second=50.0, post_burst=50, admins=(AGENT_USER,))
    acme = sim.add_workspace(ACME, "Acme Corp")
    acme.add_user(CAROL, "carol")
    acme.add_channel("C0ACMESALES", "sales")
    return sim


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[SandboxStack]:
    # keep_slack_token: the bridge serves its one workspace by token as well, so it starts
    # whether or not its own /slack/install is there yet.
    sandbox = SandboxStack(
        tmp_path / "bridge.sqlite3",
        slack=_simulator(),
        slack_oauth=True,
        keep_slack_token=True,
    )
    await sandbox.start()
    try:
        yield sandbox
    finally:
        await sandbox.stop()


@dataclass
class BoltApp:
    url: str
    store: FileInstallationStore


@pytest.fixture
async def bolt_app(stack: SandboxStack, tmp_path: Path) -> AsyncIterator[BoltApp]:
    """A Bolt app installing through the stack's Slack simulator, as the bridge will."""
    sim = stack.slack
    app, store = bolt_oauth_app(sim, tmp_path, signing_secret=SANDBOX_SIGNING_SECRET)
    server = TestServer(app.web_app(), host="127.0.0.1")
    await server.start_server()
    try:
        yield BoltApp(str(server.make_url("")).rstrip("/"), store)
    finally:
        await server.close()


async def test_slack_oauth_settings_and_the_simulator_point_at_the_bridge(
    stack: SandboxStack,
) -> None:
    settings = stack.settings
    assert settings is not None
    sim = stack.slack
    values = settings.model_dump()
    assert values["slack_client_id"] == sim.client_id
    assert values["slack_client_secret"].get_secret_value() == sim.client_secret
    assert values["slack_authorize_url"] == sim.authorize_url
    assert settings.slack_bot_token is not None  # keep_slack_token
    assert settings.slack_bot_token.get_secret_value() == sim.bot_token
    assert settings.token_encryption_key is not None
    # The bridge listens where PUBLIC_URL says, and Slack sends people and events there.
    assert settings.public_url == f"http://127.0.0.1:{settings.port}"
    assert stack.bridge_url == settings.public_url
    assert sim.oauth_redirect_uri == f"{settings.public_url}/slack/oauth_redirect"
    assert sim.events_url == f"{stack.bridge_url}/slack/events"
    # HighLevel stays on its Private Integration Token without `oauth`.
    assert settings.ghl_client_id is None
    assert settings.ghl_api_token is not None


async def test_both_oauth_modes_share_one_address_and_one_key(tmp_path: Path) -> None:
    sandbox = SandboxStack(tmp_path / "bridge.sqlite3", oauth=True, slack_oauth=True)
    # The settings name the simulators' addresses: they run, the bridge need not.
    await sandbox.slack.start()
    await sandbox.highlevel.start()
    try:
        values = sandbox._oauth_settings()
    finally:
        await sandbox.highlevel.stop()
        await sandbox.slack.stop()
    assert values["public_url"] == f"http://127.0.0.1:{values['port']}"
    assert values["token_encryption_key"]
    assert values["ghl_client_id"] == sandbox.highlevel.oauth.client_id
    assert values["slack_client_id"] == sandbox.slack.client_id
    assert (values["slack_bot_token"], values["ghl_api_token"]) == (None, None)
    assert values["slack_authorize_url"].startswith(sandbox.slack.base_url)
    assert SandboxStack(tmp_path / "plain.sqlite3")._oauth_settings() == {}


async def test_install_slack_goes_through_authorize_and_carries_the_state_cookie(
    stack: SandboxStack, bolt_app: BoltApp
) -> None:
    # Bolt names no redirect_uri: the simulator sends people to the app's Redirect URL.
    stack.slack.oauth_redirect_uri = f"{bolt_app.url}/slack/oauth_redirect"
    page = await stack.install_slack(ACME, user=CAROL, bridge_url=bolt_app.url)

    assert page.status == 200, page.text
    assert page.authorize_url.startswith(stack.slack.authorize_url + "?")
    assert page.redirect_url.startswith(f"{bolt_app.url}/slack/oauth_redirect?")
    assert set(parse_qs(urlsplit(page.redirect_url).query)) == {"code", "state"}
    installation = await bolt_app.store.async_find_installation(enterprise_id=None, team_id=ACME)
    assert installation is not None
    assert installation.user_id == CAROL
    assert stack.slack.oauth_counters.codes_exchanged == 1


async def test_install_slack_makes_an_org_wide_install(
    stack: SandboxStack, bolt_app: BoltApp
) -> None:
    stack.slack.oauth_redirect_uri = f"{bolt_app.url}/slack/oauth_redirect"
    page = await stack.install_slack(enterprise="E0GRID", bridge_url=bolt_app.url)
    assert page.status == 200, page.text
    assert parse_qs(urlsplit(page.authorize_url).query)["client_id"] == [stack.slack.client_id]
    installation = await bolt_app.store.async_find_installation(
        enterprise_id="E0GRID", team_id=None, is_enterprise_install=True
    )
    assert installation is not None
    assert installation.team_id is None


async def test_install_slack_says_what_answered_instead_of_a_redirect(
    stack: SandboxStack, bolt_app: BoltApp
) -> None:
    # The Slack simulator has no /slack/install.
    with pytest.raises(AssertionError, match="/slack/install answered 404"):
        await stack.install_slack(bridge_url=stack.slack.base_url.rstrip("/"))
    # Slack refuses a workspace it does not know.
    with pytest.raises(AssertionError, match="authorize page answered 400: team_not_found"):
        await stack.install_slack("T0NOPE", bridge_url=bolt_app.url)


async def test_without_the_cookie_a_bolt_app_refuses_the_redirect(
    stack: SandboxStack, bolt_app: BoltApp
) -> None:
    # Why install_slack carries the state cookie by hand: httpx drops a Secure cookie over
    # http, and Bolt refuses a redirect without it.
    stack.slack.oauth_redirect_uri = f"{bolt_app.url}/slack/oauth_redirect"
    async with httpx.AsyncClient(follow_redirects=False) as browser:
        install = await browser.get(f"{bolt_app.url}/slack/install")
        assert "Secure" in install.headers["set-cookie"]
        approved = await browser.get(install.headers["location"])
        page = await browser.get(approved.headers["location"])
    assert page.status_code == 400
    assert "invalid_browser" in page.text
    assert stack.slack.oauth_counters.codes_exchanged == 0


def test_cookie_header_keeps_name_value_pairs_only() -> None:
    assert (
        cookie_header(
            [
                "slack-app-oauth-state=abc123; Secure; HttpOnly; Path=/; Max-Age=600",
                "other=1",
                "garbage",
            ]
        )
        == "slack-app-oauth-state=abc123; other=1"
    )
    assert cookie_header([]) == ""


async def test_driver_for_sends_as_a_person_of_that_workspace(stack: SandboxStack) -> None:
    driver = stack.driver_for(ACME)
    assert driver.team_id == ACME
    assert driver.workspace is stack.slack.workspace(ACME)
    assert driver.app_url == f"{stack.bridge_url}/slack/events"
    # Signed as Slack would: the bridge's Bolt app answers the URL verification challenge.
    answer = await driver.url_verification("challenge-123")
    assert answer.status == 200
    assert "challenge-123" in answer.text
    await stack.stop()
    assert driver._client.is_closed
