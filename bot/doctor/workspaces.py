"""`ghl-bridge doctor` for a bridge that installs into workspaces: one line per workspace.

Each installed workspace gets one auth.test with its stored bot token. Like the sub-account
checks, the doctor never refreshes a token (a refresh spends the single-use refresh token);
one about to expire is reported with its expiry ("serve refreshes it").
"""

from __future__ import annotations

import time
from collections.abc import Callable

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.doctor.base import NETWORK_TIMEOUT_SECONDS, Check, _one_line
from bot.settings import Settings
from bot.slack_install.flow import BOT_SCOPES, INSTALL_PATH
from bot.slack_install.installation_store import BridgeInstallationStore
from bot.tenancy.crypto import TokenCipher, TokenDecryptError, check_key
from storage import SlackWorkspaceRow, Store, StoreError, open_store

SLACK_WORKSPACE = "Slack workspace"
SLACK_INSTALL = "Slack install"
# A token with less left than this is not used by the doctor (serve refreshes it first).
NEAR_EXPIRY_SECONDS = 60.0


async def workspace_checks(
    settings: Settings, *, clock: Callable[[], float] = time.time
) -> list[Check]:
    """The install settings and every installed workspace; nothing for one SLACK_BOT_TOKEN."""
    if not settings.slack_oauth_enabled:
        return []
    key = settings.token_encryption_key
    try:
        check_key(key.get_secret_value() if key is not None else "")
    except ValueError as exc:
        return [
            Check(
                SLACK_INSTALL,
                False,
                f"TOKEN_ENCRYPTION_KEY is not usable: {exc}",
                "set it to the key `ghl-bridge keygen` printed when the tokens were first stored",
            )
        ]
    assert key is not None  # noqa: S101 - check_key refused an empty one
    install_url = f"{settings.public_url}{INSTALL_PATH}"
    checks = [
        Check(
            SLACK_INSTALL,
            True,
            f"client {settings.slack_client_id}, redirect URL {settings.slack_redirect_uri} (add "
            f"it to the app's Redirect URLs), install at {install_url}",
        )
    ]
    try:
        store = await open_store(settings.database_url)
    except StoreError:
        return checks  # the database check says why
    try:
        checks += await _each_workspace(settings, store, TokenCipher(key), clock(), install_url)
    except StoreError as exc:
        checks.append(Check(SLACK_WORKSPACE, False, f"cannot read the installs: {exc}", None))
    finally:
        await store.close()
    return checks


async def _each_workspace(
    settings: Settings, store: Store, cipher: TokenCipher, now: float, install_url: str
) -> list[Check]:
    rows = [row for row in await store.list_slack_workspaces() if row.has_bot and row.team_id]
    if not rows:
        return [
            Check(
                SLACK_WORKSPACE,
                True,
                f"none installed yet: open {install_url} to install the app into one",
            )
        ]
    installs = BridgeInstallationStore(store, cipher)
    return [await _one(settings, installs, row, now, install_url) for row in rows]


async def _one(
    settings: Settings,
    installs: BridgeInstallationStore,
    row: SlackWorkspaceRow,
    now: float,
    install_url: str,
) -> Check:
    name = f"{row.team_name or 'unnamed'} ({row.team_id})"
    try:
        bot = await installs.async_find_bot(enterprise_id=row.enterprise_id, team_id=row.team_id)
    except TokenDecryptError:
        return Check(
            SLACK_WORKSPACE,
            False,
            f"{name}: its stored token cannot be decrypted with TOKEN_ENCRYPTION_KEY",
            "set TOKEN_ENCRYPTION_KEY to the key the tokens were stored with, or install the "
            f"app again at {install_url}",
        )
    if bot is None:
        return Check(SLACK_WORKSPACE, False, f"{name}: no bot token", f"install at {install_url}")
    expires = bot.bot_token_expires_at
    if expires is not None and float(expires) - now < NEAR_EXPIRY_SECONDS:
        return Check(
            SLACK_WORKSPACE,
            True,
            f"{name}: its token expires within a minute (serve refreshes it; not used here)",
        )
    client = AsyncWebClient(
        token=bot.bot_token,
        base_url=settings.slack_api_url,
        timeout=int(NETWORK_TIMEOUT_SECONDS),
        retry_handlers=[],
    )
    try:
        auth = await client.auth_test()
    except SlackApiError as exc:
        error = str(exc.response.get("error") or f"HTTP {exc.response.status_code}")
        return Check(
            SLACK_WORKSPACE,
            False,
            f"{name}: Slack refused its token ({error})",
            f"install the app into it again at {install_url}",
        )
    except (SlackClientError, aiohttp.ClientError, TimeoutError, OSError) as exc:
        return Check(
            SLACK_WORKSPACE,
            False,
            f"{name}: cannot reach SLACK_API_URL {settings.slack_api_url}: {_one_line(exc)}",
            "check the network and run doctor again",
        )
    missing = [scope for scope in BOT_SCOPES if scope not in (bot.bot_scopes or [])]
    rotation = "" if expires is None else f", token refreshed by serve within {_left(expires, now)}"
    if missing:
        return Check(
            SLACK_WORKSPACE,
            False,
            f"{name}: works as @{auth.get('user')}, but lacks {', '.join(missing)}",
            f"install the app into it again at {install_url} to grant them",
        )
    return Check(SLACK_WORKSPACE, True, f"{name}: works as @{auth.get('user')}{rotation}")


def _left(expires_at: float, now: float) -> str:
    seconds = max(0.0, float(expires_at) - now)
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    return f"{int(seconds // 3600)} h"
