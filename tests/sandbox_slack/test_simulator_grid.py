"""A workspace inside an Enterprise Grid organization (not an org-wide install): the simulator
and the driver name the organization wherever Slack does, and a real Bolt app installed there
through OAuth authorizes that workspace's commands, clicks, submissions and events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from slack_bolt.async_app import AsyncAck, AsyncBoltContext
from slack_sdk.oauth.installation_store import FileInstallationStore
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bot.sandbox.slack import SlackDriver, SlackSimulator, SlackWorkspace
from tests.sandbox_slack._support import bolt_oauth_app, until

CLIENT_ID = "111.222"
CLIENT_SECRET = "grid-client-secret"
SIGNING_SECRET = "grid-signing-secret"
GRID = "E0GRID"
GRID_NAME = "Grid Co"
GRID_WS = "T0GRIDWS"
PLAIN = "T0PLAIN"
DANA = "U0DANA"
OPS = "C0OPS"
BUTTON: list[dict[str, Any]] = [
    {
        "type": "actions",
        "block_id": "row",
        "elements": [
            {
                "type": "button",
                "action_id": "grid_button",
                "text": {"type": "plain_text", "text": "Go"},
                "value": "go",
            }
        ],
    }
]


def _people(workspace: SlackWorkspace) -> SlackWorkspace:
    workspace.add_user(DANA, "dana", "Dana Grid")
    workspace.add_channel(OPS, "ops")
    return workspace


def _simulator() -> SlackSimulator:
    sim = SlackSimulator(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        signing_secret=SIGNING_SECRET,
        post_rate_per_second=50.0,
        post_burst=50,
    )
    _people(sim.add_workspace(GRID_WS, "Grid Ops", enterprise_id=GRID, enterprise_name=GRID_NAME))
    _people(sim.add_workspace(PLAIN, "Plain Co"))
    return sim


@pytest.fixture
async def gsim() -> AsyncIterator[SlackSimulator]:
    sim = _simulator()
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


@pytest.fixture
async def inbox() -> AsyncIterator[tuple[str, list[web.Request], list[str]]]:
    """A real HTTP app that records what Slack sent it and answers 200."""
    seen: list[web.Request] = []
    bodies: list[str] = []

    async def receive(request: web.Request) -> web.Response:
        seen.append(request)
        bodies.append(await request.text())
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/slack/events", receive)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/slack/events")), seen, bodies
    finally:
        await server.close()


def test_a_grid_workspace_knows_its_organization() -> None:
    sim = _simulator()
    grid = sim.workspace(GRID_WS)
    assert grid.enterprise is not None
    assert (grid.enterprise.id, grid.enterprise.name) == (GRID, GRID_NAME)
    assert sim.workspace(PLAIN).enterprise is None
    assert sim.enterprise is None
    unnamed = sim.add_workspace("T0OTHER", "Other", enterprise_id="E0OTHER")
    assert unnamed.enterprise is not None and unnamed.enterprise.name == "Org E0OTHER"
    with pytest.raises(ValueError, match="enterprise_id"):
        sim.add_workspace("T0NOPE", "Nope", enterprise_name="Orphan Org")


async def test_oauth_and_auth_test_name_the_organization_of_a_grid_workspace(
    gsim: SlackSimulator,
) -> None:
    redirect = "http://127.0.0.1:9/slack/oauth_redirect"
    async with httpx.AsyncClient(follow_redirects=False) as browser:
        approved = await browser.get(
            gsim.authorize_url,
            params={"client_id": CLIENT_ID, "team": GRID_WS, "redirect_uri": redirect},
        )
    code = parse_qs(approved.headers["location"].split("?", 1)[1])["code"][0]
    oauth = AsyncWebClient(base_url=gsim.api_url)
    answer = await oauth.oauth_v2_access(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, code=code, redirect_uri=redirect
    )
    # docs.slack.dev, oauth.v2.access: a workspace of an organization, installed on its own.
    assert answer["team"] == {"id": GRID_WS, "name": "Grid Ops"}
    assert answer["enterprise"] == {"id": GRID, "name": GRID_NAME}
    assert answer["is_enterprise_install"] is False
    assert answer["authed_user"] == {"id": DANA}

    for token in (answer["access_token"], gsim.bot_token_for(GRID_WS)):
        identity = await AsyncWebClient(token=token, base_url=gsim.api_url).auth_test()
        assert identity["enterprise_id"] == GRID
        assert identity["team_id"] == GRID_WS
        assert identity["is_enterprise_install"] is False
        assert identity["url"] == "https://grid-ops.slack.com/"
    plain = await AsyncWebClient(token=gsim.bot_token_for(PLAIN), base_url=gsim.api_url).auth_test()
    assert "enterprise_id" not in plain

    # An org-wide install through the workspace's own organization takes its name.
    async with httpx.AsyncClient(follow_redirects=False) as browser:
        org_wide = await browser.get(
            gsim.authorize_url,
            params={
                "client_id": CLIENT_ID,
                "team": GRID_WS,
                "enterprise": GRID,
                "redirect_uri": redirect,
            },
        )
    org_code = parse_qs(org_wide.headers["location"].split("?", 1)[1])["code"][0]
    org = await oauth.oauth_v2_access(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, code=org_code, redirect_uri=redirect
    )
    assert (org["team"], org["enterprise"], org["is_enterprise_install"]) == (
        None,
        {"id": GRID, "name": GRID_NAME},
        True,
    )


async def test_the_driver_names_the_organization_where_slack_does(
    gsim: SlackSimulator, inbox: tuple[str, list[web.Request], list[str]]
) -> None:
    url, seen, bodies = inbox
    bot = AsyncWebClient(token=gsim.bot_token_for(GRID_WS), base_url=gsim.api_url)
    posted = await bot.chat_postMessage(channel=OPS, text="pick", blocks=BUTTON)
    async with SlackDriver(url, SIGNING_SECRET, gsim, team_id=GRID_WS) as grid:
        await grid.slash_command("/grid", "hello", user_id=DANA, channel_id=OPS)
        await grid.block_action(
            "grid_button", user_id=DANA, channel_id=OPS, message_ts=posted["ts"]
        )
        await grid.view_submission(user_id=DANA, callback_id="grid_view")
        await grid.user_message(OPS, DANA, "hi from the grid")
    command = parse_qs(bodies[0])
    assert command["team_id"] == [GRID_WS]
    assert (command["enterprise_id"], command["enterprise_name"]) == ([GRID], [GRID_NAME])
    assert command["is_enterprise_install"] == ["false"]
    for body in bodies[1:3]:
        payload = json.loads(parse_qs(body)["payload"][0])
        assert payload["enterprise"] == {"id": GRID, "name": GRID_NAME}
        assert payload["team"] == {
            "id": GRID_WS,
            "domain": "grid-ops",
            "enterprise_id": GRID,
            "enterprise_name": GRID_NAME,
        }
        assert payload["is_enterprise_install"] is False
    envelope = json.loads(bodies[3])
    assert (envelope["team_id"], envelope["enterprise_id"]) == (GRID_WS, GRID)
    assert envelope["context_enterprise_id"] == GRID
    [authorization] = envelope["authorizations"]
    assert (authorization["enterprise_id"], authorization["team_id"]) == (GRID, GRID_WS)
    assert authorization["is_enterprise_install"] is False
    verifier = SignatureVerifier(SIGNING_SECRET)
    for request, body in zip(seen, bodies, strict=True):
        assert verifier.is_valid_request(body, dict(request.headers))


async def test_a_standalone_workspace_keeps_its_payloads_without_an_organization(
    gsim: SlackSimulator, inbox: tuple[str, list[web.Request], list[str]]
) -> None:
    url, _, bodies = inbox
    async with SlackDriver(url, SIGNING_SECRET, gsim, team_id=PLAIN) as plain:
        await plain.slash_command("/grid", "hello", user_id=DANA, channel_id=OPS)
        await plain.view_submission(user_id=DANA, callback_id="grid_view")
        await plain.user_message(OPS, DANA, "hi")
    command = parse_qs(bodies[0])
    assert "enterprise_id" not in command and "enterprise_name" not in command
    payload = json.loads(parse_qs(bodies[1])["payload"][0])
    assert payload["enterprise"] is None
    assert payload["team"] == {"id": PLAIN, "domain": "plain-co"}
    envelope = json.loads(bodies[2])
    assert "enterprise_id" not in envelope
    assert envelope["context_enterprise_id"] is None
    assert envelope["authorizations"][0]["enterprise_id"] is None


async def test_uninstalling_a_grid_workspace_sends_events_naming_the_organization(
    gsim: SlackSimulator, inbox: tuple[str, list[web.Request], list[str]]
) -> None:
    url, seen, bodies = inbox
    gsim.events_url = url
    deliveries = await gsim.uninstall(GRID_WS)
    assert [(d.event_type, d.status) for d in deliveries] == [
        ("app_uninstalled", 200),
        ("tokens_revoked", 200),
    ]
    for body in bodies:
        envelope = json.loads(body)
        assert (envelope["team_id"], envelope["enterprise_id"]) == (GRID_WS, GRID)
        assert envelope["authorizations"][0]["enterprise_id"] == GRID
        assert envelope["authorizations"][0]["is_enterprise_install"] is False
    assert len(seen) == 2
    assert gsim.live_tokens(GRID_WS) == []


# ---------------------------------------------------------------------- a real Bolt app


@dataclass
class BoltStage:
    sim: SlackSimulator
    url: str
    store: FileInstallationStore
    contexts: list[tuple[str, str | None, str | None, bool]] = field(default_factory=list)


@pytest.fixture
async def bolt(tmp_path: Path, gsim: SlackSimulator) -> AsyncIterator[BoltStage]:
    app, store = bolt_oauth_app(
        gsim,
        tmp_path,
        signing_secret=SIGNING_SECRET,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
    )
    server = TestServer(app.web_app(), host="127.0.0.1")
    stage = BoltStage(gsim, "", store)

    async def record(kind: str, context: AsyncBoltContext, client: AsyncWebClient) -> None:
        stage.contexts.append(
            (kind, context.enterprise_id, context.team_id, bool(context.is_enterprise_install))
        )
        # Answered with the token Bolt found for that workspace.
        await client.chat_postMessage(channel=OPS, text=f"{kind} handled")

    @app.command("/grid")
    async def on_command(ack: AsyncAck, context: AsyncBoltContext, client: AsyncWebClient) -> None:
        await ack()
        await record("command", context, client)

    @app.action("grid_button")
    async def on_click(ack: AsyncAck, context: AsyncBoltContext, client: AsyncWebClient) -> None:
        await ack()
        await record("action", context, client)

    @app.view("grid_view")
    async def on_submit(ack: AsyncAck, context: AsyncBoltContext, client: AsyncWebClient) -> None:
        await ack()
        await record("view", context, client)

    @app.event("message")
    async def on_message(context: AsyncBoltContext, client: AsyncWebClient) -> None:
        await record("event", context, client)

    await server.start_server()
    stage.url = str(server.make_url("")).rstrip("/")
    gsim.oauth_redirect_uri = f"{stage.url}/slack/oauth_redirect"
    try:
        yield stage
    finally:
        await server.close()


async def test_bolt_installs_into_a_grid_workspace_and_authorizes_its_requests(
    bolt: BoltStage,
) -> None:
    sim = bolt.sim
    async with httpx.AsyncClient(follow_redirects=False) as browser:
        install = await browser.get(f"{bolt.url}/slack/install")
        authorize = await browser.get(install.headers["location"] + f"&team={GRID_WS}")
        cookie = install.headers["set-cookie"].split(";", 1)[0]
        done = await browser.get(authorize.headers["location"], headers={"Cookie": cookie})
    assert done.status_code == 200, done.text
    installation = await bolt.store.async_find_installation(enterprise_id=GRID, team_id=GRID_WS)
    assert installation is not None
    assert (installation.enterprise_id, installation.enterprise_name) == (GRID, GRID_NAME)
    assert (installation.team_id, installation.is_enterprise_install) == (GRID_WS, False)
    # Stored under the organization: a lookup without it finds nothing.
    assert await bolt.store.async_find_installation(enterprise_id=None, team_id=GRID_WS) is None
    installed_token = installation.bot_token
    assert installed_token is not None and installed_token != sim.bot_token_for(GRID_WS)

    bot = AsyncWebClient(token=installed_token, base_url=sim.api_url)
    posted = await bot.chat_postMessage(channel=OPS, text="pick", blocks=BUTTON)
    async with SlackDriver(f"{bolt.url}/slack/events", SIGNING_SECRET, sim, team_id=GRID_WS) as d:
        results = [
            await d.slash_command("/grid", "hi", user_id=DANA, channel_id=OPS),
            await d.block_action(
                "grid_button", user_id=DANA, channel_id=OPS, message_ts=posted["ts"]
            ),
            await d.view_submission(user_id=DANA, callback_id="grid_view"),
            await d.user_message(OPS, DANA, "hello"),
        ]
    assert [r.status for r in results] == [200, 200, 200, 200]

    def handled() -> list[Any]:
        posts = sim.calls_to("chat.postMessage")
        return [call for call in posts if "handled" in str(call.args.get("text"))]

    # Each handler posts after it records what Bolt gave it: four posts, four contexts.
    await until(lambda: len(handled()) == 4)
    assert sorted(bolt.contexts) == sorted(
        (kind, GRID, GRID_WS, False) for kind in ("command", "action", "view", "event")
    )
    assert all(call.ok and call.team_id == GRID_WS for call in handled())
