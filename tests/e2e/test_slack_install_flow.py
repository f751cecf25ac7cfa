"""Installing the bridge into Slack workspaces through /slack/install, end to end over real HTTP:
a browser's way through the bridge → the simulator's authorize page → the bridge's redirect URL,
a second workspace, an org-wide install refused, a cancelled one, and an uninstall that stops
one workspace only (test_slack_install.py has them with sub-accounts, sends and replies)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from bot.sandbox.slack import DriverResult, SlackSimulator
from bot.sandbox.stack import (
    AGENT_USER,
    SALES_CHANNEL,
    SandboxStack,
    cookie_header,
    with_query,
)
from storage import is_postgres_url, parse_sqlite_url
from tests.e2e.conftest import NO_SQLITE_FILE, eventually, stack_store
from tests.test_manifest import manifest

ACME = "T0ACME"
CAROL = "U0CAROL"
ACME_SALES = "C0ACMESALES"
# What the bridge answers a command from a workspace it has no install for (on its
# response_url), instead of running the handler; it names the install link.
NOT_INSTALLED = "not installed in this workspace"


def _slack() -> SlackSimulator:
    sim = SlackSimulator(post_rate_per_second=50.0, post_burst=50, admins=(AGENT_USER,))
    acme = sim.add_workspace(ACME, "Acme Corp", admins=(CAROL,))
    acme.add_user(CAROL, "carol", "Carol Client")
    acme.add_channel(ACME_SALES, "sales")
    return sim


@pytest.fixture
async def slack_stack(database_url: str) -> AsyncIterator[SandboxStack]:
    """A bridge installed into no workspace yet: no SLACK_BOT_TOKEN, Slack's install flow on."""
    path = NO_SQLITE_FILE if is_postgres_url(database_url) else Path(parse_sqlite_url(database_url))
    sandbox = SandboxStack(
        path,
        slack=_slack(),
        slack_oauth=True,
        settings_overrides={"database_url": database_url},
    )
    await sandbox.start()
    try:
        yield sandbox
    finally:
        await sandbox.stop()


def told_to_install(stack: SandboxStack, result: DriverResult, team_id: str) -> bool:
    """Whether Bolt answered the command `result` sent with "please install this app"."""
    posts = stack.slack.workspace(team_id).response_url_posts(result.response_url)
    texts = [str(post.body.get("text", "")) for post in posts]
    return any(NOT_INSTALLED in text and "/slack/install" in text for text in texts)


async def _installed(stack: SandboxStack) -> list[tuple[str | None, str | None]]:
    async with stack_store(stack) as store:
        return [(w.enterprise_id, w.team_id) for w in await store.list_slack_workspaces()]


async def test_install_asks_for_the_manifest_scopes_and_comes_back_to_public_url(
    slack_stack: SandboxStack,
) -> None:
    sim = slack_stack.slack
    assert slack_stack.settings is not None
    assert slack_stack.settings.slack_bot_token is None
    page = await slack_stack.install_slack(user=AGENT_USER)

    assert page.status == 200, page.text
    authorize = urlsplit(page.authorize_url)
    assert f"{authorize.scheme}://{authorize.netloc}/" == sim.base_url
    query = parse_qs(authorize.query)
    assert query["client_id"] == [sim.client_id]
    public_url = slack_stack.settings.public_url
    assert query["redirect_uri"] == [f"{public_url}/slack/oauth_redirect"]
    assert sorted(query["scope"][0].split(",")) == sorted(
        manifest()["oauth_config"]["scopes"]["bot"]
    )
    assert page.redirect_url.startswith(f"{public_url}/slack/oauth_redirect?")
    assert sim.oauth_counters.codes_exchanged == 1
    assert await _installed(slack_stack) == [(None, sim.team_id)]


async def test_two_workspaces_each_answered_with_their_own_token(
    slack_stack: SandboxStack,
) -> None:
    sim = slack_stack.slack
    acme_driver = slack_stack.driver_for(ACME)
    before = await acme_driver.slash_command(
        "/highlevel", "help", user_id=CAROL, channel_id=ACME_SALES
    )
    assert told_to_install(slack_stack, before, ACME)

    assert (await slack_stack.install_slack(user=AGENT_USER)).status == 200
    page = await slack_stack.install_slack(ACME, user=CAROL)
    assert page.status == 200, page.text
    assert sorted(await _installed(slack_stack)) == sorted([(None, sim.team_id), (None, ACME)])

    home = await slack_stack.driver.slash_command(
        "/highlevel", "status", user_id=AGENT_USER, channel_id=SALES_CHANNEL
    )
    acme = await acme_driver.slash_command(
        "/highlevel", "status", user_id=CAROL, channel_id=ACME_SALES
    )
    assert home.ok and acme.ok
    assert not told_to_install(slack_stack, home, sim.team_id)
    assert not told_to_install(slack_stack, acme, ACME)
    # Bolt's auth.test during each install reached that workspace; no call of the bridge used
    # a token in the wrong workspace (a token only reaches its own).
    assert {c.team_id for c in sim.calls_to("auth.test")} >= {sim.team_id, ACME}
    wrong = {"invalid_auth", "not_authed", "channel_not_found", "user_not_found"}
    assert [c.method for c in sim.calls if c.error in wrong] == []


async def test_an_org_wide_install_is_refused_with_a_page_saying_why(
    slack_stack: SandboxStack,
) -> None:
    page = await slack_stack.install_slack(ACME, user=CAROL, enterprise="E0GRID")
    assert 400 <= page.status < 500
    assert "each workspace" in page.text
    assert await _installed(slack_stack) == []
    # A workspace install afterwards works.
    assert (await slack_stack.install_slack(ACME, user=CAROL)).status == 200
    assert await _installed(slack_stack) == [(None, ACME)]


async def test_a_denied_install_stores_nothing(slack_stack: SandboxStack) -> None:
    # The person clicks "Cancel": Slack sends them back with error=access_denied, no code.
    # (Bolt's default failure page answers 200; the bridge's answers 4xx with the reason.)
    denied = await _install_denied(slack_stack)
    assert 400 <= denied < 500
    assert slack_stack.slack.oauth_counters.codes_exchanged == 0
    assert await _installed(slack_stack) == []


async def _install_denied(stack: SandboxStack) -> int:
    async with httpx.AsyncClient(timeout=30, follow_redirects=False) as browser:
        first = await browser.get(f"{stack.bridge_url}/slack/install")
        approved = await browser.get(with_query(first.headers["location"], {"deny": "1"}))
        cookies = cookie_header(first.headers.get_list("set-cookie"))
        page = await browser.get(approved.headers["location"], headers={"Cookie": cookies})
    return page.status_code


async def test_uninstall_stops_one_workspace_and_the_other_keeps_working(
    slack_stack: SandboxStack,
) -> None:
    sim = slack_stack.slack
    assert (await slack_stack.install_slack(user=AGENT_USER)).status == 200
    assert (await slack_stack.install_slack(ACME, user=CAROL)).status == 200

    deliveries = await sim.uninstall(ACME)

    assert [(d.event_type, d.status) for d in deliveries] == [
        ("app_uninstalled", 200),
        ("tokens_revoked", 200),
    ]
    await eventually(lambda: _installed_is(slack_stack, [(None, sim.team_id)]))
    acme = await slack_stack.driver_for(ACME).slash_command(
        "/highlevel", "status", user_id=CAROL, channel_id=ACME_SALES
    )
    assert told_to_install(slack_stack, acme, ACME)
    home = await slack_stack.driver.slash_command(
        "/highlevel", "status", user_id=AGENT_USER, channel_id=SALES_CHANNEL
    )
    assert home.ok and not told_to_install(slack_stack, home, sim.team_id)
    # Installing again afterwards works.
    assert (await slack_stack.install_slack(ACME, user=CAROL)).status == 200


async def _installed_is(stack: SandboxStack, expected: list[tuple[str | None, str | None]]) -> bool:
    return await _installed(stack) == expected
