"""Fixtures: a running HighLevel simulator, an HTTP client for it and a real webhook receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from aiohttp import web

from bot.sandbox.highlevel import HighLevelSimulator


@pytest.fixture
async def sim() -> AsyncIterator[HighLevelSimulator]:
    simulator = HighLevelSimulator(webhook_retry_delay=0.01, webhook_timeout=2.0)
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


def api_headers(sim: HighLevelSimulator, version: str = "2021-04-15") -> dict[str, str]:
    return {"Authorization": f"Bearer {sim.token}", "Version": version}


@pytest.fixture
async def api(sim: HighLevelSimulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=sim.base_url, headers=api_headers(sim), timeout=5.0
    ) as client:
        yield client


@dataclass
class Receiver:
    """A webhook endpoint on 127.0.0.1 that answers with ``answers`` in turn (then 200)."""

    url: str = ""
    answers: list[int] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    signatures: list[str | None] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.read())
        self.signatures.append(request.headers.get("x-ghl-signature"))
        status = self.answers.pop(0) if self.answers else 200
        return web.json_response({"ok": status == 200}, status=status)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hook = Receiver()
    app = web.Application()
    app.router.add_post("/hooks/ghl", hook.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    hook.url = f"http://{host}:{port}/hooks/ghl"
    try:
        yield hook
    finally:
        await runner.cleanup()
