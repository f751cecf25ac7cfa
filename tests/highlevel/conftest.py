"""A scripted fake HighLevel: a real aiohttp server on 127.0.0.1 that records every request."""

from __future__ import annotations

import asyncio
import json
import socket
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import pytest
from aiohttp import BodyPartReader, web
from pydantic import SecretStr

from bot.highlevel import HighLevelClient, RateLimiter

TOKEN = "pit-test-token-123"
LOCATION_ID = "loc_TEST_1"


@dataclass
class Reply:
    """What the fake answers: JSON (or raw bytes), status, headers, after an optional delay."""

    json: Any = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    raw: bytes | None = None
    hang_up: bool = False
    """Close the connection after reading the request, without answering."""


@dataclass
class Recorded:
    method: str
    path: str
    raw_path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""
    form: dict[str, str] = field(default_factory=dict)
    files: list[tuple[str, str, bytes, str]] = field(default_factory=list)
    """(form key, filename, content, content type)."""

    def json(self) -> Any:
        return json.loads(self.body)


Responder = Callable[[Recorded], Awaitable[Reply] | Reply]


class FakeHighLevel:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._scripts: dict[tuple[str, str], deque[Reply]] = defaultdict(deque)
        self.responder: Responder | None = None
        self.url = ""
        self._runner: web.AppRunner | None = None

    def script(self, method: str, path: str, *replies: Reply) -> None:
        """Queue replies for METHOD PATH; the last one repeats once the queue runs dry."""
        self._scripts[(method, path)].extend(replies)

    def to(self, method: str, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path == path]

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        recorded = Recorded(
            method=request.method,
            path=request.path,
            raw_path=request.raw_path,
            query=dict(request.query),
            headers=dict(request.headers),
        )
        if request.content_type == "multipart/form-data":
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                assert isinstance(part, BodyPartReader)
                content = await part.read()
                if part.filename is not None:
                    ctype = part.headers.get("Content-Type", "")
                    recorded.files.append((part.name or "", part.filename, bytes(content), ctype))
                else:
                    recorded.form[part.name or ""] = bytes(content).decode()
        else:
            recorded.body = await request.read()
        self.requests.append(recorded)

        reply = await self._reply_for(recorded)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.hang_up:
            assert request.transport is not None
            request.transport.close()
            return web.Response()  # goes nowhere: the socket is closed
        if reply.raw is not None:
            return web.Response(status=reply.status, body=reply.raw, headers=reply.headers)
        return web.json_response(reply.json, status=reply.status, headers=reply.headers)

    async def _reply_for(self, recorded: Recorded) -> Reply:
        if self.responder is not None:
            result = self.responder(recorded)
            return await result if not isinstance(result, Reply) else result
        queue = self._scripts.get((recorded.method, recorded.path))
        if not queue:
            return Reply({"statusCode": 404, "message": "not scripted"}, status=404)
        return queue.popleft() if len(queue) > 1 else queue[0]


@pytest.fixture
async def fake() -> AsyncIterator[FakeHighLevel]:
    server = FakeHighLevel()
    await server.start()
    yield server
    await server.stop()


class ClientFactory(Protocol):
    def __call__(
        self,
        *,
        base_url: str | None = None,
        limiter: RateLimiter | None = None,
        timeout: httpx.Timeout | None = None,
        max_read_attempts: int = 3,
        max_send_attempts: int = 3,
        max_rate_limit_wait: float = 30.0,
    ) -> HighLevelClient: ...


@pytest.fixture
async def make_client(fake: FakeHighLevel) -> AsyncIterator[ClientFactory]:
    """Clients aimed at the fake, with tiny backoff and their own (generous) limiter."""
    clients: list[HighLevelClient] = []

    def factory(
        *,
        base_url: str | None = None,
        limiter: RateLimiter | None = None,
        timeout: httpx.Timeout | None = None,
        max_read_attempts: int = 3,
        max_send_attempts: int = 3,
        max_rate_limit_wait: float = 30.0,
    ) -> HighLevelClient:
        client = HighLevelClient(
            token=SecretStr(TOKEN),
            location_id=LOCATION_ID,
            base_url=base_url or fake.url,
            timeout=timeout or httpx.Timeout(2.0),
            limiter=limiter or RateLimiter(max_requests=1000, interval=1.0),
            max_read_attempts=max_read_attempts,
            max_send_attempts=max_send_attempts,
            backoff_base=0.001,
            backoff_max=0.01,
            max_rate_limit_wait=max_rate_limit_wait,
        )
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.aclose()


@pytest.fixture
def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
