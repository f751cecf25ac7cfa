"""`ghl-bridge serve` in Socket Mode (issue 11, item 10), as a real process against the Slack
simulator's `apps.connections.open` and websocket: a refused token stops it in one line, an
unreachable Slack after a few attempts, a signal at any moment, and `/healthz` says whether the
socket is up."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.sandbox.slack import SlackSimulator
from bot.socket_mode import WATCH_INTERVAL_SECONDS, RetryPolicy
from tests._serve_process import ServeProcess, health_answer, serve_env
from tests.e2e.conftest import eventually

CANNOT_CONNECT = re.compile(r"Socket Mode: cannot connect to Slack \(.*\); attempt (\d) of (\d)")


@pytest.fixture
async def slack() -> AsyncIterator[SlackSimulator]:
    simulator = SlackSimulator()
    simulator.add_channel("C0SALES", "sales")
    simulator.add_user("U0AGENT", "agent", "Avery Agent")
    async with simulator:
        yield simulator


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def socket_mode_env(
    tmp_path: Path, slack: SlackSimulator, *, app_token: str | None = None, api_url: str = ""
) -> dict[str, str]:
    return serve_env(
        tmp_path / "bridge.sqlite3",
        slack_api_url=api_url or slack.api_url,
        slack_bot_token=slack.bot_token,
        slack_app_token=app_token or slack.app_token,
    )


def error_lines(bridge: ServeProcess) -> list[str]:
    assert "Traceback" not in bridge.output, bridge.output
    return [line for line in bridge.lines if line.startswith("ghl-bridge: ")]


async def test_a_refused_app_token_stops_serve_in_one_line_with_exit_2(
    tmp_path: Path, slack: SlackSimulator
) -> None:
    wrong = "xapp-1-A0SANDBOX-1-not-the-token"
    async with ServeProcess(socket_mode_env(tmp_path, slack, app_token=wrong), tmp_path) as bridge:
        code = await bridge.exit_code(within=15)
    assert code == 2
    [line] = error_lines(bridge)
    assert line.startswith("ghl-bridge: Slack refused SLACK_APP_TOKEN (invalid_auth): ")
    assert "connections:write" in line  # what to do about it
    assert wrong not in bridge.output
    assert len(slack.calls_to("apps.connections.open")) == 1  # refused: not tried again


@pytest.mark.slow  # about 8 to 10 s: make test-slow (CI runs it)
async def test_an_unreachable_slack_is_tried_a_few_times_then_serve_exits(
    tmp_path: Path, slack: SlackSimulator
) -> None:
    # About 8 s: the default backoff (0.5 + 1 + 2 + 4 s) is what is under test.
    unreachable = f"http://127.0.0.1:{closed_port()}/api/"
    env = socket_mode_env(tmp_path, slack, api_url=unreachable)
    async with ServeProcess(env, tmp_path) as bridge:
        code = await bridge.exit_code(within=40)
    assert code == 2
    attempts = RetryPolicy().attempts
    [line] = error_lines(bridge)
    assert f"after {attempts} attempts" in line
    assert "cannot connect to 127.0.0.1" in line
    retries = [m.groups() for m in map(CANNOT_CONNECT.search, bridge.lines) if m]
    assert retries == [(str(n), str(attempts)) for n in range(2, attempts + 1)]


@pytest.mark.parametrize(
    ("while_", "signum"),
    [
        ("retrying", signal.SIGTERM),
        ("retrying", signal.SIGINT),
        ("waiting for hello", signal.SIGTERM),
    ],
)
async def test_a_signal_stops_serve_while_it_connects(
    tmp_path: Path, slack: SlackSimulator, while_: str, signum: signal.Signals
) -> None:
    if while_ == "retrying":
        env = socket_mode_env(tmp_path, slack, api_url=f"http://127.0.0.1:{closed_port()}/api/")
    else:
        slack.socket_hello = False  # connected, but Slack has not said hello
        env = socket_mode_env(tmp_path, slack)
    async with ServeProcess(env, tmp_path) as bridge:
        if while_ == "retrying":
            await bridge.line_matching(CANNOT_CONNECT)
        else:
            await eventually(lambda: slack.sockets_awaiting_hello == 1, within=20)
        bridge.send_signal(signum)
        code = await bridge.exit_code(within=10)  # promptly: it used to hang for good
    assert code == 0
    assert error_lines(bridge) == []
    assert any(line.endswith("stopped") for line in bridge.lines), bridge.output


def slash_command(slack: SlackSimulator, text: str) -> dict[str, Any]:
    """A /sendsms payload as Socket Mode delivers it (the fields of Slack's form post)."""
    return {
        "token": "unused-in-socket-mode",
        "team_id": slack.team_id,
        "team_domain": slack.team_domain,
        "channel_id": "C0SALES",
        "channel_name": "sales",
        "user_id": "U0AGENT",
        "user_name": "agent",
        "command": "/sendsms",
        "text": text,
        "api_app_id": slack.app_id,
        "is_enterprise_install": "false",
        "response_url": slack.new_response_url(channel_id="C0SALES", user_id="U0AGENT"),
        "trigger_id": slack.issue_trigger_id("U0AGENT"),
    }


async def test_healthz_is_503_until_slack_says_hello_and_again_when_the_socket_drops(
    tmp_path: Path, slack: SlackSimulator
) -> None:
    slack.socket_hello = False
    async with (
        ServeProcess(socket_mode_env(tmp_path, slack), tmp_path) as bridge,
        httpx.AsyncClient(timeout=10) as http,
    ):
        url = await bridge.url()
        await eventually(lambda: slack.sockets_awaiting_hello == 1, within=20)
        before = await health_answer(http, url, 503)
        assert before == {
            "status": "unavailable",
            "reason": "Socket Mode: not connected to Slack yet",
        }
        assert await slack.send_hello() == 1
        assert await health_answer(http, url, 200) == {"status": "ok"}

        # Slack's traffic now arrives over the socket and is answered on it.
        envelope_id = await slack.push_envelope(
            slash_command(slack, "help"),
            envelope_type="slash_commands",
            accepts_response_payload=True,
        )
        acks = await eventually(
            lambda: [a for a in slack.socket_acks if a.get("envelope_id") == envelope_id]
        )
        assert "/sendsms" in acks[0]["payload"]["text"]

        # Slack drops the connection: unhealthy until the new one has its hello.
        assert await slack.drop_sockets() == 1
        lost = await health_answer(http, url, 503)
        assert lost["reason"] == "Socket Mode: the connection to Slack was lost; reconnecting"
        await eventually(lambda: slack.sockets_awaiting_hello == 1, within=20)
        assert await slack.send_hello() == 1
        assert await health_answer(http, url, 200) == {"status": "ok"}
        bridge.send_signal(signal.SIGTERM)
        assert await bridge.exit_code() == 0
    assert "Traceback" not in bridge.output


async def test_a_reconnect_slack_asks_for_is_made_once_and_stays_healthy(
    tmp_path: Path, slack: SlackSimulator
) -> None:
    async with (
        ServeProcess(socket_mode_env(tmp_path, slack), tmp_path) as bridge,
        httpx.AsyncClient(timeout=10) as http,
    ):
        url = await bridge.url()
        assert await health_answer(http, url, 200) == {"status": "ok"}
        assert await slack.ask_to_reconnect() == 1
        await eventually(lambda: len(slack.calls_to("apps.connections.open")) == 2, within=20)
        await eventually(lambda: slack.socket_connections == 1, within=20)
        assert await health_answer(http, url, 200) == {"status": "ok"}
        # An absence takes time to show: the link looks at its socket every second, and would
        # have reconnected a second time (or reported the connection lost) by now.
        await asyncio.sleep(2 * WATCH_INTERVAL_SECONDS + 0.5)
        assert await health_answer(http, url, 200) == {"status": "ok"}
        bridge.send_signal(signal.SIGTERM)
        assert await bridge.exit_code() == 0
    assert len(slack.calls_to("apps.connections.open")) == 2
    assert not any("connection to Slack was lost" in line for line in bridge.lines)
