"""The simulator's Socket Mode: `apps.connections.open` takes the app-level token only and hands
out a one-use websocket URL on the simulator, whose socket says hello, carries envelopes and
collects the app's acknowledgements."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.sandbox.slack import SlackSimulator
from tests.e2e.conftest import eventually


async def open_url(sim: SlackSimulator, token: str | None) -> str:
    web = AsyncWebClient(base_url=sim.api_url, retry_handlers=[])
    if token is None:
        response = await web.api_call("apps.connections.open", http_verb="POST")
    else:
        response = await web.apps_connections_open(app_token=token)
    url: str = response["url"]
    return url


async def next_json(socket: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    message = await asyncio.wait_for(socket.receive(), 5)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    body: dict[str, Any] = json.loads(message.data)
    return body


async def test_the_app_token_opens_a_websocket_that_says_hello(sim: SlackSimulator) -> None:
    url = await open_url(sim, sim.app_token)
    assert url.startswith(f"ws://{sim.base_url.removeprefix('http://').rstrip('/')}/link/?ticket=")
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as socket:
        hello = await next_json(socket)
        assert hello["type"] == "hello"
        assert hello["connection_info"] == {"app_id": sim.app_id}
        assert hello["num_connections"] == 1
        assert sim.socket_connections == 1
    await eventually(lambda: sim.socket_connections == 0)
    assert sim.calls_to("apps.connections.open")[0].ok


@pytest.mark.parametrize(
    ("token", "error"),
    [
        ("bot", "not_allowed_token_type"),
        ("xapp-1-A0SANDBOX-1-not-this-one", "invalid_auth"),
        (None, "not_authed"),
    ],
)
async def test_apps_connections_open_refuses_other_tokens(
    sim: SlackSimulator, token: str | None, error: str
) -> None:
    with pytest.raises(SlackApiError) as refused:
        await open_url(sim, sim.bot_token if token == "bot" else token)
    assert refused.value.response["error"] == error


async def test_the_app_token_is_refused_by_other_methods(sim: SlackSimulator) -> None:
    with pytest.raises(SlackApiError) as refused:
        await AsyncWebClient(token=sim.app_token, base_url=sim.api_url).auth_test()
    assert refused.value.response["error"] == "not_allowed_token_type"


async def test_a_socket_url_works_once(sim: SlackSimulator) -> None:
    url = await open_url(sim, sim.app_token)
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(url) as socket:
            assert (await next_json(socket))["type"] == "hello"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url)
        assert refused.value.status == 401


async def test_hello_on_demand_envelopes_acks_and_a_drop(sim: SlackSimulator) -> None:
    sim.socket_hello = False
    async with aiohttp.ClientSession() as http:
        socket = await http.ws_connect(await open_url(sim, sim.app_token))
        await eventually(lambda: sim.sockets_awaiting_hello == 1)
        assert await sim.send_hello() == 1
        assert (await next_json(socket))["type"] == "hello"
        event = {"type": "event_callback", "event": {"type": "app_mention", "text": "hi"}}
        envelope_id = await sim.push_envelope(event)
        envelope = await next_json(socket)
        assert envelope["envelope_id"] == envelope_id
        assert envelope["type"] == "events_api"
        assert envelope["payload"] == event
        await socket.send_json({"envelope_id": envelope_id})
        await eventually(lambda: sim.socket_acks == [{"envelope_id": envelope_id}])
        assert await sim.drop_sockets() == 1
        closing = await asyncio.wait_for(socket.receive(), 5)
        assert closing.type in {aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED}
        assert socket.close_code == aiohttp.WSCloseCode.GOING_AWAY
        await socket.close()
    await eventually(lambda: sim.socket_connections == 0)
