"""The HTTP face of `ghl-bridge serve`: Slack requests, HighLevel webhooks and health."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

from bot.app import Bridge
from bot.settings import Settings

log = logging.getLogger(__name__)

BRIDGE_KEY = web.AppKey("bridge", Bridge)
# Slack bodies are small; HighLevel webhooks carry text and attachment URLs, not files.
# Anything larger is refused with 413 before it is read.
MAX_BODY_BYTES = 1024 * 1024
SHUTDOWN_GRACE_SECONDS = 10.0


def build_web_app(bridge: Bridge) -> web.Application:
    """Routes: POST /slack/events, POST /ghl/webhooks, GET /healthz."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[BRIDGE_KEY] = bridge
    app.router.add_post("/slack/events", slack_events)
    app.router.add_post("/ghl/webhooks", ghl_webhooks)
    app.router.add_get("/healthz", healthz)
    return app


async def slack_events(request: web.Request) -> web.Response:
    bridge = request.app[BRIDGE_KEY]
    if bridge.settings.socket_mode:
        return web.json_response(
            {"error": "Slack traffic arrives over Socket Mode; this endpoint is off."}, status=404
        )
    bolt_response = await bridge.bolt_app.async_dispatch(await to_bolt_request(request))
    return await to_aiohttp_response(bolt_response)


async def ghl_webhooks(request: web.Request) -> web.Response:
    return await request.app[BRIDGE_KEY].webhooks.handle(request)


async def healthz(request: web.Request) -> web.Response:
    bridge = request.app[BRIDGE_KEY]
    if await bridge.healthy():
        return web.json_response({"status": "ok"})
    return web.json_response({"status": "unavailable"}, status=503)


def keep_request_urls_out_of_info_logs() -> None:
    """httpx logs each request's full URL at INFO, and HighLevel's contact look-ups carry the
    customer's phone number or email address in theirs: unless whoever runs the bridge chose a
    level for that logger, it logs from WARNING up (the bridge's own DEBUG lines name paths)."""
    for name in ("httpx",):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)


class ServeError(Exception):
    """`serve` could not start; the message is one line for the person who ran it."""


async def serve(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[str], Awaitable[None] | None] | None = None,
) -> None:
    """Run the bridge until SIGTERM/SIGINT (or `stop`), then shut down gracefully."""
    stop = stop or asyncio.Event()
    keep_request_urls_out_of_info_logs()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)

    bridge = await Bridge.create(settings)
    runner = web.AppRunner(
        build_web_app(bridge), handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE_SECONDS
    )
    socket_handler: AsyncSocketModeHandler | None = None
    try:
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port)
        try:
            await site.start()
        except OSError as exc:
            raise ServeError(
                f"cannot listen on {settings.host}:{settings.port} ({exc.strerror or exc}): "
                "set HOST/PORT to a free address."
            ) from None
        url = _bound_url(runner, settings)
        bridge.start()
        if settings.socket_mode:
            assert settings.slack_app_token is not None  # noqa: S101 - socket_mode implies it
            socket_handler = AsyncSocketModeHandler(
                bridge.bolt_app, settings.slack_app_token.get_secret_value()
            )
            await socket_handler.connect_async()  # type: ignore[no-untyped-call]
        mode = "Socket Mode" if settings.socket_mode else "HTTP mode"
        log.info("ghl-bridge serving on %s (%s)", url, mode)
        if on_ready is not None:
            result = on_ready(url)
            if result is not None:
                await result
        await stop.wait()
        log.info("stopping: finishing in-flight work")
    finally:
        if socket_handler is not None:
            await socket_handler.close_async()  # type: ignore[no-untyped-call]
        # Stops listening first, then waits for in-flight requests, then runs cleanup.
        await runner.cleanup()
        await bridge.aclose()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)
    log.info("stopped")


def _bound_url(runner: web.AppRunner, settings: Settings) -> str:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return f"http://{address[0]}:{address[1]}"
    return f"http://{settings.host}:{settings.port}"
