"""Settings: names, defaults, and a one-line message per missing or malformed variable."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bot.__main__ import shown_default
from bot.settings import (
    DEFAULT_GHL_API_URL,
    DEFAULT_SLACK_API_URL,
    Settings,
    SettingsError,
    highlevel_webhook_key_pem,
    load_settings,
)

REQUIRED = {
    "SLACK_BOT_TOKEN": "xoxb-test-token",
    "SLACK_SIGNING_SECRET": "signing-secret",
    "GHL_API_TOKEN": "pit-test-token",
    "GHL_LOCATION_ID": "loc123",
}


def _set(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    _set(monkeypatch, REQUIRED)
    settings = load_settings()
    assert settings.slack_api_url == DEFAULT_SLACK_API_URL
    assert settings.ghl_api_url == DEFAULT_GHL_API_URL
    assert settings.database_url == "sqlite:///ghl-bridge.sqlite3"
    assert (settings.host, settings.port) == ("0.0.0.0", 3000)  # noqa: S104 - the documented default
    assert settings.phone_default_region == "US"
    assert settings.ghl_poll_seconds == 30
    assert settings.allowed_slack_users == frozenset()
    assert settings.ghl_webhook_public_key == highlevel_webhook_key_pem()
    assert not settings.socket_mode


def test_secrets_are_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    _set(monkeypatch, REQUIRED)
    settings = load_settings()
    assert "pit-test-token" not in repr(settings)
    assert "xoxb-test-token" not in str(settings.model_dump())
    assert settings.ghl_api_token is not None
    assert settings.ghl_api_token.get_secret_value() == "pit-test-token"


@pytest.mark.parametrize("missing", sorted(REQUIRED))
def test_each_missing_variable_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    _set(monkeypatch, {k: v for k, v in REQUIRED.items() if k != missing})
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert len(caught.value.lines) == 1
    line = caught.value.lines[0]
    assert missing in line
    assert "set" in line
    assert "\n" not in line


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SLACK_BOT_TOKEN", "xoxp-user-token"),
        ("SLACK_APP_TOKEN", "xoxb-not-an-app-token"),
        ("PORT", "eighty"),
        ("PORT", "70000"),
        ("PHONE_DEFAULT_REGION", "ZZ"),
        ("DATABASE_URL", "mysql://localhost/db"),
        ("DATABASE_URL", "postgresql://localhost/"),
        ("GHL_WEBHOOK_PUBLIC_KEY", "not a key"),
        ("GHL_API_URL", "ftp://example"),
        ("GHL_POLL_SECONDS", "-1"),
    ],
)
def test_malformed_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    _set(monkeypatch, REQUIRED | {name: value})
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert len(caught.value.lines) == 1
    assert name in caught.value.lines[0]


def test_socket_mode_does_not_need_signing_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {k: v for k, v in REQUIRED.items() if k != "SLACK_SIGNING_SECRET"}
    _set(monkeypatch, values | {"SLACK_APP_TOKEN": "xapp-1-abc"})
    assert load_settings().socket_mode


def test_allowlists_and_escaped_pem(monkeypatch: pytest.MonkeyPatch) -> None:
    escaped = highlevel_webhook_key_pem().strip().replace("\n", "\\n")
    _set(
        monkeypatch,
        REQUIRED
        | {
            "ALLOWED_SLACK_USERS": "U1, U2,,",
            "ALLOWED_SLACK_CHANNELS": "C1",
            "GHL_WEBHOOK_PUBLIC_KEY": escaped,
            "SLACK_API_URL": "http://127.0.0.1:9/api",
        },
    )
    settings = load_settings()
    assert settings.allowed_slack_users == frozenset({"U1", "U2"})
    assert settings.allowed_slack_channels == frozenset({"C1"})
    assert settings.ghl_webhook_public_key == highlevel_webhook_key_pem()
    assert settings.slack_api_url == "http://127.0.0.1:9/api/"


def test_dotenv_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in REQUIRED.items()))
    monkeypatch.chdir(tmp_path)
    assert Settings().ghl_location_id == "loc123"


def _run_cli(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in REQUIRED}
    return subprocess.run(
        [sys.executable, "-m", "bot", "serve"],
        env=base | env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_serve_without_token_exits_2_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in REQUIRED.items() if k != "GHL_API_TOKEN"}
    result = _run_cli(env, tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "GHL_API_TOKEN" in lines[0]
    assert "Traceback" not in result.stderr


def _configuration_table() -> dict[str, str]:
    """README's Configuration table: each variable named in a row -> that row's default cell."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    defaults: dict[str, str] = {}
    for row in section.splitlines():
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        if not row.startswith("|") or len(cells) != 3:
            continue
        for variable in re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[0]):
            defaults[variable] = cells[2].replace("`", "")
    return defaults


def test_every_setting_is_described_and_in_the_readme_table_with_its_default() -> None:
    # `serve --help` is generated from these descriptions (tests/test_cli.py checks it); the
    # README's table is written by hand, so this keeps the two from drifting apart.
    table = _configuration_table()
    assert len(table) >= 20, "the README's Configuration table was not found"
    for name, field in Settings.model_fields.items():
        variable = name.upper()
        assert field.description, f"{variable}: add Field(description=...) in bot/settings.py"
        assert variable in table, f"{variable} is missing from the README's Configuration table"
        assert shown_default(field) in table[variable], variable
    assert set(table) == {name.upper() for name in Settings.model_fields}


# ------------------------------------------------------------------ sub-accounts through OAuth

SLACK_ONLY = {k: v for k, v in REQUIRED.items() if k.startswith("SLACK_")}
FERNET_KEY = "8hZz1nC2P0oS0wK3oHc5z2o9fQp4m8Z0h6mJ8vA0b1c="
OAUTH = {
    **SLACK_ONLY,
    "GHL_CLIENT_ID": "64f8aa11bb22cc33dd44ee55-lmn0pq1r",
    "GHL_CLIENT_SECRET": "client-secret",
    "PUBLIC_URL": "https://bridge.example.com/",
    "TOKEN_ENCRYPTION_KEY": FERNET_KEY,
}


def test_a_marketplace_app_needs_no_private_integration_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _set(monkeypatch, OAUTH)
    settings = load_settings()
    assert settings.oauth_enabled
    assert settings.pit_location is None
    assert settings.public_url == "https://bridge.example.com"  # no trailing slash
    assert settings.oauth_redirect_uri == "https://bridge.example.com/ghl/oauth/callback"
    assert settings.app_id == "64f8aa11bb22cc33dd44ee55"  # the client id up to its first "-"
    assert settings.ghl_marketplace_url == "https://marketplace.gohighlevel.com"
    assert "client-secret" not in repr(settings)
    assert FERNET_KEY not in repr(settings)


def test_both_ways_at_once_serve_the_token_s_sub_account_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _set(monkeypatch, {**OAUTH, "GHL_API_TOKEN": "pit-1", "GHL_LOCATION_ID": "loc-1"})
    settings = load_settings(ghl_app_id="explicit-app")
    assert settings.oauth_enabled
    assert settings.pit_location is not None and settings.pit_location[0] == "loc-1"
    assert settings.app_id == "explicit-app"


@pytest.mark.parametrize("missing", ["GHL_CLIENT_SECRET", "PUBLIC_URL", "TOKEN_ENCRYPTION_KEY"])
def test_a_marketplace_app_without_one_of_its_settings_names_it(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    _set(monkeypatch, {k: v for k, v in OAUTH.items() if k != missing})
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert len(raised.value.lines) == 1
    assert raised.value.lines[0].startswith(
        f"ghl-bridge: {missing} is not set (required with a Marketplace app): "
    )


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("TOKEN_ENCRYPTION_KEY", "not-a-key", "is not a Fernet key"),
        ("TOKEN_ENCRYPTION_KEY", "c2hvcnQ=", "is not a Fernet key"),
        ("PUBLIC_URL", "bridge.example.com", "must be an http(s) URL"),
        ("PUBLIC_URL", "https://bridge.example.com/?x=1", "must be a base URL"),
        ("GHL_MARKETPLACE_URL", "marketplace", "must be an http(s) URL"),
    ],
)
def test_a_malformed_marketplace_setting_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, problem: str
) -> None:
    _set(monkeypatch, {**OAUTH, variable: value})
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert raised.value.lines == [
        line for line in raised.value.lines if line.startswith(f"ghl-bridge: {variable} {problem}")
    ]
    assert len(raised.value.lines) == 1


def test_a_token_without_its_location_and_other_errors_are_all_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _set(monkeypatch, {**REQUIRED, "SLACK_BOT_TOKEN": "not-a-bot-token", "GHL_LOCATION_ID": ""})
    with pytest.raises(SettingsError) as raised:
        load_settings()
    names = [line.split()[1] for line in raised.value.lines]
    assert names == ["SLACK_BOT_TOKEN", "GHL_LOCATION_ID"]
    assert "required with GHL_API_TOKEN" in raised.value.lines[1]


def test_keygen_prints_a_key_the_settings_take(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "GHL_"))}
    printed = subprocess.run(
        [sys.executable, "-m", "bot", "keygen"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.splitlines()
    assert len(printed) == 1
    settings = load_settings(
        **{k.lower(): v for k, v in OAUTH.items()} | {"token_encryption_key": printed[0]}
    )
    assert settings.token_encryption_key is not None
    assert settings.token_encryption_key.get_secret_value() == printed[0]


SLACK_INSTALL = {
    "SLACK_CLIENT_ID": "1234.5678",
    "SLACK_CLIENT_SECRET": "slack-client-secret",
    "SLACK_SIGNING_SECRET": "signing-secret",
    "PUBLIC_URL": "https://bridge.example.com/",
    "TOKEN_ENCRYPTION_KEY": FERNET_KEY,
    "GHL_API_TOKEN": "pit-test-token",
    "GHL_LOCATION_ID": "loc123",
}


def test_installing_into_workspaces_needs_no_bot_token(monkeypatch: pytest.MonkeyPatch) -> None:
    _set(monkeypatch, SLACK_INSTALL)
    settings = load_settings()
    assert settings.slack_oauth_enabled
    assert settings.slack_bot_token is None
    assert settings.slack_redirect_uri == "https://bridge.example.com/slack/oauth_redirect"
    assert settings.slack_authorize_url == "https://slack.com/oauth/v2/authorize"
    assert "slack-client-secret" not in repr(settings)


@pytest.mark.parametrize("missing", ["SLACK_CLIENT_SECRET", "PUBLIC_URL", "TOKEN_ENCRYPTION_KEY"])
def test_installing_into_workspaces_without_one_of_its_settings_names_it(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    _set(monkeypatch, {k: v for k, v in SLACK_INSTALL.items() if k != missing})
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert raised.value.lines == [
        line
        for line in raised.value.lines
        if line.startswith(f"ghl-bridge: {missing} is not set (required to install into")
    ]
    assert len(raised.value.lines) == 1


def test_no_way_to_slack_nor_highlevel_names_both_beside_other_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _set(monkeypatch, {"SLACK_SIGNING_SECRET": "s", "PORT": "not-a-port"})
    with pytest.raises(SettingsError) as raised:
        load_settings()
    names = [line.split()[1] for line in raised.value.lines]
    assert names == ["PORT", "SLACK_BOT_TOKEN", "GHL_API_TOKEN"]
    assert "SLACK_CLIENT_ID and SLACK_CLIENT_SECRET" in raised.value.lines[1]
