"""`ghl-bridge doctor` against both simulators on loopback and a real SQLite file."""

from __future__ import annotations

import argparse
import asyncio
import io
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bot import doctor
from bot.doctor import Check, ManifestError, describe_age, diagnose, read_bot_scopes, render
from bot.inbound.polling import LAST_SUCCESS_KEY
from bot.sandbox.highlevel import HighLevelSimulator
from bot.sandbox.slack import SlackSimulator
from bot.server import serve
from bot.settings import Settings, load_settings
from storage import open_store
from tests._real_failures import unwritable
from tests.e2e.conftest import eventually

MANIFEST = Path(__file__).resolve().parent.parent / "manifest.yml"
INBOX = "C0INBOX"
NO_BOT = "C0NOBOT"
ALL_CHECKS = [
    doctor.SETTINGS,
    doctor.SLACK_AUTH,
    doctor.SLACK_SCOPES,
    doctor.SLACK_INBOX,
    doctor.HIGHLEVEL_AUTH,
    doctor.WEBHOOK_KEY,
    doctor.DATABASE,
    doctor.INBOUND,
    doctor.RETENTION,
    doctor.RUNNING_BRIDGE,
]


@pytest.fixture
async def slack() -> AsyncIterator[SlackSimulator]:
    simulator = SlackSimulator()
    simulator.add_channel(INBOX, "inbox")
    simulator.add_channel(NO_BOT, "no-bot", is_member=False)
    async with simulator:
        yield simulator


@pytest.fixture
async def highlevel() -> AsyncIterator[HighLevelSimulator]:
    async with HighLevelSimulator() as simulator:
        yield simulator


@pytest.fixture
def good(tmp_path: Path, slack: SlackSimulator, highlevel: HighLevelSimulator) -> dict[str, Any]:
    """Settings of a working installation: both simulators, a fresh database, polling on."""
    return {
        "slack_bot_token": slack.bot_token,
        "slack_signing_secret": "signing-secret",
        "slack_api_url": slack.api_url,
        "slack_inbox_channel": INBOX,
        "ghl_api_token": highlevel.token,
        "ghl_location_id": highlevel.location_id,
        "ghl_api_url": highlevel.base_url,
        "ghl_webhook_public_key": highlevel.public_key_pem,
        "database_url": f"sqlite:///{tmp_path / 'bridge.sqlite3'}",
        "ghl_poll_seconds": 30,
        "port": closed_port(),  # no bridge running there
    }


def loader(values: dict[str, Any], **changes: Any) -> Callable[[], Settings]:
    return lambda: load_settings(_env_file=None, **{**values, **changes})


async def check_with(values: dict[str, Any], **changes: Any) -> list[Check]:
    return await diagnose(loader(values, **changes), manifest_path=MANIFEST)


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


def failed(checks: list[Check]) -> list[str]:
    return [check.name for check in checks if not check.ok]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# ----------------------------------------------------------------------------- good setup


async def test_a_good_configuration_passes_every_check(good: dict[str, Any]) -> None:
    checks = await check_with(good)
    assert [c.name for c in checks] == ALL_CHECKS
    assert failed(checks) == [], checks
    assert doctor.exit_code(checks) == 0
    found = by_name(checks)
    assert "@ghl-bridge" in found[doctor.SLACK_AUTH].detail
    assert f"#inbox ({INBOX})" in found[doctor.SLACK_INBOX].detail
    assert "no inbound yet" in found[doctor.INBOUND].detail
    assert "polling every 30 s" in found[doctor.INBOUND].detail
    assert found[doctor.RETENTION].detail == "keep everything (MESSAGE_RETENTION_DAYS unset)"


async def test_doctor_prints_the_message_retention(good: dict[str, Any]) -> None:
    found = by_name(await check_with(good, message_retention_days=90))
    assert found[doctor.RETENTION].ok
    assert found[doctor.RETENTION].detail == "90 days (message bodies older are purged hourly)"


async def test_the_database_check_writes_and_reads_back(good: dict[str, Any]) -> None:
    await check_with(good)
    store = await open_store(good["database_url"])
    try:
        stamp = await store.kv_get(doctor.DOCTOR_KV_KEY)
    finally:
        await store.close()
    assert stamp is not None
    assert float(stamp) > 0


# ----------------------------------------------------------------------------- Slack


async def test_wrong_slack_token(good: dict[str, Any]) -> None:
    checks = await check_with(good, slack_bot_token="xoxb-not-the-token")
    found = by_name(checks)
    assert failed(checks) == [doctor.SLACK_AUTH]
    assert "invalid_auth" in found[doctor.SLACK_AUTH].detail
    assert "SLACK_BOT_TOKEN" in (found[doctor.SLACK_AUTH].fix or "")
    # Scopes and channel would fail for the same reason: not repeated.
    assert doctor.SLACK_SCOPES not in found
    assert doctor.SLACK_INBOX not in found
    assert doctor.exit_code(checks) == 1


async def test_slack_unreachable(good: dict[str, Any]) -> None:
    checks = await check_with(good, slack_api_url=f"http://127.0.0.1:{closed_port()}/api/")
    found = by_name(checks)
    assert failed(checks) == [doctor.SLACK_AUTH]
    assert "cannot reach SLACK_API_URL" in found[doctor.SLACK_AUTH].detail


async def test_missing_scope_asks_for_a_reinstall(
    good: dict[str, Any], slack: SlackSimulator
) -> None:
    wanted = read_bot_scopes(MANIFEST.read_text("utf-8"))
    slack.granted_scopes = tuple(scope for scope in wanted if scope != "chat:write")
    checks = await check_with(good)
    found = by_name(checks)
    assert failed(checks) == [doctor.SLACK_SCOPES]
    assert "chat:write" in found[doctor.SLACK_SCOPES].detail
    assert (found[doctor.SLACK_SCOPES].fix or "").startswith(
        "reinstall the app after adding scopes: chat:write"
    )
    assert doctor.exit_code(checks) == 1


async def test_scopes_compared_with_the_given_manifest(
    good: dict[str, Any], tmp_path: Path
) -> None:
    manifest = tmp_path / "manifest.yml"
    manifest.write_text("oauth_config:\n  scopes:\n    bot:\n      - commands\n      - admin\n")
    checks = await diagnose(loader(good), manifest_path=manifest)
    found = by_name(checks)
    assert failed(checks) == [doctor.SLACK_SCOPES]
    assert "admin" in found[doctor.SLACK_SCOPES].detail
    assert "commands" not in found[doctor.SLACK_SCOPES].detail


async def test_unreadable_manifest_is_reported(good: dict[str, Any], tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.yml"
    manifest.write_text("oauth_config:\n  scopes:\n    user:\n      - chat:write\n")
    checks = await diagnose(loader(good), manifest_path=manifest)
    assert failed(checks) == [doctor.SLACK_SCOPES]
    assert "oauth_config.scopes.bot" in (by_name(checks)[doctor.SLACK_SCOPES].fix or "")


async def test_bot_not_in_the_inbox_channel(good: dict[str, Any]) -> None:
    checks = await check_with(good, slack_inbox_channel=NO_BOT)
    found = by_name(checks)
    assert failed(checks) == [doctor.SLACK_INBOX]
    assert "not in #no-bot" in found[doctor.SLACK_INBOX].detail
    assert found[doctor.SLACK_INBOX].fix == "invite the bot: /invite @ghl-bridge in that channel"
    assert doctor.exit_code(checks) == 1


async def test_inbox_channel_that_does_not_exist(good: dict[str, Any]) -> None:
    checks = await check_with(good, slack_inbox_channel="C0GONE")
    found = by_name(checks)
    assert failed(checks) == [doctor.SLACK_INBOX]
    assert "C0GONE not found" in found[doctor.SLACK_INBOX].detail
    assert "SLACK_INBOX_CHANNEL" in (found[doctor.SLACK_INBOX].fix or "")


async def test_no_inbox_channel_passes_with_a_note(good: dict[str, Any]) -> None:
    checks = await check_with(good, slack_inbox_channel="")
    inbox = by_name(checks)[doctor.SLACK_INBOX]
    assert inbox.ok
    assert inbox.detail.startswith("not set")
    assert doctor.exit_code(checks) == 0


async def test_socket_mode_app_token_is_checked(
    good: dict[str, Any], slack: SlackSimulator
) -> None:
    checks = await check_with(good, slack_app_token=slack.app_token)
    names = [c.name for c in checks]
    assert names.index(doctor.SOCKET_MODE) == names.index(doctor.SLACK_INBOX) + 1
    assert failed(checks) == [], checks
    assert "SLACK_APP_TOKEN works" in by_name(checks)[doctor.SOCKET_MODE].detail
    assert len(slack.calls_to("apps.connections.open")) == 1


async def test_wrong_app_token(good: dict[str, Any]) -> None:
    checks = await check_with(good, slack_app_token="xapp-1-A0SANDBOX-1-not-the-token")
    found = by_name(checks)
    assert failed(checks) == [doctor.SOCKET_MODE]
    assert found[doctor.SOCKET_MODE].detail == "Slack refused SLACK_APP_TOKEN (invalid_auth)"
    assert "connections:write" in (found[doctor.SOCKET_MODE].fix or "")
    assert doctor.exit_code(checks) == 1


async def test_app_token_with_slack_unreachable(good: dict[str, Any]) -> None:
    unreachable = f"http://127.0.0.1:{closed_port()}/api/"
    checks = await check_with(good, slack_app_token="xapp-1-x", slack_api_url=unreachable)
    found = by_name(checks)
    assert failed(checks) == [doctor.SLACK_AUTH, doctor.SOCKET_MODE]
    assert "cannot reach SLACK_API_URL" in found[doctor.SOCKET_MODE].detail


# ----------------------------------------------------------------------------- HighLevel


async def test_wrong_highlevel_token(good: dict[str, Any]) -> None:
    checks = await check_with(good, ghl_api_token="not-the-token")
    found = by_name(checks)
    assert failed(checks) == [doctor.HIGHLEVEL_AUTH]
    assert "refused GHL_API_TOKEN" in found[doctor.HIGHLEVEL_AUTH].detail
    assert "401" in found[doctor.HIGHLEVEL_AUTH].detail
    assert "conversations.readonly" in (found[doctor.HIGHLEVEL_AUTH].fix or "")
    assert doctor.exit_code(checks) == 1


async def test_token_of_another_location(good: dict[str, Any]) -> None:
    checks = await check_with(good, ghl_location_id="someOtherLocation01")
    found = by_name(checks)
    assert failed(checks) == [doctor.HIGHLEVEL_AUTH]
    assert "403" in found[doctor.HIGHLEVEL_AUTH].detail
    assert "GHL_LOCATION_ID" in (found[doctor.HIGHLEVEL_AUTH].fix or "")


async def test_highlevel_unreachable(good: dict[str, Any]) -> None:
    checks = await check_with(good, ghl_api_url=f"http://127.0.0.1:{closed_port()}")
    found = by_name(checks)
    assert failed(checks) == [doctor.HIGHLEVEL_AUTH]
    assert "cannot reach GHL_API_URL" in found[doctor.HIGHLEVEL_AUTH].detail
    assert "GHL_API_URL" in (found[doctor.HIGHLEVEL_AUTH].fix or "")
    assert doctor.exit_code(checks) == 1


async def test_broken_webhook_key(good: dict[str, Any]) -> None:
    # Settings refuse a bad key, so only a settings object built past validation has one.
    settings = load_settings(_env_file=None, **good).model_copy(
        update={"ghl_webhook_public_key": "-----BEGIN PUBLIC KEY-----\nnope\n"}
    )
    checks = await diagnose(lambda: settings, manifest_path=MANIFEST)
    assert failed(checks) == [doctor.WEBHOOK_KEY]
    assert "GHL_WEBHOOK_PUBLIC_KEY" in (by_name(checks)[doctor.WEBHOOK_KEY].fix or "")


# ----------------------------------------------------------------------------- database


async def test_database_in_an_unwritable_place(good: dict[str, Any], tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    checks = await check_with(good, database_url=f"sqlite:///{blocker / 'bridge.sqlite3'}")
    found = by_name(checks)
    assert failed(checks) == [doctor.DATABASE]
    assert "cannot open" in found[doctor.DATABASE].detail
    assert "DATABASE_URL" in (found[doctor.DATABASE].fix or "")
    assert doctor.INBOUND not in found  # needs the database
    assert doctor.exit_code(checks) == 1


async def test_new_database_is_said_to_be_new(good: dict[str, Any], tmp_path: Path) -> None:
    first = by_name(await check_with(good))[doctor.DATABASE]
    second = by_name(await check_with(good))[doctor.DATABASE]
    assert "created just now" in first.detail
    assert "created" not in second.detail


async def test_read_only_database(good: dict[str, Any], tmp_path: Path) -> None:
    database = tmp_path / "bridge.sqlite3"
    store = await open_store(good["database_url"])
    await store.close()
    with unwritable(database):
        checks = await check_with(good)
    found = by_name(checks)
    assert failed(checks) == [doctor.DATABASE]
    assert found[doctor.DATABASE].detail == (
        f"cannot write to {database} (attempt to write a readonly database)"
    )
    assert "writable" in (found[doctor.DATABASE].fix or "")


# ----------------------------------------------------------------------------- running bridge


async def test_running_bridge_reports_what_its_healthz_says(
    good: dict[str, Any], slack: SlackSimulator
) -> None:
    """A bridge in Socket Mode that Slack has not said hello to yet is not working."""
    slack.socket_hello = False
    bridge_values = {**good, "host": "127.0.0.1", "port": 0, "slack_app_token": slack.app_token}
    settings = load_settings(_env_file=None, **bridge_values)
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    serving = asyncio.create_task(serve(settings, stop=stop, on_ready=ready.set_result))
    try:
        port = int((await asyncio.wait_for(ready, 15)).rsplit(":", 1)[1])
        await eventually(lambda: slack.sockets_awaiting_hello == 1, within=15)
        found = by_name(await check_with(good, port=port, host="0.0.0.0"))  # noqa: S104 - the default
        bridge = found[doctor.RUNNING_BRIDGE]
        assert not bridge.ok
        assert bridge.detail == (
            f"http://127.0.0.1:{port}/healthz says: Socket Mode: not connected to Slack yet"
        )
        assert "SLACK_APP_TOKEN" in (bridge.fix or "")
        await slack.send_hello()

        async def says_ok() -> bool:
            found = by_name(await check_with(good, port=port))
            return found[doctor.RUNNING_BRIDGE].ok

        deadline = asyncio.get_running_loop().time() + 15
        while not await says_ok():
            assert asyncio.get_running_loop().time() < deadline, "the bridge never said ok"
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.wait_for(serving, 20)


async def test_something_else_on_the_bridge_port(
    good: dict[str, Any], slack: SlackSimulator
) -> None:
    port = int(slack.base_url.rstrip("/").rsplit(":", 1)[1])
    checks = await check_with(good, port=port)
    bridge = by_name(checks)[doctor.RUNNING_BRIDGE]
    assert failed(checks) == [doctor.RUNNING_BRIDGE]
    assert bridge.detail.startswith("something other than ghl-bridge answers")
    assert bridge.fix == "stop it, or set PORT to a free port"


async def test_no_bridge_running_is_fine(good: dict[str, Any]) -> None:
    bridge = by_name(await check_with(good))[doctor.RUNNING_BRIDGE]
    assert bridge.ok
    assert (
        bridge.detail
        == f"none answers on http://127.0.0.1:{good['port']}/healthz (not running here)"
    )


# ----------------------------------------------------------------------------- inbound


async def test_no_polling_and_no_webhook_ever(good: dict[str, Any]) -> None:
    checks = await check_with(good, ghl_poll_seconds=0)
    found = by_name(checks)
    assert failed(checks) == [doctor.INBOUND]
    assert (found[doctor.INBOUND].fix or "").startswith(
        "nothing can bring customer replies in: set GHL_POLL_SECONDS"
    )
    assert doctor.exit_code(checks) == 1


async def test_last_webhook_and_poll_are_reported(good: dict[str, Any]) -> None:
    store = await open_store(good["database_url"])
    try:
        await store.enqueue_inbound(
            source="webhook",
            event_type="inbound_message",
            conversation_key="conv-1",
            payload={},
            dedupe_keys=["webhook:w1"],
            ttl_seconds=60,
        )
        await store.kv_set(LAST_SUCCESS_KEY, "1000.0")
    finally:
        await store.close()
    # With a webhook seen, polling off is fine.
    quiet = by_name(await check_with(good, ghl_poll_seconds=0))[doctor.INBOUND]
    assert quiet.ok
    assert quiet.detail == "last webhook just now, last message by polling never; polling off"
    polling = by_name(await check_with(good))[doctor.INBOUND]
    assert polling.ok
    assert "polling every 30 s, last poll" in polling.detail
    assert "days ago" in polling.detail


def test_ages() -> None:
    assert describe_age(100.0, 100.4) == "just now"
    assert describe_age(100.0, 112.0) == "12 s ago"
    assert describe_age(0.0, 3 * 60 + 5) == "3 min ago"
    assert describe_age(0.0, 5 * 3600) == "5 h ago"
    assert describe_age(0.0, 3 * 86_400) == "3 days ago"


# ----------------------------------------------------------------------------- settings


async def test_unparseable_settings_exit_2(good: dict[str, Any]) -> None:
    checks = await check_with(good, slack_bot_token="not-a-bot-token", ghl_location_id="")
    assert {c.name for c in checks} == {doctor.SETTINGS}
    assert not any(c.ok for c in checks)
    details = [c.detail for c in checks]
    assert "SLACK_BOT_TOKEN must start with xoxb-" in details
    assert any(d.startswith("GHL_LOCATION_ID") for d in details)
    token = next(c for c in checks if c.detail.startswith("SLACK_BOT_TOKEN"))
    assert token.fix is not None
    assert token.fix.startswith("set it to the app's Bot User OAuth Token (starts with xoxb-)")
    assert doctor.exit_code(checks) == 2


# ----------------------------------------------------------------------------- printing


async def test_run_prints_each_check(
    good: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in {**good, "slack_inbox_channel": NO_BOT}.items():
        monkeypatch.setenv(name.upper(), str(value))
    parser = argparse.ArgumentParser()
    doctor.add_arguments(parser)
    code = await doctor.run(parser.parse_args(["--manifest", str(MANIFEST)]))
    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    assert lines[0] == "✓ settings — loaded (HTTP mode)"
    failing = lines.index("✗ Slack inbox channel — the bot is not in #no-bot (C0NOBOT)")
    assert lines[failing + 1] == "    invite the bot: /invite @ghl-bridge in that channel"
    marks = [line.split(" ", 1)[0] for line in lines if not line.startswith("    ")]
    assert marks == ["✓", "✓", "✓", "✗", "✓", "✓", "✓", "✓", "✓", "✓"]
    assert "✓ message retention — keep everything (MESSAGE_RETENTION_DAYS unset)" in lines


async def test_run_with_broken_settings_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await doctor.run(argparse.Namespace(manifest=MANIFEST))
    out = capsys.readouterr().out
    assert code == 2
    assert "✗ settings — SLACK_BOT_TOKEN is not set" in out
    assert "✗ settings — GHL_API_TOKEN is not set" in out


def test_ascii_rendering() -> None:
    checks = [
        Check("database", True, "bridge.sqlite3 writable"),
        Check("Slack token", False, "Slack refused it — «invalid_auth»", "copy the token"),
    ]
    assert render(checks, unicode=False) == [
        "OK database - bridge.sqlite3 writable",
        "FAIL Slack token - Slack refused it ? ?invalid_auth?",
        "    copy the token",
    ]
    ascii_out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    utf8_out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    assert doctor._can_print_marks(ascii_out) is False
    assert doctor._can_print_marks(utf8_out) is True


# ----------------------------------------------------------------------------- manifest reader


def test_reads_the_projects_manifest() -> None:
    scopes = read_bot_scopes(MANIFEST.read_text("utf-8"))
    assert "commands" in scopes
    assert "chat:write" in scopes


def test_reads_list_styles_and_ignores_other_lists() -> None:
    text = """\
# comment
display_information:
  background_color: "#1f2937"
features:
  slash_commands:
    - command: /sendsms   # a list of mappings elsewhere
      url: https://x/slack/events
oauth_config:
  redirect_urls:
    - https://example.com/bot
  scopes:
    user:
      - search:read
    bot:
    - commands        # same indent as the key is valid YAML
    - "chat:write"
    - 'users:read.email'
settings:
  interactivity:
    is_enabled: true
"""
    assert read_bot_scopes(text) == ("commands", "chat:write", "users:read.email")
    flow = "oauth_config:\n  scopes:\n    bot: [commands, 'chat:write']\n"
    assert read_bot_scopes(flow) == ("commands", "chat:write")


@pytest.mark.parametrize(
    "text",
    [
        "oauth_config:\n  scopes:\n    user:\n      - chat:write\n",
        "oauth_config:\n  scopes:\n    bot:\n",
        "oauth_config:\n  scopes:\n    bot:\n      - name: chat:write\n",
        "oauth_config:\n  scopes:\n    bot:\n      - commands\n        extra: 1\n",
        "oauth_config:\n  scopes:\n    bot: commands\n",
        "scopes:\n  bot:\n    - commands\n",
    ],
)
def test_refuses_what_it_does_not_understand(text: str) -> None:
    with pytest.raises(ManifestError):
        read_bot_scopes(text)


# ----------------------------------------------------------------------------- sub-accounts


async def test_an_oauth_bridge_reports_each_sub_account(tmp_path: Path) -> None:
    from bot.doctor.accounts import MARKETPLACE, account_checks
    from bot.sandbox.stack import SALES_CHANNEL, SandboxStack
    from bot.tenancy.crypto import generate_key

    sim = HighLevelSimulator(locations=3)
    async with SandboxStack(tmp_path / "bridge.sqlite3", highlevel=sim, oauth=True) as stack:
        assert stack.settings is not None
        settings = stack.settings
        page = await stack.install(company=True)
        assert page.status == 200
        store = await open_store(settings.database_url)
        try:
            await store.link_channel(
                stack.slack.team_id, SALES_CHANNEL, sim.location_id, linked_by="U0AGENT"
            )
        finally:
            await store.close()
        await sim.uninstall(sim.location_ids[2])
        await sim.drain_webhooks()
        searches = len(sim.requests_to("GET", "/conversations/search"))

        checks = await diagnose(lambda: settings, manifest_path=MANIFEST)
        by_name = {c.name: c for c in checks}
        assert by_name[MARKETPLACE].ok
        assert f"{stack.bridge_url}/ghl/oauth/callback" in by_name[MARKETPLACE].detail
        dental = by_name["sub-account Sandbox Dental (sbxLocation000000001)"]
        assert dental.ok, dental
        assert "agency (Company) OAuth" in dental.detail
        assert "expires in 24.0 h" in dental.detail
        assert f"<#{SALES_CHANNEL}>" in dental.detail
        assert "reads conversations" in dental.detail
        plumbing = by_name["sub-account Sandbox Plumbing (sbxLocation000000002)"]
        assert plumbing.ok and "no linked channel" in plumbing.detail
        realty = by_name["sub-account Sandbox Realty (sbxLocation000000003)"]
        assert not realty.ok
        assert "disconnected (the app was uninstalled)" in realty.detail
        assert realty.fix is not None and "/ghl/install" in realty.fix
        assert doctor.exit_code(checks) == doctor.EXIT_BROKEN
        # One call per connected sub-account, each with its own token; no refresh.
        calls = sim.requests_to("GET", "/conversations/search")[searches:]
        assert sorted(r.query["locationId"] for r in calls) == sim.location_ids[:2]
        refreshes = sim.oauth.counters.refreshes

        # A token about to expire is reported, not used and not refreshed.
        later = await account_checks(settings, clock=lambda: time.time() + 86_399 - 30)
        soon = {c.name: c for c in later}["sub-account Sandbox Dental (sbxLocation000000001)"]
        assert soon.ok and "not called" in soon.detail and "expires in" in soon.detail
        assert len(sim.requests_to("GET", "/conversations/search")) == searches + 2
        assert sim.oauth.counters.refreshes == refreshes

        # Another TOKEN_ENCRYPTION_KEY cannot read the stored tokens: said so.
        wrong = settings.model_copy(update={"token_encryption_key": SecretStr(generate_key())})
        found = {c.name: c for c in await account_checks(wrong)}
        assert not found["sub-account Sandbox Dental (sbxLocation000000001)"].ok
        assert (
            "cannot be decrypted"
            in found["sub-account Sandbox Dental (sbxLocation000000001)"].detail
        )
        bad_key = settings.model_copy(update={"token_encryption_key": SecretStr("short")})
        assert not (await account_checks(bad_key))[0].ok


async def test_an_oauth_bridge_with_nothing_connected_says_how_to_connect(
    tmp_path: Path,
) -> None:
    from bot.doctor.accounts import SUB_ACCOUNT, account_checks
    from bot.sandbox.stack import SandboxStack

    async with SandboxStack(
        tmp_path / "bridge.sqlite3", highlevel=HighLevelSimulator(locations=2), oauth=True
    ) as stack:
        assert stack.settings is not None
        checks = await account_checks(stack.settings)
    assert [(c.name, c.ok) for c in checks] == [("Marketplace app", True), (SUB_ACCOUNT, False)]
    assert checks[1].fix is not None and f"{stack.bridge_url}/ghl/install" in checks[1].fix


async def test_a_pit_bridge_has_no_sub_account_checks(good: dict[str, Any]) -> None:
    from bot.doctor.accounts import account_checks

    assert await account_checks(loader(good)()) == []
