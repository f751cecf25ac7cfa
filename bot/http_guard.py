"""What keeps slow or hostile HTTP clients from exhausting the bridge.

aiohttp bounds a request head's size but not how long it may take to arrive, nor how many
connections may be open, nor how long a body may trickle in. Here:

- `ConnectionGuard` wraps every connection: a request head must arrive within the header timeout
  (from accept, or from the first byte after a kept-alive idle period), an idle kept-alive
  connection is closed after the idle timeout, and when the open-connection cap is reached the
  longest-waiting connection that is not in the middle of a request makes room for the new one.
- `plan_connections` keeps that cap below the open-file limit, so `accept()` never runs out of
  file descriptors; `raise_open_file_limit` first raises the soft limit to the hard one.
- `BodyGate` reads a route's body before it is verified: capped in size, within a timeout, and
  only so many at a time.
- `AcceptErrorLog` turns asyncio's per-attempt "socket.accept() out of system resource"
  tracebacks into one line per interval with a count; `MalformedRequestLog` does the same for
  aiohttp's traceback on each request it cannot parse.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import resource
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler, Middleware

log = logging.getLogger(__name__)

# File descriptors kept free for everything but inbound connections: the database, the log,
# the Slack and HighLevel connection pools, the event loop's own.
OPEN_FILES_HEADROOM = 64
MAX_ACCEPT_BACKLOG = 128
MIN_CONNECTIONS = 8
# How often a repeated warning (accept errors, closed slow connections, refused bodies) may
# be logged; the line says how many happened since.
WARNING_INTERVAL_SECONDS = 30.0
# After answering a request whose body was not read (413, 408, 429), how long to discard what
# the client still sends so it can read the answer, before closing the connection.
LINGERING_SECONDS = 2.0
# When the soft limit may be unlimited, how many descriptors the cap is planned for.
_UNLIMITED_OPEN_FILES = 1 << 20
# A deadline's timer may run this much before it (asyncio runs a timer within its clock's
# resolution): not worth a timer of its own.
_EARLY = 0.001


def raise_open_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        target = _UNLIMITED_OPEN_FILES if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return _UNLIMITED_OPEN_FILES if soft == resource.RLIM_INFINITY else soft


@dataclass(frozen=True)
class ConnectionPlan:
    """How many connections to hold open and how many to accept in one go."""

    open_file_limit: int
    max_connections: int
    backlog: int


def plan_connections(open_file_limit: int, wanted: int) -> ConnectionPlan:
    """The cap on open connections for `open_file_limit` descriptors: `wanted`, or less.

    asyncio accepts up to `backlog` connections before any of them reaches the guard, so the cap
    leaves that many descriptors free, plus headroom for the rest of the process.
    """
    backlog = max(8, min(MAX_ACCEPT_BACKLOG, open_file_limit // 8))
    headroom = max(OPEN_FILES_HEADROOM, open_file_limit // 8)
    room = open_file_limit - backlog - headroom
    return ConnectionPlan(open_file_limit, max(MIN_CONNECTIONS, min(wanted, room)), backlog)


class ThrottledWarning:
    """A warning logged at once, then at most once per `interval` with how often it recurred."""

    def __init__(self, message: str, *, interval: float = WARNING_INTERVAL_SECONDS) -> None:
        self._message = message
        self._interval = interval
        self._since_last = 0
        self._detail = ""
        self._flush: asyncio.TimerHandle | None = None

    def note(self, detail: str = "") -> None:
        self._detail = detail
        if self._flush is not None:
            self._since_last += 1
            return
        log.warning("%s%s", self._message, self._details())
        self._schedule()

    def close(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        if self._since_last:
            self._log_more()

    def _schedule(self) -> None:
        self._flush = asyncio.get_running_loop().call_later(self._interval, self._on_interval)

    def _on_interval(self) -> None:
        self._flush = None
        if self._since_last:
            self._log_more()
            self._schedule()

    def _details(self) -> str:
        return f" ({self._detail})" if self._detail else ""

    def _log_more(self) -> None:
        log.warning(
            "%s%s: %d more since the last such line",
            self._message,
            self._details(),
            self._since_last,
        )
        self._since_last = 0


class AcceptErrorLog:
    """An event-loop exception handler: accept errors are counted, the rest passed on.

    On EMFILE/ENFILE asyncio's accept loop calls the handler once per pending connection, each
    with a traceback; here they become one line per interval.
    """

    def __init__(
        self, previous: Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object] | None
    ) -> None:
        self.previous = previous
        self._warning = ThrottledWarning("cannot accept connections")

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if str(context.get("message", "")).startswith("socket.accept() out of system resource"):
            exc = context.get("exception")
            reason = getattr(exc, "strerror", None) or "out of system resource"
            self._warning.note(str(reason))
            return
        if self.previous is not None:
            self.previous(loop, context)
        else:
            loop.default_exception_handler(context)

    def close(self) -> None:
        self._warning.close()


class MalformedRequestLog(logging.Filter):
    """For aiohttp's server logger: a request aiohttp cannot parse (bad request line, header or
    chunk) is logged at ERROR with a traceback, and anyone can send those. Here they become one
    WARNING line per interval; an error in the bridge's own handlers still logs in full."""

    def __init__(self) -> None:
        super().__init__()
        self._warning = ThrottledWarning("refused malformed HTTP requests")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], HttpProcessingError):
            self._warning.note(type(record.exc_info[1]).__name__)
            return False
        return True

    def close(self) -> None:
        self._warning.close()


class _Phase(enum.Enum):
    HEAD = "waiting for a request head"
    BUSY = "handling a request"
    IDLE = "idle between requests"


class GuardedConnection(asyncio.Protocol):
    """Stands between the transport and aiohttp's protocol, with a deadline on each phase."""

    def __init__(self, guard: ConnectionGuard, inner: web.RequestHandler) -> None:
        self._guard = guard
        self.inner = inner
        self.phase = _Phase.HEAD
        self._head_started = False  # a byte of the awaited request head has arrived
        # When the phase's time is up (None: no limit while busy), and the timer that looks
        # then. A phase change only moves `_due`; the timer is moved only to come sooner, so
        # a request on a kept-alive connection costs no timer of its own.
        self._due: float | None = None
        self._deadline: asyncio.TimerHandle | None = None

    # asyncio.Protocol, passed on to aiohttp

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)
        self._arm(self._guard.header_timeout)
        self._guard._opened(self)

    def data_received(self, data: bytes) -> None:
        if self.phase is _Phase.IDLE:
            self._enter(_Phase.HEAD, self._guard.header_timeout)
        self._head_started = True
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        self.inner.eof_received()
        return None  # as aiohttp's protocol does: the transport closes itself

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._guard._closed(self)
        self.inner.connection_lost(exc)

    # phases

    def request_started(self) -> None:
        self._enter(_Phase.BUSY, None)

    def request_finished(self) -> None:
        self._enter(_Phase.IDLE, self._guard.idle_timeout)

    def close(self, warning: ThrottledWarning | None) -> None:
        if warning is not None:
            warning.note()
        self._disarm()
        self.inner.force_close()

    def _enter(self, phase: _Phase, timeout: float | None) -> None:
        self.phase = phase
        self._head_started = False
        self._guard._moved(self)
        if timeout is None:
            self._due = None  # a timer still set finds nothing due and lapses
        else:
            self._arm(timeout)

    def _arm(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + timeout
        self._due = due
        if self._deadline is None or self._deadline.when() > due:
            self._disarm_timer()
            self._deadline = loop.call_at(due, self._expired)

    def _disarm(self) -> None:
        self._due = None
        self._disarm_timer()

    def _disarm_timer(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        due = self._due
        if due is None:
            return  # busy: no limit
        loop = asyncio.get_running_loop()
        if due > loop.time() + _EARLY:
            self._deadline = loop.call_at(due, self._expired)  # moved on since it was set
            return
        self._due = None
        # A connection that never started its request is merely idle: closed without a word.
        slow = self.phase is _Phase.HEAD and self._head_started
        self.close(self._guard.slow_heads if slow else None)


class ConnectionGuard:
    """Deadlines for request heads and idle connections, and a cap on open connections."""

    def __init__(self, *, max_connections: int, header_timeout: float, idle_timeout: float) -> None:
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        # Oldest phase change first: the first non-busy entry has waited longest.
        self._open: dict[GuardedConnection, None] = {}
        self._by_handler: dict[web.RequestHandler, GuardedConnection] = {}
        self.slow_heads = ThrottledWarning(
            f"closed connections whose request head did not arrive within {header_timeout:g} s"
        )
        self.evicted = ThrottledWarning(
            f"{max_connections} connections open: closed the one waiting longest for a request"
        )

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def protocol_factory(self, server: web.Server) -> Callable[[], asyncio.Protocol]:
        """Wraps aiohttp's protocol factory (the `web.Server`) for `loop.create_server`."""

        def make() -> asyncio.Protocol:
            return GuardedConnection(self, server())

        return make

    @property
    def middleware(self) -> Middleware:
        """Marks a connection busy while the application handles its request."""

        @web.middleware
        async def mark_busy(request: web.Request, handler: Handler) -> web.StreamResponse:
            connection = self._by_handler.get(request.protocol)
            if connection is None:
                return await handler(request)
            connection.request_started()
            try:
                return await handler(request)
            finally:
                connection.request_finished()

        return mark_busy

    def close(self) -> None:
        for warning in (self.slow_heads, self.evicted):
            warning.close()

    def _opened(self, connection: GuardedConnection) -> None:
        self._open[connection] = None
        self._by_handler[connection.inner] = connection
        if len(self._open) <= self.max_connections:
            return
        victim = next(
            (c for c in self._open if c.phase is _Phase.HEAD and c is not connection),
            None,
        ) or next(
            (c for c in self._open if c.phase is _Phase.IDLE and c is not connection),
            connection,
        )
        victim.close(self.evicted)

    def _moved(self, connection: GuardedConnection) -> None:
        if connection in self._open:
            del self._open[connection]
            self._open[connection] = None

    def _closed(self, connection: GuardedConnection) -> None:
        self._open.pop(connection, None)
        self._by_handler.pop(connection.inner, None)


class GuardedSite(web.BaseSite):
    """A TCP site whose connections go through a `ConnectionGuard`."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        guard: ConnectionGuard,
        backlog: int,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._host = host
        self._port = port
        self._guard = guard

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        if server is None:
            raise RuntimeError("call runner.setup() before starting a site")
        self._server = await asyncio.get_running_loop().create_server(
            self._guard.protocol_factory(server), self._host, self._port, backlog=self._backlog
        )


def json_error(
    kind: type[web.HTTPException],
    error: str,
    headers: dict[str, str] | None = None,
    **details: Any,
) -> web.HTTPException:
    """An aiohttp HTTP error whose body is `{"error": error}`, as the routes answer."""
    return kind(
        text=json.dumps({"error": error}),
        content_type="application/json",
        headers=headers,
        **details,
    )


class BodyGate:
    """Reads one route's request bodies before they are verified.

    A declared length over `max_bytes` is refused (413) without reading; a body still arriving
    after `timeout` is refused (408); with `slots` bodies already being read, a further request
    gets `when_full()` at once.
    """

    def __init__(
        self,
        *,
        max_bytes: int,
        slots: int,
        timeout: float,
        when_full: Callable[[], web.HTTPException],
    ) -> None:
        self.max_bytes = max_bytes
        self.slots = slots
        self.timeout = timeout
        self._when_full = when_full
        self.reading = 0
        self._too_large = ThrottledWarning(f"refused request bodies over {max_bytes} bytes")
        self._too_slow = ThrottledWarning(
            f"refused request bodies not received within {timeout:g} s"
        )
        self._full = ThrottledWarning(f"refused requests: {slots} bodies already being read")
        self._broken = ThrottledWarning("request bodies cut off or malformed")

    async def read(self, request: web.Request) -> web.Request:
        """The request with its body read (`await request.read()` returns it), or raises."""
        declared = request.content_length
        if declared is not None and declared > self.max_bytes:
            self._too_large.note()
            raise json_error(
                web.HTTPRequestEntityTooLarge, "body too large", max_size=self.max_bytes
            )
        if self.reading >= self.slots:
            self._full.note()
            raise self._when_full()
        if (
            declared is not None
            and request.content.is_eof()
            and hdrs.CONTENT_ENCODING not in request.headers
        ):
            # All of it came with the head (a webhook's few kB do): nothing to wait for, and
            # no clone, since a body read as sent is no longer than it declared.
            await request.read()
            return request
        self.reading += 1
        try:
            # The clone enforces this route's cap on a body sent without a declared length.
            bounded = request.clone(client_max_size=self.max_bytes)
            async with asyncio.timeout(self.timeout):
                await bounded.read()
        except TimeoutError:
            self._too_slow.note()
            raise json_error(web.HTTPRequestTimeout, "body not received in time") from None
        except web.HTTPRequestEntityTooLarge:
            self._too_large.note()
            raise json_error(
                web.HTTPRequestEntityTooLarge, "body too large", max_size=self.max_bytes
            ) from None
        except (ConnectionError, web.RequestPayloadError):
            # The client went away mid-body, or its chunked encoding is broken: answered like
            # any bad request (aiohttp would log a 500 with a traceback).
            self._broken.note()
            raise json_error(web.HTTPBadRequest, "body not received") from None
        finally:
            self.reading -= 1
        return bounded

    def close(self) -> None:
        for warning in (self._too_large, self._too_slow, self._full, self._broken):
            warning.close()
