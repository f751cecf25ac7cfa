"""`ghl-bridge doctor`: checks the configuration against the real services, one line each.

Every check says what it found and, when it failed, the one thing to do about it. Checks that
depend on a failed one (the Slack scopes on a token Slack refused) are left out rather than
failing a second time for the same reason.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import httpx
from cryptography.exceptions import UnsupportedAlgorithm
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.health import DATABASE_FIX, POSTGRES_FIX
from bot.highlevel import (
    AuthError,
    HighLevelClient,
    HighLevelError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    UnavailableError,
)
from bot.inbound.polling import LAST_SUCCESS_KEY
from bot.settings import Settings, SettingsError, highlevel_webhook_key_pem, load_settings
from bot.socket_mode import SocketRefused, SocketUnreachable, open_socket_url
from bot.webhook_auth import WebhookVerifier
from storage import (
    LATEST_VERSION,
    Store,
    StoreError,
    is_postgres_url,
    open_store,
    parse_sqlite_url,
    redact_url,
)

__all__ = [
    "EXIT_BROKEN",
    "EXIT_OK",
    "EXIT_SETTINGS",
    "Check",
    "ManifestError",
    "add_arguments",
    "describe_age",
    "diagnose",
    "exit_code",
    "read_bot_scopes",
    "render",
    "run",
]

EXIT_OK = 0
EXIT_BROKEN = 1
EXIT_SETTINGS = 2

SETTINGS = "settings"
SLACK_AUTH = "Slack token"
SLACK_SCOPES = "Slack scopes"
SLACK_INBOX = "Slack inbox channel"
HIGHLEVEL_AUTH = "HighLevel token"
WEBHOOK_KEY = "webhook key"
DATABASE = "database"
INBOUND = "inbound"
SOCKET_MODE = "Socket Mode"
RUNNING_BRIDGE = "running bridge"

NETWORK_TIMEOUT_SECONDS = 10.0
# A running bridge answers /healthz within about a second.
HEALTHZ_TIMEOUT_SECONDS = 5.0
DOCTOR_KV_KEY = "doctor:last_run"
# Written by InboundPoller.poll_once (bot/inbound/polling.py) after each successful pass.

# auth.test errors that mean "this is not a working bot token".
_BAD_TOKEN_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive"}
)
_HIGHLEVEL_SCOPES = (
    "conversations.readonly, conversations.write, conversations/message.readonly, "
    "conversations/message.write, contacts.readonly, contacts.write"
)


@dataclass(frozen=True)
class Check:
    """One finding: `fix` says in one line what to do when `ok` is False."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None


# ----------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--manifest",
        type=Path,
        default=None,
        metavar="PATH",
        help="the Slack app manifest whose bot scopes the token must have "
        "(default: ./manifest.yml, else the one beside the package)",
    )


async def run(args: argparse.Namespace) -> int:
    """Print every check; 0 when all pass, 1 when one fails, 2 when settings do not load."""
    checks = await diagnose(manifest_path=getattr(args, "manifest", None))
    for line in render(checks, unicode=_can_print_marks(sys.stdout)):
        print(line)
    return exit_code(checks)


def exit_code(checks: Iterable[Check]) -> int:
    checks = list(checks)
    if any(c.name == SETTINGS and not c.ok for c in checks):
        return EXIT_SETTINGS
    return EXIT_OK if all(c.ok for c in checks) else EXIT_BROKEN


def render(checks: Iterable[Check], *, unicode: bool = True) -> list[str]:
    """`✓ name — detail`, or `✗ name — detail` plus the fix indented; `OK`/`FAIL` in ASCII."""
    passed, failed, dash = ("✓", "✗", "—") if unicode else ("OK", "FAIL", "-")
    lines: list[str] = []
    for check in checks:
        mark = passed if check.ok else failed
        lines.append(f"{mark} {check.name} {dash} {check.detail}")
        if not check.ok and check.fix:
            lines.append(f"    {check.fix}")
    if unicode:
        return lines
    # Details quote services and paths; keep whatever they contain printable.
    return [line.encode("ascii", "replace").decode("ascii") for line in lines]


def _can_print_marks(stream: TextIO) -> bool:
    try:
        "✓✗—".encode(stream.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


# ----------------------------------------------------------------------------- the checks


async def diagnose(
    settings_loader: Callable[[], Settings] = load_settings,
    *,
    manifest_path: Path | None = None,
) -> list[Check]:
    """Run the checks in order; on unreadable settings, only what is wrong with them."""
    try:
        settings = settings_loader()
    except SettingsError as exc:
        return [_settings_problem(line) for line in exc.lines]
    mode = "Socket Mode" if settings.socket_mode else "HTTP mode"
    checks = [Check(SETTINGS, True, f"loaded ({mode})")]
    checks += await _slack_checks(settings, manifest_path)
    if settings.slack_app_token is not None:
        checks.append(await _app_token_check(settings))
    checks.append(await _highlevel_check(settings))
    checks.append(_webhook_key_check(settings))
    checks += await _store_checks(settings)
    # Imported here: bot.doctor_accounts builds on this module's Check.
    from bot.doctor_accounts import account_checks

    checks += await account_checks(settings)
    bridge = await _running_bridge_check(settings)
    if bridge is not None:
        checks.append(bridge)
    return checks


def _settings_problem(line: str) -> Check:
    # Lines read "ghl-bridge: NAME problem: what to set." (bot.settings.describe_errors).
    text = line.removeprefix("ghl-bridge: ").strip()
    problem, sep, hint = text.rpartition(": ")
    if not sep:
        return Check(SETTINGS, False, text, None)
    return Check(SETTINGS, False, problem, hint.rstrip("."))


async def _slack_checks(settings: Settings, manifest_path: Path | None) -> list[Check]:
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
    for candidate in (Path.cwd() / "manifest.yml", Path(__file__).parent.parent / "manifest.yml"):
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


async def _highlevel_check(settings: Settings) -> Check:
    url = settings.ghl_api_url
    if settings.pit_location is None:
        return Check(
            HIGHLEVEL_AUTH,
            True,
            "no GHL_API_TOKEN: sub-accounts connect through the Marketplace app (/ghl/install)",
        )
    location, token = settings.pit_location
    try:
        async with HighLevelClient(
            token=token,
            location_id=location,
            base_url=url,
            timeout=httpx.Timeout(NETWORK_TIMEOUT_SECONDS),
            max_read_attempts=1,  # a check reports what it sees; no backoff
        ) as highlevel:
            found = await highlevel.search_conversations(limit=1)
    except AuthError as exc:
        return Check(
            HIGHLEVEL_AUTH,
            False,
            f"HighLevel refused GHL_API_TOKEN for location {location} "
            f"({exc.status_code}: {_one_line(exc.message)})",
            f"use a token of sub-account {location} (or fix GHL_LOCATION_ID) with the scopes "
            f"{_HIGHLEVEL_SCOPES}",
        )
    except UnavailableError as exc:
        return Check(
            HIGHLEVEL_AUTH,
            False,
            f"cannot reach GHL_API_URL {url}: {_one_line(exc.message)}",
            "check the network and proxy, or leave GHL_API_URL unset for HighLevel's API",
        )
    except RateLimitedError as exc:
        return Check(
            HIGHLEVEL_AUTH,
            False,
            f"HighLevel is rate-limiting location {location}",
            f"wait {max(1, round(exc.retry_after))} s and run doctor again",
        )
    except NotFoundError:
        return Check(
            HIGHLEVEL_AUTH,
            False,
            f"GHL_API_URL {url} does not look like HighLevel's API (404)",
            "leave GHL_API_URL unset for HighLevel's API",
        )
    except ServerError as exc:
        return Check(
            HIGHLEVEL_AUTH,
            False,
            f"HighLevel failed ({exc.status_code}: {_one_line(exc.message)})",
            "HighLevel is having trouble; run doctor again in a few minutes",
        )
    except HighLevelError as exc:
        return Check(
            HIGHLEVEL_AUTH,
            False,
            f"HighLevel answered {exc.status_code or 'oddly'}: {_one_line(exc.message)}",
            "check GHL_API_URL and GHL_LOCATION_ID",
        )
    total = f", {found.total} conversations" if found.total is not None else ""
    return Check(HIGHLEVEL_AUTH, True, f"reads conversations of location {location}{total}")


def _webhook_key_check(settings: Settings) -> Check:
    try:
        WebhookVerifier(settings.ghl_webhook_public_key)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        return Check(
            WEBHOOK_KEY,
            False,
            f"cannot load GHL_WEBHOOK_PUBLIC_KEY: {_one_line(exc)}",
            "set GHL_WEBHOOK_PUBLIC_KEY to HighLevel's Ed25519 public key (PEM), or leave it "
            "unset for HighLevel's published key",
        )
    published = settings.ghl_webhook_public_key.strip() == highlevel_webhook_key_pem().strip()
    whose = "HighLevel's published key" if published else "the key in GHL_WEBHOOK_PUBLIC_KEY"
    return Check(WEBHOOK_KEY, True, f"Ed25519 key loaded ({whose})")


async def _store_checks(settings: Settings) -> list[Check]:
    shown, existed = await asyncio.to_thread(_database_location, settings.database_url)
    if is_postgres_url(settings.database_url):
        fix = POSTGRES_FIX
    else:
        fix = f"{DATABASE_FIX} (sqlite:////absolute/path)"
    try:
        store = await open_store(settings.database_url)
    except StoreError as exc:
        return [Check(DATABASE, False, f"cannot open {shown}: {_one_line(exc)}", fix)]
    try:
        version = await store.schema_version()
        if version != LATEST_VERSION:
            return [
                Check(
                    DATABASE,
                    False,
                    f"{shown} has schema version {version}, this program needs {LATEST_VERSION}",
                    "run this ghl-bridge's serve once to migrate it, or point DATABASE_URL "
                    "elsewhere",
                )
            ]
        try:
            # The write `serve` makes at start-up and /healthz makes while it runs.
            await store.check_writable()
        except StoreError as exc:
            return [Check(DATABASE, False, f"cannot write to {shown} ({_one_line(exc)})", fix)]
        stamp = repr(time.time())
        await store.kv_set(DOCTOR_KV_KEY, stamp)
        if await store.kv_get(DOCTOR_KV_KEY) != stamp:
            return [Check(DATABASE, False, f"{shown} did not keep a test write", fix)]
        created = "" if existed else " (created just now: there was no database)"
        sharing = " (shared by every instance on it)" if store.shared else ""
        checks = [
            Check(DATABASE, True, f"{shown} writable, schema version {version}{created}{sharing}"),
            await _inbound_check(store, settings),
        ]
    except StoreError as exc:
        return [Check(DATABASE, False, f"{shown}: {_one_line(exc)}", fix)]
    finally:
        await store.close()
    return checks


async def _running_bridge_check(settings: Settings) -> Check | None:
    """What a `ghl-bridge serve` on HOST:PORT says of itself (a worker that keeps failing, a
    database that stopped taking writes, Socket Mode down); nothing to say when PORT is 0."""
    if settings.port == 0:
        return None
    host = "127.0.0.1" if settings.host in {"", "0.0.0.0", "::"} else settings.host  # noqa: S104
    url = f"http://{f'[{host}]' if ':' in host else host}:{settings.port}/healthz"
    try:
        async with httpx.AsyncClient(timeout=HEALTHZ_TIMEOUT_SECONDS) as http:
            response = await http.get(url)
    except httpx.ConnectError:
        return Check(RUNNING_BRIDGE, True, f"none answers on {url} (not running here)")
    except httpx.HTTPError as exc:
        return Check(
            RUNNING_BRIDGE,
            False,
            f"{url} did not answer: {_one_line(exc) if str(exc) else type(exc).__name__}",
            "read the log of ghl-bridge serve; restart it if it hangs",
        )
    try:
        body = response.json()
    except ValueError:
        body = None
    status = body.get("status") if isinstance(body, dict) else None
    if response.status_code == 200 and status == "ok":
        return Check(RUNNING_BRIDGE, True, f"{url} says ok")
    if response.status_code == 503 and status == "unavailable" and isinstance(body, dict):
        reason = _one_line(body.get("reason") or "no reason given")
        return Check(RUNNING_BRIDGE, False, f"{url} says: {reason}", _bridge_fix(reason))
    return Check(
        RUNNING_BRIDGE,
        False,
        f"something other than ghl-bridge answers on {url} (HTTP {response.status_code})",
        "stop it, or set PORT to a free port",
    )


def _bridge_fix(reason: str) -> str:
    if "database" in reason:
        return DATABASE_FIX
    if "Socket Mode" in reason:
        return "check SLACK_APP_TOKEN (above) and the network to Slack; the bridge reconnects"
    return "the log of ghl-bridge serve shows the first failure with its traceback"


def _database_location(database_url: str) -> tuple[str, bool]:
    """The database file as an absolute path (a PostgreSQL URL without its password), and
    whether it exists already (always, for PostgreSQL: the database must be there)."""
    if is_postgres_url(database_url):
        return redact_url(database_url), True
    path = parse_sqlite_url(database_url)
    if path == ":memory:":  # what parse_sqlite_url names an in-memory database
        return path, True
    return os.path.abspath(path), os.path.exists(path)


async def _inbound_check(store: Store, settings: Settings, now: float | None = None) -> Check:
    at = time.time() if now is None else now
    last_webhook = await store.last_inbound_at("webhook")
    last_polled = await store.last_inbound_at("poll")
    poll_success = await _kv_float(store, LAST_SUCCESS_KEY)
    if settings.ghl_poll_seconds:
        polling = f"polling every {settings.ghl_poll_seconds} s"
        if poll_success is not None:
            polling += f", last poll {describe_age(poll_success, at)}"
    else:
        polling = "polling off"
    if settings.ghl_poll_seconds == 0 and last_webhook is None:
        return Check(
            INBOUND,
            False,
            "no webhook has ever arrived and polling is off (GHL_POLL_SECONDS=0)",
            "nothing can bring customer replies in: set GHL_POLL_SECONDS (e.g. 30) or point "
            "HighLevel webhooks at https://YOUR-HOST/ghl/webhooks",
        )
    if last_webhook is None and last_polled is None:
        return Check(INBOUND, True, f"no inbound yet; {polling}")
    return Check(
        INBOUND,
        True,
        f"last webhook {_age_or_never(last_webhook, at)}, "
        f"last message by polling {_age_or_never(last_polled, at)}; {polling}",
    )


async def _kv_float(store: Store, key: str) -> float | None:
    raw = await store.kv_get(key)
    try:
        return float(raw) if raw else None
    except ValueError:
        return None


def _age_or_never(when: float | None, now: float) -> str:
    return "never" if when is None else describe_age(when, now)


def describe_age(when: float, now: float) -> str:
    """'12 s ago', '3 min ago', '5 h ago', '2 days ago' (and 'just now' within a second)."""
    seconds = max(0.0, now - when)
    if seconds < 1:
        return "just now"
    if seconds < 60:
        return f"{int(seconds)} s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 2 * 86_400:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86_400)} days ago"


def _one_line(value: object) -> str:
    text = " ".join(str(value).split())
    return text or type(value).__name__


# ----------------------------------------------------------------------------- manifest.yml


class ManifestError(ValueError):
    """manifest.yml has no bot scope list this reader understands."""


_KEY_LINE = re.compile(r"(?P<key>[A-Za-z0-9_.\-]+):(?:\s+(?P<value>.*))?$")
_SCOPE = re.compile(r"[a-z][a-z0-9_.:\-]*")
_SCOPES_PATH = ("oauth_config", "scopes", "bot")


def read_bot_scopes(text: str) -> tuple[str, ...]:
    """The `oauth_config.scopes.bot` list of a Slack app manifest.

    A small, strict reader of that one list instead of a YAML dependency: it follows the
    nesting of block mappings by indentation, accepts the list as `- scope` lines or as a
    flow list `[a, b]`, and raises ManifestError for anything else where the list should be.
    """
    path: list[tuple[int, str]] = []
    scopes: list[str] | None = None
    list_indent: int | None = None  # indent of `bot:` while its items are being read
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _without_comment(raw).rstrip()
        content = line.lstrip(" ")
        if not content or content in {"---", "..."}:
            continue
        indent = len(line) - len(content)
        if content.startswith("\t"):
            raise ManifestError(f"line {number}: tab in indentation")
        if list_indent is not None and scopes is not None:
            if indent >= list_indent and (content == "-" or content.startswith("- ")):
                scopes.append(_scope(content[1:], number))
                continue
            if indent > list_indent:
                raise ManifestError(f"line {number}: expected '- scope' in the bot scope list")
            list_indent = None
        if content.startswith("- "):
            # A mapping inside a list item: its keys sit two columns in.
            content, indent = content[2:].lstrip(" "), indent + 2
        match = _KEY_LINE.match(content)
        if match is None:
            continue  # text of a multi-line value, or a scalar list item elsewhere
        while path and path[-1][0] >= indent:
            path.pop()
        key, value = match["key"], (match["value"] or "").strip()
        if (*(k for _, k in path), key) != _SCOPES_PATH:
            if not value:
                path.append((indent, key))
            continue
        if scopes is not None:
            raise ManifestError(f"line {number}: a second oauth_config.scopes.bot")
        if value:
            scopes = _flow_list(value, number)
        else:
            scopes, list_indent = [], indent
            path.append((indent, key))
    if not scopes:
        raise ManifestError("no oauth_config.scopes.bot list (or an empty one)")
    return tuple(scopes)


def _without_comment(line: str) -> str:
    # YAML comments start with '#' at the start or after a space; '#' inside a word or a
    # quoted "#1f2937" is not one.
    for index, char in enumerate(line):
        if char == "#" and (index == 0 or line[index - 1] in " \t"):
            return line[:index]
    return line


def _scope(raw: str, number: int) -> str:
    value = raw.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    if not _SCOPE.fullmatch(value):
        raise ManifestError(f"line {number}: {raw.strip()!r} is not a Slack scope")
    return value


def _flow_list(value: str, number: int) -> list[str]:
    if not (value.startswith("[") and value.endswith("]")):
        raise ManifestError(f"line {number}: the bot scopes must be a list")
    inner = value[1:-1].strip()
    return [_scope(part, number) for part in inner.split(",")] if inner else []
