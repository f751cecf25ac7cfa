"""What the bridge's outgoing calls cost at least: bare httpx and slack_sdk calls, CPU per call.

A send makes a HighLevel request (httpx) and Slack calls (slack_sdk over aiohttp); an inbound
message makes a Slack post. This process makes those calls and nothing else, with the clients
the bridge uses (httpx over the bridge's aiohttp transport; slack_sdk with one session) and no
other bridge code, against the column's simulators: its CPU per call is the floor under the
bridge's own. Run as ``python -m bench.client_floor`` with ``FLOOR_*`` in the
environment (see ``main``); it prints one JSON line: CPU milliseconds per call, by call.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import httpx
from slack_sdk.web.async_client import AsyncWebClient

from bot.highlevel._transport import AiohttpTransport
from bot.server import skip_absent_sniffio

CONCURRENCY = 10  # as the bridge's workers make them: several at once
WARMUP = 20


async def cpu_per_call(calls: int, make: Callable[[int], Awaitable[object]]) -> float:
    """CPU milliseconds of this process per call, ``calls`` calls at CONCURRENCY at once."""
    await asyncio.gather(*(make(i) for i in range(WARMUP)))  # connections open, code warm
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> None:
        async with gate:
            await make(i)

    started = time.process_time()
    await asyncio.gather(*(one(i) for i in range(WARMUP, WARMUP + calls)))
    return (time.process_time() - started) * 1000 / calls


async def measure(env: dict[str, str], calls: int) -> dict[str, float]:
    channels = env["FLOOR_SLACK_CHANNELS"].split(",")
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": "*Sending…* to Bench Send0"}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "via SMS · floor"}]},
    ]
    # One session for every call, as the bridge's client has (bot.slack_app.build_slack_client).
    async with (
        aiohttp.ClientSession() as session,
        httpx.AsyncClient(
            base_url=env["FLOOR_HIGHLEVEL_URL"],
            transport=AiohttpTransport(max_connections=CONCURRENCY),
            headers={
                "Authorization": f"Bearer {env['FLOOR_HIGHLEVEL_TOKEN']}",
                "Version": "2021-04-15",
                "Accept": "application/json",
            },
        ) as highlevel,
    ):
        slack = AsyncWebClient(
            token=env["FLOOR_SLACK_TOKEN"],
            base_url=env["FLOOR_SLACK_URL"],
            timeout=15,
            retry_handlers=[],
            session=session,
        )

        async def send(i: int) -> object:
            response = await highlevel.post(
                "/conversations/messages",
                json={
                    "type": "SMS",
                    "contactId": env["FLOOR_HIGHLEVEL_CONTACT"],
                    "message": f"client floor {i}",
                },
            )
            response.raise_for_status()
            return response.json()

        # Spread over the channels so Slack's per-channel pacing never answers 429.
        posted: dict[int, tuple[str, str]] = {}
        turn = itertools.cycle(channels)

        async def post(i: int) -> object:
            channel = next(turn)
            answer = await slack.chat_postMessage(channel=channel, text="floor", blocks=blocks)
            posted[i] = (channel, str(answer["ts"]))
            return answer

        async def update(i: int) -> object:
            channel, ts = posted[i]
            return await slack.chat_update(channel=channel, ts=ts, text="sent", blocks=blocks)

        figures = {
            "highlevel_send_ms": await cpu_per_call(calls, send),
            "slack_post_ms": await cpu_per_call(calls, post),
            "slack_update_ms": await cpu_per_call(calls, update),
        }
    return figures


def main() -> int:
    """Environment: FLOOR_HIGHLEVEL_URL/_TOKEN/_CONTACT, FLOOR_SLACK_URL/_TOKEN/_CHANNELS
    (comma-separated), FLOOR_CALLS (per kind)."""
    # As `serve` does: without it, httpcore's failed `import sniffio` costs ~0.7 ms per request.
    skip_absent_sniffio()
    env = dict(os.environ)
    figures = asyncio.run(measure(env, int(env.get("FLOOR_CALLS", "200"))))
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
