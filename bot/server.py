"""The HTTP face of `ghl-bridge serve`: Slack requests, HighLevel webhooks and health."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import parse_qs

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_sdk.signature import SignatureVerifier

from bot.app import Bridge
from bot.http_guard import (
    LINGERING_SECONDS,
    AcceptErrorLog,
    BodyGate,
    ConnectionGuard,
    GuardedSite,
    MalformedRequestLog,
    json_error,
    plan_connections,
    raise_open_file_limit,
)
from bot.observability.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from bot.settings import Settings
from bot.socket_mode import SocketModeError, SocketModeLink
from handlers.webhooks import RETRY_AFTER_SECONDS
from storage import StoreError

log = logging.getLogger(__name__)

BRIDGE_KEY = web.AppKey("bridge", Bridge)
SLACK_BODIES_KEY = web.AppKey("slack_bodies", BodyGate)
WEBHOOK_BODIES_KEY = web.AppKey("webhook_bodies", BodyGate)
SLACK_VERIFIER_KEY = web.AppKey("slack_verifier", SignatureVerifier)
# Anything larger is refused with 413 before it is read. Slack publishes no request size limit:
# its bodies are a few kB, and the largest it can send (a shortcut on a 40,000-character message,
# or a 100-block modal's view_submission, URL-encoded JSON) stay under 1 MiB.
SLACK_MAX_BODY_BYTES = 1024 * 1024
# HighLevel webhooks carry a message's text and attachment URLs, not files: a few kB.
WEBHOOK_MAX_BODY_BYTES = 256 * 1024
SHUTDOWN_GRACE_SECONDS = 10.0


def build_web_app(bridge: Bridge, guard: ConnectionGuard | None = None) -> web.Application:
    """Routes: POST /slack/events, POST /ghl/webhooks, GET /healthz, /readyz and /metrics,
    the HighLevel install's GET /ghl/install and /ghl/oauth/callback, and Slack's install's
    GET /slack/install and /slack/oauth_redirect."""
    settings = bridge.settings
    app = web.Application(
        client_max_size=SLACK_MAX_BODY_BYTES,
        middlewares=[guard.middleware] if guard is not None else [],
    )
    app[BRIDGE_KEY] = bridge
    # HighLevel retries a webhook only on 429; Slack retries nothing, so 503 says it plainly.
    app[WEBHOOK_BODIES_KEY] = BodyGate(
        max_bytes=WEBHOOK_MAX_BODY_BYTES,
        slots=settings.http_max_pending_bodies,
        timeout=settings.http_body_timeout_seconds,
        when_full=lambda: json_error(
            web.HTTPTooManyRequests, "busy", {"Retry-After": RETRY_AFTER_SECONDS}
        ),
    )
    app[SLACK_BODIES_KEY] = BodyGate(
        max_bytes=SLACK_MAX_BODY_BYTES,
        slots=settings.http_max_pending_bodies,
        timeout=settings.http_body_timeout_seconds,
        when_full=lambda: json_error(web.HTTPServiceUnavailable, "busy"),
    )
    if settings.slack_signing_secret is not None and not settings.socket_mode:
        app[SLACK_VERIFIER_KEY] = SignatureVerifier(
            settings.slack_signing_secret.get_secret_value()
        )
    app.router.add_post("/slack/events", slack_events)
    app.router.add_post("/ghl/webhooks", ghl_webhooks)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/ghl/install", bridge.oauth_pages.install)
    app.router.add_get("/ghl/oauth/callback", bridge.oauth_pages.callback)
    app.router.add_get("/slack/install", bridge.slack_install.install)
    app.router.add_get("/slack/oauth_redirect", bridge.slack_install.redirect)
    app.on_cleanup.append(_close_body_gates)
    return app


async def _close_body_gates(app: web.Application) -> None:
    app[SLACK_BODIES_KEY].close()
    app[WEBHOOK_BODIES_KEY].close()


async def slack_events(request: web.Request) -> web.Response:
    """Verified here, on the raw body, before Bolt parses anything: an unsigned request costs
    a 401 and one WARNING line, whatever its body."""
    bridge = request.app[BRIDGE_KEY]
    verifier = request.app.get(SLACK_VERIFIER_KEY)
    if bridge.settings.socket_mode or verifier is None:
        return web.json_response(
            {"error": "Slack traffic arrives over Socket Mode; this endpoint is off."}, status=404
        )
    request = await request.app[SLACK_BODIES_KEY].read(request)
    raw = await request.read()
    if not _signed_by_slack(verifier, raw, request.headers):
        if _is_ssl_check(raw):
            return web.Response(status=200, text="")  # Bolt answers these unsigned too
        log.warning("refused a Slack request: missing, stale or wrong signature")
        return web.json_response({"error": "invalid request"}, status=401)
    try:
        bolt_request = await to_bolt_request(request)
    except Exception as exc:  # Bolt's parsing of a body only Slack could have signed
        log.warning(
            "refused a signed Slack request whose body is malformed (%s)", type(exc).__name__
        )
        return web.json_response({"error": "malformed request"}, status=400)
    bolt_response = await bridge.bolt_app.async_dispatch(bolt_request)
    return await to_aiohttp_response(bolt_response)


def _signed_by_slack(verifier: SignatureVerifier, raw: bytes, headers: Mapping[str, str]) -> bool:
    try:
        return verifier.is_valid(
            body=raw,
            timestamp=headers.get("x-slack-request-timestamp"),
            signature=headers.get("x-slack-signature"),
        )
    except ValueError:  # a timestamp that is not a number, a body that is not UTF-8
        return False


def _is_ssl_check(raw: bytes) -> bool:
    """Slack's certificate check for slash commands (`ssl_check=1`), which reveals nothing."""
    try:
        fields = parse_qs(raw.decode("utf-8", "replace"), max_num_fields=10)
    except ValueError:
        return False
    return fields.get("ssl_check") == ["1"]


async def ghl_webhooks(request: web.Request) -> web.Response:
    request = await request.app[WEBHOOK_BODIES_KEY].read(request)
    return await request.app[BRIDGE_KEY].webhooks.handle(request)


async def healthz(request: web.Request) -> web.Response:
    """200 while the bridge works; 503 with a one-line reason while it cannot (a database that
    takes no writes, a worker that keeps failing, Socket Mode not connected)."""
    problem = await request.app[BRIDGE_KEY].healthy()
    if problem is None:
        return web.json_response({"status": "ok"})
    return web.json_response({"status": "unavailable", "reason": problem}, status=503)


async def readyz(request: web.Request) -> web.Response:
    """200 while this instance can take traffic; 503 with a one-line reason while it cannot
    (a database that takes no writes, a schema older or newer than this program knows)."""
    problem = await request.app[BRIDGE_KEY].ready()
    if problem is None:
        return web.json_response({"status": "ready"})
    return web.json_response({"status": "not ready", "reason": problem}, status=503)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format; a busy database leaves its figures out, never fails the scrape."""
    body = await request.app[BRIDGE_KEY].metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})


def keep_request_urls_out_of_info_logs() -> None:
    """httpx logs each request's full URL at INFO, and HighLevel's contact look-ups carry the
    customer's phone number or email address in theirs: unless whoever runs the bridge chose a
    level for that logger, it logs from WARNING up (the bridge's own DEBUG lines name paths)."""
    for name in ("httpx",):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)


def skip_absent_sniffio() -> None:
    """Make httpcore's `import sniffio` fail at once when sniffio is not installed.

    httpcore tries that import each time it sets up a lock (several times per HighLevel
    request), and Python caches no failed import: each try searched every folder of sys.path
    again, about 0.6 ms of CPU per send (encode/httpcore#1103). None in sys.modules makes the
    import raise ImportError straight away, which httpcore takes as "asyncio", as before.
    """
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


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
    skip_absent_sniffio()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)

    plan = plan_connections(raise_open_file_limit(), settings.http_max_connections)
    log.info(
        "open-file limit %d: at most %d connections open at once",
        plan.open_file_limit,
        plan.max_connections,
    )
    try:
        bridge = await Bridge.create(settings)
    except StoreError as exc:  # the database cannot be opened or written: says what to do
        raise ServeError(" ".join(str(exc).split())) from None
    guard = ConnectionGuard(
        max_connections=plan.max_connections,
        header_timeout=settings.http_header_timeout_seconds,
        idle_timeout=settings.http_idle_timeout_seconds,
    )
    runner = web.AppRunner(
        build_web_app(bridge, guard),
        handle_signals=False,
        shutdown_timeout=SHUTDOWN_GRACE_SECONDS,
        lingering_time=LINGERING_SECONDS,
    )
    accept_errors = AcceptErrorLog(loop.get_exception_handler())
    loop.set_exception_handler(accept_errors)
    malformed_requests = MalformedRequestLog()
    logging.getLogger("aiohttp.server").addFilter(malformed_requests)
    socket_mode: SocketModeLink | None = None
    try:
        await runner.setup()
        site = GuardedSite(runner, settings.host, settings.port, guard=guard, backlog=plan.backlog)
        try:
            await site.start()
        except OSError as exc:
            raise ServeError(
                f"cannot listen on {settings.host}:{settings.port} ({exc.strerror or exc}): "
                "set HOST/PORT to a free address."
            ) from None
        url = _bound_url(runner, settings)
        if settings.slack_app_token is not None:
            socket_mode = SocketModeLink(
                bridge.bolt_app,
                settings.slack_app_token.get_secret_value(),
                api_url=settings.slack_api_url,
            )
        bridge.start(socket_mode=socket_mode)
        mode = "Socket Mode" if settings.socket_mode else "HTTP mode"
        log.info("ghl-bridge serving on %s (%s)", url, mode)
        if on_ready is not None:
            result = on_ready(url)
            if result is not None:
                await result
        if socket_mode is not None:
            # /healthz answers 503 until Slack says hello; a signal ends the attempts at once.
            try:
                await socket_mode.connect(stop)
            except SocketModeError as exc:
                raise ServeError(str(exc)) from None
        await stop.wait()
        log.info("stopping: finishing in-flight work")
    finally:
        if socket_mode is not None:
            await socket_mode.close()
        # One grace for the whole stop: no new connections, the HTTP requests in flight
        # answered (runner.cleanup), then the Slack listeners' work after their acks, then
        # the workers' items in hand; only then are the clients and the database closed.
        stop_deadline = loop.time() + SHUTDOWN_GRACE_SECONDS
        try:
            await runner.cleanup()
            await bridge.aclose(grace=max(0.0, stop_deadline - loop.time()))
        finally:
            loop.set_exception_handler(accept_errors.previous)
            accept_errors.close()
            logging.getLogger("aiohttp.server").removeFilter(malformed_requests)
            malformed_requests.close()
            guard.close()
            for signum in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(signum)
    log.info("stopped")


def _bound_url(runner: web.AppRunner, settings: Settings) -> str:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return f"http://{address[0]}:{address[1]}"
    return f"http://{settings.host}:{settings.port}"
