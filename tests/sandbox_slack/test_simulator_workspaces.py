"""Several workspaces in one simulator: each token reaches only its own workspace."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from urllib.parse import parse_qs

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bot.sandbox.slack import SlackDriver, SlackSimulator
from tests.sandbox_slack._support import ALICE, GENERAL, refused

ACME = "T0ACME"
CAROL = "U0CAROL"
SALES = "C0SALES"
SECRET = "sandbox-signing-secret"


@pytest.fixture
def acme(sim: SlackSimulator) -> AsyncWebClient:
    workspace = sim.add_workspace(ACME, "Acme Corp")
    workspace.add_user(CAROL, "carol", "Carol Customer")
    workspace.add_channel(SALES, "sales")
    return AsyncWebClient(token=sim.bot_token_for(ACME), base_url=sim.api_url)


async def test_each_token_answers_for_its_own_workspace(
    sim: SlackSimulator, client: AsyncWebClient, acme: AsyncWebClient
) -> None:
    home = await client.auth_test()
    other = await acme.auth_test()
    assert home["team_id"] == sim.team_id
    assert other["team_id"] == ACME
    assert other["user_id"] == sim.workspace(ACME).bot_user_id != home["user_id"]
    assert sim.bot_token_for(sim.team_id) == sim.bot_token
    assert [w.team_id for w in sim.workspaces] == [sim.team_id, ACME]

    posted = await acme.chat_postMessage(channel=SALES, text="hello acme")
    assert [m.text for m in sim.workspace(ACME).channel_messages(SALES)] == ["hello acme"]
    assert posted["message"]["bot_id"] == sim.workspace(ACME).bot_id
    assert sim.channel_messages(SALES) == []
    assert sim.calls_to("chat.postMessage")[-1].team_id == ACME


async def test_a_token_never_reaches_another_workspace(
    sim: SlackSimulator, client: AsyncWebClient, acme: AsyncWebClient
) -> None:
    # A bot token is bound to its workspace: the other workspace's channels do not exist for it.
    assert (await refused(acme.chat_postMessage(channel=GENERAL, text="x")))[
        "error"
    ] == "channel_not_found"
    assert (await refused(client.conversations_info(channel=SALES)))["error"] == (
        "channel_not_found"
    )
    assert (await refused(acme.users_info(user=ALICE)))["error"] == "user_not_found"
    assert sim.channel_messages(GENERAL) == []
    stranger = AsyncWebClient(token="xoxb-T0NOPE-sandbox", base_url=sim.api_url)
    assert (await refused(stranger.auth_test()))["error"] == "invalid_auth"


async def test_adding_a_workspace_twice_is_refused(sim: SlackSimulator) -> None:
    sim.add_workspace(ACME, "Acme Corp")
    with pytest.raises(ValueError, match="already exists"):
        sim.add_workspace(ACME, "Acme again")
    with pytest.raises(KeyError):
        sim.workspace("T0NOPE")


@pytest.fixture
async def app_inbox() -> AsyncIterator[tuple[TestServer, list[web.Request], list[str]]]:
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
        yield server, seen, bodies
    finally:
        await server.close()


async def test_driver_sends_as_a_person_of_the_chosen_workspace(
    sim: SlackSimulator,
    acme: AsyncWebClient,
    app_inbox: tuple[TestServer, list[web.Request], list[str]],
) -> None:
    server, seen, bodies = app_inbox
    url = str(server.make_url("/slack/events"))
    verifier = SignatureVerifier(SECRET)
    async with SlackDriver(url, SECRET, sim) as home:
        acme_driver = home.for_workspace(ACME)
        try:
            result = await acme_driver.user_message(SALES, CAROL, "hi from acme")
            command = await acme_driver.slash_command(
                "/ghl", "help", user_id=CAROL, channel_id=SALES
            )
        finally:
            await acme_driver.aclose()
        by_team_id = SlackDriver(url, SECRET, sim, team_id=ACME)
        assert by_team_id.workspace is sim.workspace(ACME)
        await by_team_id.aclose()
    assert result.ok and command.ok
    envelope = json.loads(bodies[0])
    assert envelope["team_id"] == ACME
    assert envelope["authorizations"][0]["user_id"] == sim.workspace(ACME).bot_user_id
    assert envelope["event"]["channel"] == SALES
    assert result.message is not None
    assert sim.workspace(ACME).message(SALES, result.message.ts) is result.message
    fields = parse_qs(bodies[1])
    assert fields["team_id"] == [ACME]
    assert fields["team_domain"] == ["acme-corp"]
    for request, body in zip(seen, bodies, strict=True):
        assert verifier.is_valid_request(body, dict(request.headers))
    # The response_url belongs to the Acme workspace: an in_channel answer lands there.
    assert command.response_url is not None
    async with httpx.AsyncClient() as http:
        answered = await http.post(
            command.response_url, json={"response_type": "in_channel", "text": "done"}
        )
    assert answered.status_code == 200
    assert [m.text for m in sim.workspace(ACME).channel_messages(SALES)][-1] == "done"
