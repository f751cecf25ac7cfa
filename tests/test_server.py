"""`ghl-bridge serve` on a free port: health, signed Slack requests, webhooks stub, shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bot.sandbox.slack import SlackDriver, SlackSimulator
from bot.server import serve
from bot.settings import Settings

SIGNING_SECRET = "test-signing-secret"


@dataclass
class Running:
    url: str
    settings: Settings
    slack: SlackSimulator
    driver: SlackDriver
    stop: asyncio.Event
    task: asyncio.Task[None]


def make_settings(tmp_path: Path, slack: SlackSimulator, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "slack_bot_token": slack.bot_token,
        "slack_signing_secret": SIGNING_SECRET,
        "slack_api_url": slack.api_url,
        "ghl_api_token": "pit-test",
        "ghl_location_id": "loc123",
        # Nothing here calls HighLevel; a closed port proves it.
        "ghl_api_url": "http://127.0.0.1:9",
        "database_url": f"sqlite:///{tmp_path / 'bridge.sqlite3'}",
        "host": "127.0.0.1",
        "port": 0,
    }
    return Settings(_env_file=None, **(values | overrides))  # type: ignore[arg-type]


@pytest.fixture
async def slack() -> AsyncIterator[SlackSimulator]:
    sim = SlackSimulator()
    sim.add_channel("C1", "general")
    sim.add_user("U1", "ada")
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
async def running(tmp_path: Path, slack: SlackSimulator) -> AsyncIterator[Running]:
    settings = make_settings(tmp_path, slack)
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(settings, stop=stop, on_ready=ready.set_result))
    url = await asyncio.wait_for(ready, 10)
    driver = SlackDriver(f"{url}/slack/events", SIGNING_SECRET, slack)
    yield Running(url, settings, slack, driver, stop, task)
    stop.set()
    await asyncio.wait_for(task, 15)


async def test_healthz_is_ok(running: Running) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{running.url}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_signed_help_command_answers_with_usage(running: Running) -> None:
    result = await running.driver.slash_command("/sendsms", "help", user_id="U1", channel_id="C1")
    assert result.status == 200
    assert result.json is not None
    assert result.json["response_type"] == "ephemeral"
    assert "/sendemail" in result.json["text"]
    assert result.json["blocks"][0]["type"] == "section"


async def test_wrongly_signed_command_is_401_and_does_nothing(running: Running) -> None:
    forged = SlackDriver(f"{running.url}/slack/events", "not-the-secret", running.slack)
    result = await forged.slash_command("/sendsms", "help", user_id="U1", channel_id="C1")
    assert result.status == 401
    assert "/sendemail" not in result.text


MALFORMED_SLACK_BODIES = [
    ("application/x-www-form-urlencoded", "payload=%7Bbad"),
    ("application/x-www-form-urlencoded", "payload=%5B1%2C2%5D"),  # JSON, but not an object
    ("application/json", "this is not json"),
    ("application/json", '{"type": '),
]


async def test_malformed_slack_requests_get_4xx_and_one_warning_line(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """Unsigned: 401. Signed but unparseable: 400. Either way one WARNING line, no traceback."""
    caplog.set_level(logging.DEBUG)
    url = f"{running.url}/slack/events"
    unsigned_headers = {
        "unsigned": {},
        "timestamp not a number": {
            "x-slack-request-timestamp": "soon",
            "x-slack-signature": "v0=" + "0" * 64,
        },
    }

    def assert_one_warning(name: str, body: str) -> None:
        loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert [(r.levelname, r.exc_info) for r in loud] == [("WARNING", None)], (
            name,
            body,
            [r.getMessage() for r in loud],
        )
        assert body not in loud[0].getMessage()
        caplog.clear()

    async with httpx.AsyncClient() as http:
        for content_type, body in MALFORMED_SLACK_BODIES:
            for name, headers in unsigned_headers.items():
                caplog.clear()
                response = await http.post(
                    url, content=body, headers={"content-type": content_type, **headers}
                )
                assert response.status_code == 401, (name, body, response.status_code)
                assert_one_warning(name, body)
            signed = await running.driver.post_raw(body, content_type=content_type)
            assert signed.status == 400, (body, signed.status, signed.text)
            assert_one_warning("signed", body)
    # The bridge still answers a well-formed signed command after all that.
    help_result = await running.driver.slash_command(
        "/sendsms", "help", user_id="U1", channel_id="C1"
    )
    assert help_result.status == 200


async def test_malformed_http_requests_get_400_and_no_traceback(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """aiohttp logs each request it cannot parse at ERROR with a traceback: here one WARNING
    line stands for them all."""
    caplog.set_level(logging.DEBUG)
    port = int(running.url.rsplit(":", 1)[1])
    malformed = [
        b"POST /ghl/webhooks HTTP/1.1\r\nHost: bridge\r\nNo colon here\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: bridge\r\nX-Long: " + b"a" * 10_000 + b"\r\n\r\n",
        b"POST /slack/events HTTP/1.1\r\nHost: bridge\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ]
    for raw in malformed:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw)
        answer = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
        assert answer.split()[1] == b"400", (raw[:40], answer)
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.levelname, r.exc_info) for r in loud] == [("WARNING", None)], [
        r.getMessage() for r in loud
    ]


async def test_unsigned_webhook_is_401(running: Running) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{running.url}/ghl/webhooks", json={"type": "InboundMessage"})
    assert response.status_code == 401
    assert response.json() == {"error": "missing_signature"}


async def test_stop_closes_the_server_and_the_database(running: Running) -> None:
    running.stop.set()
    await asyncio.wait_for(running.task, 15)
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"{running.url}/healthz")


async def test_port_in_use_is_a_clear_error(tmp_path: Path, running: Running) -> None:
    port = int(running.url.rsplit(":", 1)[1])
    from bot.server import ServeError

    with pytest.raises(ServeError, match=r"cannot listen on 127\.0\.0\.1"):
        await serve(make_settings(tmp_path / "other", running.slack, port=port))


def test_real_process_serves_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    """The console entry point, as a person runs it: health answers, SIGTERM exits 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "GHL_"))}
    env |= {
        "SLACK_BOT_TOKEN": "xoxb-process-test",
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": "http://127.0.0.1:9/api/",
        "GHL_API_TOKEN": "pit-test",
        "GHL_LOCATION_ID": "loc123",
        "GHL_API_URL": "http://127.0.0.1:9",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bridge.sqlite3'}",
        "HOST": "127.0.0.1",
        "PORT": "0",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve"],
        env=env,
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        url = None
        for line in process.stderr:
            match = re.search(r"serving on (http://\S+)", line)
            if match:
                url = match.group(1)
                break
        assert url, "the server never said where it listens"
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        assert (tmp_path / "bridge.sqlite3").exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
