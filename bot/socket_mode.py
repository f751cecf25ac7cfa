"""Socket Mode: Slack's events over a websocket the bridge opens, when SLACK_APP_TOKEN is set.

slack_sdk's aiohttp client, left to itself, retries a failed connect forever with a traceback
every `ping_interval` and cannot be interrupted while it does, and a refused token looks the
same as an unreachable host. Here one attempt is one call: `apps.connections.open` for a
websocket URL, the websocket, then Slack's `hello`. Start-up makes a bounded number of attempts
with backoff and tells a refused token (stop, one line) from a network failure (try again);
once connected, a lost connection is re-established with backoff, and `problem()` tells health
whether the socket is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_bolt.adapter.socket_mode.async_internals import (
    run_async_bolt_app,
    send_async_response,
)
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)

# apps.connections.open errors that mean the token itself will not do (docs.slack.dev method
# reference); trying again cannot help.
BAD_APP_TOKEN_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "not_allowed_token_type",
        "token_revoked",
        "token_expired",
        "account_inactive",
        "missing_scope",
        "no_permission",
        "team_access_not_granted",
    }
)
# Slack's own trouble: worth another try.
TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "request_timeout", "service_unavailable", "fatal_error", "internal_error"}
)
APP_CREDENTIAL_FIX = (
    "copy an App-Level Token (xapp-...) with the connections:write scope from the app's "
    "Basic Information page into SLACK_APP_TOKEN"
)
NOT_SLACK_FIX = "leave SLACK_API_URL unset for Slack's API, or check the service it points at"
# How often a connected link looks at its socket (a dropped one is noticed within this).
WATCH_INTERVAL_SECONDS = 1.0


class SocketModeError(Exception):
    """Socket Mode cannot work; the message is one line for the person running the bridge."""


class SocketRefused(SocketModeError):
    """Slack refused the app token (or SLACK_API_URL is not Slack): trying again cannot help."""

    def __init__(self, detail: str, fix: str) -> None:
        super().__init__(f"{detail}: {fix}")
        self.detail = detail
        self.fix = fix


class SocketUnreachable(Exception):
    """One attempt failed in a way another attempt may not: network, timeout, Slack's 5xx."""


@dataclass(frozen=True)
class RetryPolicy:
    """Start-up: `attempts` tries, `first_delay` s apart and doubling up to `max_delay`; each try
    (URL, websocket and hello) gets `attempt_timeout` s. Reconnects keep trying, up to
    `reconnect_max_delay` s apart."""

    attempts: int = 5
    first_delay: float = 0.5
    max_delay: float = 8.0
    attempt_timeout: float = 10.0
    reconnect_max_delay: float = 60.0

    def delay(self, failures: int, cap: float | None = None) -> float:
        limit = self.max_delay if cap is None else cap
        return float(min(limit, self.first_delay * 2 ** max(0, failures - 1)))


def check_app_token_answer(error: str, status: int, api_url: str) -> SocketModeError | None:
    """What an `apps.connections.open` failure means: a SocketModeError when retrying cannot
    help, None when it may (Slack's 5xx, rate limit or own trouble)."""
    if status == 429 or status >= 500 or error in TRANSIENT_ERRORS:
        return None
    if error in BAD_APP_TOKEN_ERRORS:
        return SocketRefused(f"Slack refused SLACK_APP_TOKEN ({error})", APP_CREDENTIAL_FIX)
    return SocketRefused(
        f"apps.connections.open at {api_url} failed ({error or f'HTTP {status}'})", NOT_SLACK_FIX
    )


def describe_network_error(exc: BaseException) -> str:
    """One line without the URL (a Socket Mode URL carries a connection ticket)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or type(exc.os_error).__name__
        return f"cannot connect to {exc.host}:{exc.port} ({reason})"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"HTTP {exc.status}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = " ".join(str(exc).split())[:120]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def open_socket_url(web: AsyncWebClient, app_token: str, api_url: str) -> str:
    """`apps.connections.open`: the websocket URL, SocketRefused, or SocketUnreachable."""
    try:
        response = await web.apps_connections_open(app_token=app_token)
    except SlackApiError as exc:
        error = str(exc.response.get("error") or "")
        refused = check_app_token_answer(error, exc.response.status_code, api_url)
        if refused is not None:
            raise refused from None
        raise SocketUnreachable(f"Slack answered {error or exc.response.status_code}") from None
    except (SlackClientError, aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise SocketUnreachable(describe_network_error(exc)) from None
    url = response.get("url")
    if not isinstance(url, str) or not url.startswith(("wss://", "ws://")):
        raise SocketRefused(
            f"apps.connections.open at {api_url} gave no websocket URL", NOT_SLACK_FIX
        )
    return url


class _SocketClient(SocketModeClient):
    """slack_sdk's aiohttp client with `connect()` made one attempt that raises on failure.

    The client calls `connect()` itself when Slack asks it to reconnect (a `disconnect`
    message); the URL comes from `issue_url`, so its errors are classified like ours.
    """

    def __init__(self, *, issue_url: Callable[[], Awaitable[str]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._issue_url = issue_url
        self.opened_at = -math.inf  # time.monotonic() of the newest websocket

    async def issue_new_wss_url(self) -> str:
        return await self._issue_url()

    async def connect(self) -> None:
        url, self.wss_uri = self.wss_uri or await self._issue_url(), None  # one use per URL
        old = self.current_session
        self.auto_reconnect_enabled = False
        if old is not None and not old.closed:
            with contextlib.suppress(Exception):
                await old.close()
        if self.aiohttp_client_session.closed:
            self.aiohttp_client_session = aiohttp.ClientSession()
        try:
            session = await self.aiohttp_client_session.ws_connect(
                url,
                autoping=False,
                heartbeat=self.ping_interval,
                proxy=self.proxy,
                ssl=self.web_client.ssl if self.web_client.ssl is not None else True,
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise SocketUnreachable(f"websocket: {describe_network_error(exc)}") from None
        self.current_session = session
        self.opened_at = time.monotonic()
        self.stale = False
        self.last_ping_pong_time = None
        for task in (self.current_session_monitor, self.message_receiver):
            if task is not None:
                task.cancel()
        # The client's own loops: pings (and their pongs) and reading the socket.
        self.current_session_monitor = asyncio.ensure_future(self.monitor_current_session())
        self.message_receiver = asyncio.ensure_future(self.receive_messages())


class SocketModeLink:
    """The bridge's Socket Mode connection: connect, keep connected, and say whether it is."""

    def __init__(
        self,
        bolt_app: AsyncApp,
        app_token: str,
        *,
        api_url: str,
        retry: RetryPolicy | None = None,
        ping_interval: float = 10.0,
    ) -> None:
        self._bolt_app = bolt_app
        self._app_token = app_token
        self._api_url = api_url
        self._retry = retry or RetryPolicy()
        self._ping_interval = ping_interval
        # No retry handlers: the attempts and their pacing are ours.
        self._web = AsyncWebClient(
            base_url=api_url, timeout=int(self._retry.attempt_timeout), retry_handlers=[]
        )
        self._client = _SocketClient(
            issue_url=self._issue_url,
            app_token=app_token,
            logger=logging.getLogger("slack_sdk.socket_mode"),
            web_client=self._web,
            auto_reconnect_enabled=False,
            ping_interval=ping_interval,
        )
        self._client.socket_mode_request_listeners.append(self._dispatch)
        self._client.message_listeners.append(self._on_message)
        self._hello = asyncio.Event()
        self._hello_session: object | None = None
        self._ever_connected = False
        self._keeper: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ health

    def problem(self) -> str | None:
        """None while the socket is up and Slack has said hello on it; else one line."""
        if self._connected():
            return None
        if self._ever_connected:
            return "Socket Mode: the connection to Slack was lost; reconnecting"
        return "Socket Mode: not connected to Slack yet"

    def _connected(self) -> bool:
        client = self._client
        session = client.current_session
        if session is None or session.closed or client.closed or client.stale:
            return False
        if self._hello_session is not session:
            return False
        last_pong = client.last_ping_pong_time
        return last_pong is None or time.time() - last_pong < self._ping_interval * 4

    # ------------------------------------------------------------------ connecting

    async def connect(self, stop: asyncio.Event) -> bool:
        """Connect, trying up to `attempts` times; False when `stop` came first.

        Raises SocketModeError (one line) for a refused token at once, or once every attempt
        failed; either way the caller stops.
        """
        retry = self._retry
        failures = 0
        while True:
            try:
                if not await _unless_stopped(stop, self._attempt(), retry.attempt_timeout):
                    return False
            except SocketUnreachable as exc:
                reason = str(exc)
            else:
                self._ever_connected = True
                self._keeper = asyncio.create_task(self._keep_connected(), name="socket-mode")
                log.info("Socket Mode: connected to Slack")
                return True
            failures += 1
            if failures >= retry.attempts:
                raise SocketModeError(
                    f"cannot connect to Slack's Socket Mode ({reason}) after {failures} "
                    "attempts: check the network and proxy, or leave SLACK_API_URL unset for "
                    "Slack's API"
                )
            delay = retry.delay(failures)
            log.warning(
                "Socket Mode: cannot connect to Slack (%s); attempt %d of %d in %.1f s",
                reason,
                failures + 1,
                retry.attempts,
                delay,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
                return False

    async def _attempt(self) -> None:
        """URL, websocket, hello; SocketUnreachable or SocketRefused when one fails."""
        self._hello.clear()
        await self._client.connect_to_new_endpoint(force=True)
        await self._hello.wait()

    async def _issue_url(self) -> str:
        return await open_socket_url(self._web, self._app_token, self._api_url)

    async def _keep_connected(self) -> None:
        retry = self._retry
        while True:
            await asyncio.sleep(WATCH_INTERVAL_SECONDS)
            if self._connected() or self._reconnecting_by_itself():
                continue
            log.warning("Socket Mode: the connection to Slack was lost; reconnecting")
            failures = 0
            while not self._connected():
                try:
                    await asyncio.wait_for(self._attempt(), retry.attempt_timeout)
                except Exception as exc:  # whatever it was, the next try may do better
                    failures += 1
                    delay = retry.delay(failures, retry.reconnect_max_delay)
                    reason = str(exc) or type(exc).__name__
                    log.warning(
                        "Socket Mode: reconnecting failed (%d in a row: %s); next try in %.0f s",
                        failures,
                        reason,
                        delay,
                    )
                    await asyncio.sleep(delay)
            log.info("Socket Mode: reconnected to Slack")

    def _reconnecting_by_itself(self) -> bool:
        """The client is at a reconnect Slack asked for (a `disconnect` message), or its new
        socket still awaits its hello: not lost, and a second reconnect would only churn."""
        client = self._client
        if client.connect_operation_lock.locked():
            return True
        session = client.current_session
        fresh = time.monotonic() - client.opened_at < self._retry.attempt_timeout
        return session is not None and not session.closed and fresh

    # ------------------------------------------------------------------ messages

    async def _on_message(
        self, client: AsyncBaseSocketModeClient, message: dict[str, Any], raw: str | None
    ) -> None:
        if message.get("type") == "hello":
            # Slack's first message on every new connection: from now on it delivers here.
            self._hello_session = self._client.current_session
            self._hello.set()

    async def _dispatch(
        self, client: AsyncBaseSocketModeClient, request: SocketModeRequest
    ) -> None:
        started = time.time()
        response = await run_async_bolt_app(self._bolt_app, request)
        await send_async_response(client, request, response, started)

    async def close(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        await self._client.close()  # type: ignore[no-untyped-call]


async def _unless_stopped(stop: asyncio.Event, work: Awaitable[None], seconds: float) -> bool:
    """Run `work` until done (True), `stop` (False) or `seconds` pass (SocketUnreachable)."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait(
            {task, stopped}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        stopped.cancel()
    if task in done:
        task.result()
        return True
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    if stop.is_set():
        return False
    raise SocketUnreachable(f"Slack did not answer and say hello within {seconds:.0f} s")
