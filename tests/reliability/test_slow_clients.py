"""Slow and hostile HTTP clients: bodies that never finish, request heads that trickle in, more
connections than file descriptors. The bridge refuses them cheaply and keeps answering.

Timeouts are shortened through settings so each test takes seconds.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar, cast
from urllib.parse import urlsplit

import httpx
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bot.http_guard import (
    LINGERING_SECONDS,
    ConnectionGuard,
    GuardedConnection,
    ThrottledWarning,
    _Phase,
)
from bot.sandbox.highlevel import ADA_LOVELACE_ID, HighLevelSimulator
from bot.sandbox.stack import SandboxStack
from storage import SqliteStore
from tests.reliability._helpers import eventually, inbound_payload, signed_body

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]
T = TypeVar("T")

BODY_TIMEOUT = 1.0
HEADER_TIMEOUT = 1.0
IDLE_TIMEOUT = 0.5
# A deadline is kept within this much on a loaded machine.
LATE = 3.0


def _head(path: str, **headers: str | int) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: bridge"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _connect(url: str) -> Stream:
    parts = urlsplit(url)
    return await asyncio.open_connection(parts.hostname, parts.port)


async def _read_head(reader: asyncio.StreamReader, within: float) -> tuple[int, dict[str, str]]:
    """The status and headers of the server's answer."""
    async with asyncio.timeout(within):
        status = int((await reader.readline()).split()[1])
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
    return status, headers


async def _closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    """True once the server closes the connection (whatever it sent first), False if it has
    not within `within` seconds."""
    try:
        async with asyncio.timeout(within):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


async def _until(check: Callable[[], Awaitable[T | None]], within: float = 10.0) -> T:
    """Await `check` until it returns something other than None (`eventually`, for coroutines)."""
    deadline = time.monotonic() + within
    while (value := await check()) is None:
        assert time.monotonic() < deadline, f"condition not met within {within} s"
        await asyncio.sleep(0.05)
    return value


async def _inbound_count(stack: SandboxStack) -> int:
    async with SqliteStore(stack.database_path) as store:
        return await store.count_inbound()


# ---------------------------------------------------------------- bodies (in process)


async def test_a_body_over_the_routes_cap_is_413_without_being_read(tmp_path: Path) -> None:
    overrides = {"http_body_timeout_seconds": BODY_TIMEOUT}
    async with SandboxStack(tmp_path / "b.sqlite3", settings_overrides=overrides) as stack:
        # Declared lengths just over each route's cap, and no body at all: had the bridge waited
        # to read it, the answer would be 408 after the body timeout, not 413.
        for path, declared in (("/ghl/webhooks", 256 * 1024 + 1), ("/slack/events", 2**20 + 1)):
            reader, writer = await _connect(stack.bridge_url)
            writer.write(_head(path, content_type="application/json", content_length=declared))
            status, _ = await _read_head(reader, within=BODY_TIMEOUT + LATE)
            assert status == 413, (path, status)
            assert await _closed_by_server(reader, within=LINGERING_SECONDS + LATE), path
            writer.close()

        # Without a declared length (chunked), reading stops at the webhook cap.
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(300):
                yield b"x" * 1024

        async with httpx.AsyncClient(timeout=10) as http:
            chunked = await http.post(
                f"{stack.bridge_url}/ghl/webhooks",
                content=chunks(),
                headers={"content-type": "application/json"},
            )
            assert chunked.status_code == 413
            # Under the cap, the same route reads the body and judges its signature.
            small = await http.post(f"{stack.bridge_url}/ghl/webhooks", content=b"{}")
            assert small.status_code == 401
        assert await _inbound_count(stack) == 0


async def test_a_compressed_webhook_over_the_cap_once_inflated_is_413(tmp_path: Path) -> None:
    # A few hundred bytes on the wire, declared and arrived whole, but 300 kB once aiohttp
    # inflates it: over the webhook route's 256 kB cap though under the app's 1 MiB.
    inflated = b'{"pad":"' + b"x" * (300 * 1024) + b'"}'
    async with SandboxStack(tmp_path / "b.sqlite3") as stack, httpx.AsyncClient(timeout=10) as http:
        url = f"{stack.bridge_url}/ghl/webhooks"
        headers = {"content-type": "application/json", "content-encoding": "gzip"}
        over = await http.post(url, content=gzip.compress(inflated), headers=headers)
        assert over.status_code == 413
        # Under the cap once inflated, the same route reads it and judges its signature.
        under = await http.post(url, content=gzip.compress(b'{"pad":"x"}'), headers=headers)
        assert under.status_code == 401
        assert await _inbound_count(stack) == 0


async def test_a_body_that_stalls_is_answered_408_and_the_connection_closed(
    tmp_path: Path,
) -> None:
    overrides = {"http_body_timeout_seconds": BODY_TIMEOUT}
    async with SandboxStack(tmp_path / "b.sqlite3", settings_overrides=overrides) as stack:
        for path in ("/ghl/webhooks", "/slack/events"):
            reader, writer = await _connect(stack.bridge_url)
            started = time.monotonic()
            writer.write(_head(path, content_type="application/json", content_length=1000))
            writer.write(b'{"type": "Inbound')  # ...and nothing more
            status, _ = await _read_head(reader, within=BODY_TIMEOUT + LATE)
            assert status == 408, (path, status)
            assert time.monotonic() - started >= BODY_TIMEOUT * 0.9
            assert await _closed_by_server(reader, within=LINGERING_SECONDS + LATE), path
            writer.close()


async def test_with_every_body_slot_taken_more_requests_are_refused_at_once(
    tmp_path: Path,
) -> None:
    """HTTP_MAX_PENDING_BODIES bodies are read at a time per route; the next request is refused
    before anything is read (a webhook with 429 and Retry-After, as HighLevel retries only 429;
    Slack with 503), and once the slow ones are gone a signed webhook is stored."""
    slots = 4
    key = Ed25519PrivateKey.generate()
    highlevel = HighLevelSimulator(signing_key=key)
    overrides = {"http_body_timeout_seconds": 30.0, "http_max_pending_bodies": slots}
    async with SandboxStack(
        tmp_path / "b.sqlite3", highlevel=highlevel, settings_overrides=overrides, webhooks=False
    ) as stack:
        webhook_url = f"{stack.bridge_url}/ghl/webhooks"

        def signed(text: str) -> tuple[bytes, dict[str, str]]:
            webhook = signed_body(
                key,
                inbound_payload(
                    location_id=highlevel.location_id,
                    contact_id=ADA_LOVELACE_ID,
                    conversation_id="conversation-slots",
                    text=text,
                ),
            )
            return webhook.body, webhook.headers

        slow: list[Stream] = []
        for path in ("/ghl/webhooks", "/slack/events"):
            for _ in range(slots):
                reader, writer = await _connect(stack.bridge_url)
                writer.write(_head(path, content_type="application/json", content_length=5000))
                writer.write(b"{")
                slow.append((reader, writer))

        async with httpx.AsyncClient(timeout=10) as http:

            async def refused(url: str, status: int) -> httpx.Response | None:
                # Unsigned, so 401 until every slot is taken.
                response = await http.post(url, content=b"{}")
                return response if response.status_code == status else None

            busy = await _until(lambda: refused(webhook_url, 429))
            assert busy.headers["retry-after"].isdigit()
            await _until(lambda: refused(f"{stack.bridge_url}/slack/events", 503))
            started = time.monotonic()
            body, headers = signed("sent while the slots are taken")
            during = await http.post(webhook_url, content=body, headers=headers)
            assert during.status_code == 429  # HighLevel will send it again
            assert time.monotonic() - started < LATE  # refused, not queued behind the slow ones

            for _, writer in slow:
                writer.close()
            body, headers = signed("sent after the slow ones ended")

            async def stored() -> httpx.Response | None:
                response = await http.post(webhook_url, content=body, headers=headers)
                return response if response.status_code != 429 else None

            assert (await _until(stored)).status_code == 200
        assert await _inbound_count(stack) == 1


# ---------------------------------------------------------------- connections (in process)


class _Handler:
    """What GuardedConnection passes the transport's events to: here, only whether it was
    closed."""

    def __init__(self) -> None:
        self.closed = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        pass

    def data_received(self, data: bytes) -> None:
        pass

    def force_close(self) -> None:
        self.closed.set()


async def test_a_deadline_moved_later_holds_though_the_earlier_ones_timer_runs_first() -> None:
    # An answered request leaves the connection idle (0.2 s), and a new head starts at once
    # (0.6 s from then): the idle deadline's timer runs first and must not close it.
    guard = ConnectionGuard(max_connections=8, header_timeout=0.6, idle_timeout=0.2)
    handler = _Handler()
    connection = GuardedConnection(guard, cast(web.RequestHandler, handler))
    loop = asyncio.get_running_loop()
    try:
        connection.connection_made(cast(asyncio.Transport, None))
        connection.request_started()
        connection.request_finished()
        connection.data_received(b"POST /ghl/webhooks HTTP/1.1\r\n")
        head_started = loop.time()
        await asyncio.wait_for(handler.closed.wait(), LATE + 0.6)
        assert loop.time() - head_started >= 0.6 - 0.001
        assert connection.phase is _Phase.HEAD
    finally:
        guard.close()


async def test_a_deadline_moved_sooner_moves_its_timer() -> None:
    # Opened (a head is awaited for 30 s), a request answered at once: idle for 0.2 s, closed
    # then, not when the head's deadline would have come.
    guard = ConnectionGuard(max_connections=8, header_timeout=30.0, idle_timeout=0.2)
    handler = _Handler()
    connection = GuardedConnection(guard, cast(web.RequestHandler, handler))
    try:
        connection.connection_made(cast(asyncio.Transport, None))
        connection.request_started()
        connection.request_finished()
        await asyncio.wait_for(handler.closed.wait(), LATE + 0.2)
        assert connection.phase is _Phase.IDLE
    finally:
        guard.close()


async def test_idle_and_silent_connections_are_closed_and_the_cap_makes_room(
    tmp_path: Path,
) -> None:
    overrides = {
        "http_header_timeout_seconds": HEADER_TIMEOUT,
        "http_idle_timeout_seconds": IDLE_TIMEOUT,
    }
    async with SandboxStack(tmp_path / "b.sqlite3", settings_overrides=overrides) as stack:
        # Kept alive after an answer, then idle: closed after the idle timeout.
        reader, writer = await _connect(stack.bridge_url)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: bridge\r\n\r\n")
        _, headers = await _read_head(reader, within=LATE)  # 200, or 503 while still starting
        await reader.readexactly(int(headers["content-length"]))
        assert await _closed_by_server(reader, within=IDLE_TIMEOUT + LATE)
        writer.close()
        # Half a request head, then nothing: closed after the header timeout.
        reader, writer = await _connect(stack.bridge_url)
        writer.write(b"POST /ghl/webhooks HTTP/1.1\r\nHost: bridge\r\n")
        started = time.monotonic()
        assert await _closed_by_server(reader, within=HEADER_TIMEOUT + LATE)
        assert time.monotonic() - started >= HEADER_TIMEOUT * 0.9
        writer.close()

    # The open-connection cap: silent connections fill it, and each new one closes the
    # longest-waiting of them, so /healthz still gets in.
    cap = 8
    overrides = {"http_header_timeout_seconds": 60.0, "http_max_connections": cap}
    async with SandboxStack(tmp_path / "c.sqlite3", settings_overrides=overrides) as stack:
        silent = [await _connect(stack.bridge_url) for _ in range(cap)]
        async with httpx.AsyncClient(timeout=LATE) as http:
            for _ in range(3):
                answer = await http.get(f"{stack.bridge_url}/healthz")
                assert answer.status_code in (200, 503)  # answered: it got a connection
        assert await _closed_by_server(silent[0][0], within=LATE)
        for _, writer in silent:
            writer.close()


# ---------------------------------------------------------------- the real process


ATTACKERS = 300
OPEN_FILES = 256
PROBES = 10
# Only a bound on a broken run: the probes end as soon as the attack has turned over.
ATTACK_DEADLINE = 60.0
TRICKLE_SECONDS = 0.4


@contextmanager
def _bridge_process(tmp_path: Path, **env_overrides: str) -> Iterator[tuple[str, Path]]:
    """`ghl-bridge serve` with at most OPEN_FILES file descriptors (soft and hard)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "GHL_", "HTTP_"))}
    env |= {
        "SLACK_BOT_TOKEN": "xoxb-slow-clients",
        "SLACK_SIGNING_SECRET": "slow-clients-secret",
        "SLACK_API_URL": "http://127.0.0.1:9/api/",
        "GHL_API_TOKEN": "pit-test",
        "GHL_LOCATION_ID": "loc123",
        "GHL_API_URL": "http://127.0.0.1:9",
        "GHL_POLL_SECONDS": "0",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bridge.sqlite3'}",
        "HOST": "127.0.0.1",
        "PORT": "0",
    } | env_overrides
    log_path = tmp_path / "stderr.log"

    def low_file_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, OPEN_FILES))

    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve"],
            env=env,
            cwd=tmp_path,
            stderr=log_file,
            preexec_fn=low_file_limit,
        )
    try:
        deadline = time.monotonic() + 30
        url = None
        while url is None and time.monotonic() < deadline and process.poll() is None:
            match = re.search(r"serving on (http://\S+)", log_path.read_text())
            url = match.group(1) if match else None
            if url is None:
                time.sleep(0.05)  # polling the log for the start-up line
        assert url, f"the bridge did not start:\n{log_path.read_text()[-2000:]}"
        yield url, log_path
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# In the serial suite: with another test process loading both cores, one probe of 200+ was once
# closed unanswered (evicted at the connection cap before its request was read).
@pytest.mark.slow
async def test_trickling_heads_past_the_open_file_limit_leave_healthz_answering(
    tmp_path: Path,
) -> None:
    """300 sockets trickling one header line at a time against a bridge limited to 256 file
    descriptors, each reconnecting when closed: /healthz answers 200 all along, every slow
    socket is closed within the header timeout, and the log stays a few lines long."""
    env = {"HTTP_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT), "LOG_LEVEL": "INFO"}
    with _bridge_process(tmp_path, **env) as (url, log_path):
        parts = urlsplit(url)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        connected: list[float] = []
        closed_after: list[float] = []

        async def trickle() -> None:
            while not stop.is_set():
                try:
                    async with asyncio.timeout(2.0):
                        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
                except (OSError, TimeoutError):
                    continue
                opened = loop.time()
                connected.append(opened)
                try:
                    writer.write(b"POST /ghl/webhooks HTTP/1.1\r\nHost: bridge\r\n")
                    while not stop.is_set():
                        try:
                            async with asyncio.timeout(TRICKLE_SECONDS):
                                data = await reader.read(1024)
                        except TimeoutError:
                            writer.write(b"X-Trickle: 1\r\n")
                            continue
                        if not data:
                            closed_after.append(loop.time() - opened)
                            break
                except ConnectionError:
                    closed_after.append(loop.time() - opened)
                finally:
                    writer.close()

        async with httpx.AsyncClient(timeout=5.0) as http:

            async def healthy() -> bool | None:
                return (await http.get(f"{url}/healthz")).status_code == 200 or None

            await _until(healthy, within=20)  # healthy before the attack starts
        attackers = [asyncio.create_task(trickle()) for _ in range(ATTACKERS)]
        answers: list[int | str] = []
        try:
            await eventually(lambda: len(connected) >= ATTACKERS, within=20)
            async with httpx.AsyncClient(
                timeout=5.0, limits=httpx.Limits(max_keepalive_connections=0)
            ) as http:
                # Probes until both have happened, whatever the machine's speed: PROBES answers,
                # and every attacker's socket closed by the bridge at least once on average (the
                # attack has turned over, so the probes met its steady state, not its start).
                deadline = loop.time() + ATTACK_DEADLINE
                while len(answers) < PROBES or len(closed_after) < ATTACKERS:
                    assert loop.time() < deadline, (len(answers), len(closed_after))
                    try:
                        answers.append((await http.get(f"{url}/healthz")).status_code)
                    except httpx.HTTPError as exc:
                        answers.append(type(exc).__name__)
                    await asyncio.sleep(0.2)  # spaced out over the attack
        finally:
            stop.set()
            await asyncio.gather(*attackers)
        log = log_path.read_text()

    assert set(answers) == {200}, answers
    assert len(closed_after) >= ATTACKERS, (len(closed_after), len(connected))
    # Timed from the client's connect, which includes waiting in the kernel's accept queue
    # (seconds, when it overflows and the handshake is retried); the bridge's own deadline
    # shows in the typical case.
    assert statistics.median(closed_after) < HEADER_TIMEOUT + 1.0, statistics.median(closed_after)
    assert max(closed_after) < HEADER_TIMEOUT + 10.0, max(closed_after)
    assert f"open-file limit {OPEN_FILES}" in log
    assert "Traceback" not in log, log[-3000:]
    assert len(re.findall(r"accept", log)) <= 3, log[-3000:]
    assert len(log) < 20_000, (len(log), log[-3000:])
    print(
        f"\n{ATTACKERS} trickling sockets, {OPEN_FILES} file descriptors: {len(closed_after)} "
        f"connections closed by the bridge, after {statistics.median(closed_after):.1f} s "
        f"(median), {max(closed_after):.1f} s at most; {len(answers)} /healthz all 200; "
        f"log {len(log)} bytes"
    )


# ---------------------------------------------------------------- accept errors


REPO_ROOT = Path(__file__).resolve().parents[2]
ACCEPT_ERROR_SCRIPT = textwrap.dedent(
    """
    import asyncio, logging, resource, sys
    from bot.http_guard import AcceptErrorLog

    async def main() -> None:
        loop = asyncio.get_running_loop()
        if sys.argv[1] == "throttled":
            loop.set_exception_handler(AcceptErrorLog(loop.get_exception_handler()))
        held = []

        async def hold(reader, writer):
            held.append(writer)
            await asyncio.Event().wait()

        server = await asyncio.start_server(hold, "127.0.0.1", 0)
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Event().wait()

    resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48))
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    asyncio.run(main())
    """
)


async def _accept_error_log(tmp_path: Path, mode: str) -> str:
    """Run ACCEPT_ERROR_SCRIPT, connect more clients than it has file descriptors, and return
    its log once an accept error was logged."""
    log_path = tmp_path / f"{mode}.log"
    with log_path.open("w") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            ACCEPT_ERROR_SCRIPT,
            mode,
            stdout=asyncio.subprocess.PIPE,
            stderr=log_file,
            cwd=REPO_ROOT,
        )
    clients: list[Stream] = []
    try:
        assert process.stdout is not None
        port = int(await asyncio.wait_for(process.stdout.readline(), 20))
        for _ in range(80):
            async with asyncio.timeout(5):
                clients.append(await asyncio.open_connection("127.0.0.1", port))
        await eventually(lambda: "Too many open files" in log_path.read_text(), within=10)
    finally:
        for _, writer in clients:
            writer.close()
        process.kill()
        await process.wait()
    return log_path.read_text()


async def test_accept_errors_are_logged_once_per_interval_with_a_count(tmp_path: Path) -> None:
    """A plain asyncio server out of file descriptors: asyncio logs a traceback for each failed
    accept; with the exception handler `serve` installs, one line stands for the burst."""
    plain = await _accept_error_log(tmp_path, "plain")
    assert plain.count("Traceback") > 1  # what the handler is for
    throttled = await _accept_error_log(tmp_path, "throttled")
    assert throttled.count("cannot accept connections") == 1, throttled[-3000:]
    assert "Traceback" not in throttled, throttled[-3000:]


async def test_a_repeated_warning_is_one_line_per_interval_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.http_guard")
    warning = ThrottledWarning("cannot accept connections", interval=1.0)

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "bot.http_guard"]

    for _ in range(5):
        warning.note("Too many open files")
    assert lines() == ["cannot accept connections (Too many open files)"]
    await eventually(lambda: len(lines()) == 2, within=1.0 + LATE)
    assert lines()[1].endswith("(Too many open files): 4 more since the last such line")
    warning.note("Too many open files")  # within the next interval: counted, not logged
    assert len(lines()) == 2
    warning.close()  # what is left is said on the way out
    assert lines()[2].endswith(": 1 more since the last such line")
