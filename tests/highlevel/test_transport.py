"""httpx over aiohttp (bot.highlevel._transport) against a real server on 127.0.0.1: what goes
out arrives whole, and every failure says whether the request can have reached HighLevel."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web

from bot.highlevel._client import _NEVER_SENT_ERRORS
from bot.highlevel._transport import AiohttpTransport
from tests.highlevel.conftest import FakeHighLevel, Reply


@pytest.fixture
async def http(fake: FakeHighLevel) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=fake.url, transport=AiohttpTransport(), timeout=httpx.Timeout(2.0)
    ) as client:
        yield client


async def test_a_json_request_arrives_whole_and_its_answer_comes_back(
    fake: FakeHighLevel, http: httpx.AsyncClient
) -> None:
    fake.script(
        "POST",
        "/conversations/messages",
        Reply({"messageId": "m1", "text": "héllo ✓"}, status=201, headers={"X-Seen": "yes"}),
    )
    response = await http.post(
        "/conversations/messages",
        params={"locationId": "loc 1", "q": "a&b"},
        json={"type": "SMS", "message": "héllo ✓"},
        headers={"Version": "2021-04-15", "Authorization": "Bearer t"},
    )
    assert response.status_code == 201
    assert response.reason_phrase == "Created"
    assert response.headers["x-seen"] == "yes"
    assert response.json() == {"messageId": "m1", "text": "héllo ✓"}
    [seen] = fake.requests
    assert seen.query == {"locationId": "loc 1", "q": "a&b"}
    assert seen.headers["Version"] == "2021-04-15"
    assert seen.headers["Authorization"] == "Bearer t"
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.json() == {"type": "SMS", "message": "héllo ✓"}


async def test_an_error_status_is_an_answer_not_an_exception(
    fake: FakeHighLevel, http: httpx.AsyncClient
) -> None:
    response = await http.get("/nowhere")
    assert response.status_code == 404
    assert response.json()["message"] == "not scripted"


async def test_a_multipart_upload_is_streamed_and_arrives_whole(
    fake: FakeHighLevel, http: httpx.AsyncClient
) -> None:
    fake.script("POST", "/conversations/messages/upload", Reply({"uploadedFiles": {}}))
    content = bytes(range(256)) * 1024  # 256 KiB, every byte value
    response = await http.post(
        "/conversations/messages/upload",
        data={"conversationId": "c1"},
        files={"fileAttachment": ("photo.png", content, "image/png")},
    )
    assert response.status_code == 200
    [seen] = fake.requests
    assert seen.form == {"conversationId": "c1"}
    assert seen.files == [("fileAttachment", "photo.png", content, "image/png")]


async def test_nothing_listening_is_a_connect_error_the_client_knows_was_never_sent(
    closed_port_url: str,
) -> None:
    async with httpx.AsyncClient(base_url=closed_port_url, transport=AiohttpTransport()) as http:
        with pytest.raises(httpx.ConnectError) as raised:
            await http.post("/conversations/messages", json={})
    assert isinstance(raised.value, _NEVER_SENT_ERRORS)


async def test_a_connection_dropped_after_the_request_arrived_may_have_acted(
    fake: FakeHighLevel, http: httpx.AsyncClient
) -> None:
    fake.script("POST", "/conversations/messages", Reply(hang_up=True))
    with pytest.raises(httpx.TransportError) as raised:
        await http.post("/conversations/messages", json={"message": "hi"})
    # HighLevel had it: retrying as if it had not could send the customer two texts.
    assert len(fake.to("POST", "/conversations/messages")) == 1
    assert not isinstance(raised.value, _NEVER_SENT_ERRORS)


async def test_no_answer_within_the_read_timeout_is_a_read_timeout(fake: FakeHighLevel) -> None:
    fake.script("POST", "/conversations/messages", Reply({"ok": True}, delay=5.0))
    async with httpx.AsyncClient(
        base_url=fake.url,
        transport=AiohttpTransport(),
        timeout=httpx.Timeout(5.0, read=0.2),
    ) as http:
        with pytest.raises(httpx.ReadTimeout) as raised:
            await http.post("/conversations/messages", json={})
    assert not isinstance(raised.value, _NEVER_SENT_ERRORS)
    assert len(fake.to("POST", "/conversations/messages")) == 1


async def test_connections_are_kept_and_reused() -> None:
    peers: list[object] = []

    async def answer(request: web.Request) -> web.Response:
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peername"))
        return web.json_response({"contacts": []})

    app = web.Application()
    app.router.add_get("/contacts/", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        url, transport = f"http://127.0.0.1:{port}", AiohttpTransport(max_connections=2)
        async with httpx.AsyncClient(base_url=url, transport=transport) as http:
            for _ in range(10):
                assert (await http.get("/contacts/")).status_code == 200
    finally:
        await runner.cleanup()
    assert len(peers) == 10
    assert len(set(peers)) == 1  # one after another: one connection, kept alive


async def test_the_environments_proxy_is_used_and_its_no_proxy_hosts_are_not(
    fake: FakeHighLevel, monkeypatch: pytest.MonkeyPatch
) -> None:
    through: list[str] = []

    async def proxy(request: web.BaseRequest) -> web.Response:
        through.append(str(request.url))  # a proxy is asked for the absolute URL
        return web.json_response({"via": "proxy"})

    runner = web.ServerRunner(web.Server(proxy))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    try:
        async with httpx.AsyncClient(transport=AiohttpTransport()) as client:
            proxied = await client.get("http://highlevel.example/contacts/?q=1")
            direct = await client.get(f"{fake.url}/nowhere")
    finally:
        await runner.cleanup()
    assert proxied.json() == {"via": "proxy"}
    assert through == ["http://highlevel.example/contacts/?q=1"]
    assert direct.status_code == 404 and direct.json()["message"] == "not scripted"
    assert fake.requests[0].path == "/nowhere"
