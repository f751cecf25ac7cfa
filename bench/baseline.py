"""The yardstick for ack latency: a bare Bolt AsyncApp served the way the bridge serves its own.

aiohttp with ``slack_bolt.adapter.aiohttp``, request verification on, and one ``/sendsms``
listener that only acks. Whatever the bridge's ack costs beyond this is the bridge's own.
Run as ``python -m bench.baseline`` with ``SLACK_SIGNING_SECRET``, ``SLACK_BOT_TOKEN`` and
``SLACK_API_URL`` in the environment; it prints ``listening on URL`` and serves until SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

BOLT_APP_KEY = web.AppKey("bolt_app", AsyncApp)


def build_baseline_app(signing_secret: str, bot_token: str, slack_api_url: str) -> web.Application:
    """aiohttp app with POST /slack/events dispatching to a Bolt app whose listener only acks."""
    bolt_app = AsyncApp(
        client=AsyncWebClient(token=bot_token, base_url=slack_api_url),
        signing_secret=signing_secret,
        request_verification_enabled=True,
        process_before_response=False,
    )

    @bolt_app.command("/sendsms")
    async def sendsms(ack: AsyncAck) -> None:
        await ack()

    async def slack_events(request: web.Request) -> web.Response:
        bolt_response = await request.app[BOLT_APP_KEY].async_dispatch(
            await to_bolt_request(request)
        )
        return await to_aiohttp_response(bolt_response)

    app = web.Application()
    app[BOLT_APP_KEY] = bolt_app
    app.router.add_post("/slack/events", slack_events)
    return app


async def serve_baseline(host: str = "127.0.0.1", port: int = 0) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    app = build_baseline_app(
        os.environ["SLACK_SIGNING_SECRET"],
        os.environ["SLACK_BOT_TOKEN"],
        os.environ["SLACK_API_URL"],
    )
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_host, bound_port = runner.addresses[0][:2]
    print(f"listening on http://{bound_host}:{bound_port}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> int:
    asyncio.run(serve_baseline())
    return 0


if __name__ == "__main__":
    sys.exit(main())
