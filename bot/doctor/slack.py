"""The Slack checks: bot token, its scopes against manifest.yml, inbox channel, Socket Mode."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.doctor.base import (
    NETWORK_TIMEOUT_SECONDS,
    SLACK_AUTH,
    SLACK_INBOX,
    SLACK_SCOPES,
    SOCKET_MODE,
    Check,
    _one_line,
)
from bot.doctor.manifest import ManifestError, read_bot_scopes
from bot.settings import Settings
from bot.socket_mode import SocketRefused, SocketUnreachable, open_socket_url

# auth.test errors that mean "this is not a working bot token".
_BAD_TOKEN_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive"}
)


async def _slack_checks(settings: Settings, manifest_path: Path | None) -> list[Check]:
    """SLACK_BOT_TOKEN's workspace (installed workspaces: bot/doctor/workspaces.py)."""
    assert settings.slack_bot_token is not None  # noqa: S101 - only called when set
    client = AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=settings.slack_api_url,
        timeout=int(NETWORK_TIMEOUT_SECONDS),
    )
    try:
        auth = await client.auth_test()
    except SlackApiError as exc:
        error = str(exc.response.get("error") or f"HTTP {exc.response.status_code}")
        if error in _BAD_TOKEN_ERRORS:
            return [
                Check(
                    SLACK_AUTH,
                    False,
                    f"Slack refused SLACK_BOT_TOKEN ({error})",
                    "copy the Bot User OAuth Token (xoxb-...) from the app's OAuth & Permissions "
                    "page into SLACK_BOT_TOKEN",
                )
            ]
        return [
            Check(
                SLACK_AUTH,
                False,
                f"auth.test at {settings.slack_api_url} failed: {error}",
                "leave SLACK_API_URL unset for Slack's API, or check the service it points at",
            )
        ]
    except (SlackClientError, aiohttp.ClientError, TimeoutError, OSError) as exc:
        return [
            Check(
                SLACK_AUTH,
                False,
                f"cannot reach SLACK_API_URL {settings.slack_api_url}: {_one_line(exc)}",
                "check the network and proxy, or leave SLACK_API_URL unset for Slack's API",
            )
        ]
    bot_name = str(auth.get("user") or "the bot")
    checks = [
        Check(
            SLACK_AUTH,
            True,
            f"works: @{bot_name} ({auth.get('user_id')}) in {auth.get('team')}",
        ),
        _scope_check(_granted_scopes(auth.headers), manifest_path),
    ]
    checks.append(await _inbox_check(client, settings, bot_name))
    return checks


def _granted_scopes(headers: Mapping[str, Any] | None) -> frozenset[str] | None:
    """The token's scopes from Slack's `x-oauth-scopes` header; None when Slack sent none."""
    for name, value in (headers or {}).items():
        if name.lower() == "x-oauth-scopes":
            return frozenset(part.strip() for part in str(value).split(",") if part.strip())
    return None


def _scope_check(granted: frozenset[str] | None, manifest_path: Path | None) -> Check:
    path = manifest_path if manifest_path is not None else _default_manifest()
    if path is None:
        shown = ", ".join(sorted(granted)) if granted is not None else "not reported"
        return Check(SLACK_SCOPES, True, f"granted: {shown} (no manifest.yml here to compare with)")
    try:
        wanted = read_bot_scopes(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, ManifestError) as exc:
        return Check(
            SLACK_SCOPES,
            False,
            f"cannot read the bot scopes of {path}: {_one_line(exc)}",
            "keep oauth_config.scopes.bot in manifest.yml a plain YAML list (one '- scope' a line)",
        )
    if granted is None:
        return Check(
            SLACK_SCOPES,
            True,
            "Slack did not report the token's scopes (no x-oauth-scopes header); not compared",
        )
    missing = [scope for scope in wanted if scope not in granted]
    if missing:
        listed = ", ".join(missing)
        return Check(
            SLACK_SCOPES,
            False,
            f"the token lacks {listed} (asked for by {path.name})",
            f"reinstall the app after adding scopes: {listed} (OAuth & Permissions, "
            "or update the app from manifest.yml)",
        )
    return Check(SLACK_SCOPES, True, f"all {len(wanted)} bot scopes of {path.name} granted")


def _default_manifest() -> Path | None:
    for candidate in (Path.cwd() / "manifest.yml", Path(__file__).parents[2] / "manifest.yml"):
        if candidate.is_file():
            return candidate
    return None


async def _inbox_check(client: AsyncWebClient, settings: Settings, bot_name: str) -> Check:
    channel_id = settings.slack_inbox_channel
    if not channel_id:
        # A warning, not a failure: replies to existing threads still arrive.
        return Check(
            SLACK_INBOX,
            True,
            "not set: messages from customers with no Slack thread yet are not shown "
            "(set SLACK_INBOX_CHANNEL to show them)",
        )
    invite = f"invite the bot: /invite @{bot_name} in that channel"
    try:
        info = await client.conversations_info(channel=channel_id)
    except SlackApiError as exc:
        error = str(exc.response.get("error") or f"HTTP {exc.response.status_code}")
        if error == "channel_not_found":
            return Check(
                SLACK_INBOX,
                False,
                f"SLACK_INBOX_CHANNEL {channel_id} not found (or private without the bot)",
                "set SLACK_INBOX_CHANNEL to the channel's ID (channel details, at the bottom) "
                f"and {invite}",
            )
        if error == "missing_scope":
            return Check(
                SLACK_INBOX,
                False,
                f"cannot look at {channel_id}: the token lacks channels:read/groups:read",
                "reinstall the app after adding scopes: channels:read, groups:read",
            )
        return Check(
            SLACK_INBOX,
            False,
            f"conversations.info for {channel_id} failed: {error}",
            "run doctor again; if it persists, check SLACK_INBOX_CHANNEL",
        )
    except (SlackClientError, aiohttp.ClientError, TimeoutError, OSError) as exc:
        return Check(
            SLACK_INBOX,
            False,
            f"cannot reach Slack: {_one_line(exc)}",
            "check the network and run doctor again",
        )
    channel = info.get("channel") or {}
    label = f"#{channel.get('name')} ({channel_id})" if channel.get("name") else channel_id
    if channel.get("is_archived"):
        return Check(
            SLACK_INBOX,
            False,
            f"{label} is archived",
            "unarchive it, or set SLACK_INBOX_CHANNEL to another channel",
        )
    if not channel.get("is_member"):
        return Check(SLACK_INBOX, False, f"the bot is not in {label}", invite)
    return Check(SLACK_INBOX, True, f"the bot is in {label}")


async def _app_token_check(settings: Settings) -> Check:
    """Socket Mode: Slack issues a websocket URL for SLACK_APP_TOKEN (not used: it expires)."""
    assert settings.slack_app_token is not None  # noqa: S101 - only called when set
    url = settings.slack_api_url
    web = AsyncWebClient(base_url=url, timeout=int(NETWORK_TIMEOUT_SECONDS), retry_handlers=[])
    try:
        await open_socket_url(web, settings.slack_app_token.get_secret_value(), url)
    except SocketRefused as exc:
        return Check(SOCKET_MODE, False, exc.detail, exc.fix)
    except SocketUnreachable as exc:
        return Check(
            SOCKET_MODE,
            False,
            f"cannot reach SLACK_API_URL {url} for apps.connections.open: {exc}",
            "check the network and proxy, or leave SLACK_API_URL unset for Slack's API",
        )
    return Check(SOCKET_MODE, True, "SLACK_APP_TOKEN works: Slack opens Socket Mode connections")
