"""SlackWorkspaces: the Slack workspaces the bridge serves, each with its own bot token.

One workspace by SLACK_BOT_TOKEN, any number installed through Slack's OAuth, or both. Every
part that talks to Slack outside a Slack request (posts, updates, notices, pacing, `doctor`)
asks here for the workspace's poster or token; Bolt's requests are authorized here too
(`WorkspaceAuthorize`), so a workspace's token is read, and refreshed, in one place.

With token rotation a bot token expires (Slack: after 12 hours) and is refreshed with its
refresh token, which works once: one instance at a time refreshes a workspace's token, under
a lease on its row in the shared database; the others wait for the new token. A token is
refreshed ahead of expiry, when less than min(300 s, a quarter of its lifetime) is left.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import SecretStr
from slack_sdk.errors import SlackApiError
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.web.async_client import AsyncWebClient

from bot.posting.errors import WorkspaceGone
from bot.posting.poster import SlackPoster
from bot.slack_install.installation_store import BridgeInstallationStore
from storage import ConflictError, Store, StoreError

log = logging.getLogger(__name__)

REFRESH_MARGIN_SECONDS = 300.0
REFRESH_LEASE_SECONDS = 30.0
# How long a token read from the database is used before it is read again: another instance
# may have refreshed it, or the workspace may have uninstalled the app.
RECHECK_SECONDS = 5.0
# While another instance refreshes a token, it is read again this often.
WAIT_POLL_SECONDS = 0.1
# Slack's answers that mean the refresh token will never work again.
_REFRESH_REFUSED = frozenset(
    {"invalid_refresh_token", "invalid_grant_type", "token_revoked", "invalid_client_id"}
)

MakePoster = Callable[[AsyncWebClient, str], SlackPoster]


@dataclass(slots=True)
class _Held:
    """A workspace's bot token as this instance last read it."""

    bot: Bot
    version: int
    read_at: float
    lifetime: float | None


@dataclass(frozen=True, slots=True)
class SlackOAuthApp:
    """What refreshing a token takes: the app's credentials, and a client without a token."""

    client_id: str
    client_secret: SecretStr
    client: AsyncWebClient


class SlackWorkspaces:
    """Each workspace's token and poster (one poster, with its own client, per workspace)."""

    def __init__(
        self,
        *,
        make_poster: MakePoster,
        static_client: AsyncWebClient | None = None,
        installs: BridgeInstallationStore | None = None,
        store: Store | None = None,
        app: SlackOAuthApp | None = None,
        clock: Callable[[], float] = time.time,
        refresh_margin: float = REFRESH_MARGIN_SECONDS,
    ) -> None:
        if static_client is None and installs is None:
            raise ValueError("a bot token or an installation store is needed")
        self._make_poster = make_poster
        self._static = static_client
        self._static_team: str | None = None
        self._installs = installs
        self._store = store
        self._app = app
        self._clock = clock
        self._margin = refresh_margin
        self._held: dict[str, _Held] = {}
        self._posters: dict[str, SlackPoster] = {}
        self._static_poster: SlackPoster | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._enterprises: dict[str, str | None] = {}

    # ------------------------------------------------------------------ posters and tokens

    async def poster(self, team_id: str | None) -> SlackPoster:
        """The poster of `team_id`'s workspace, with its current token; none or "" is the
        default one (SLACK_BOT_TOKEN's, else the only one installed). WorkspaceGone when the
        app is not installed there (any more)."""
        if self._installs is None or not team_id:
            if self._static is not None:
                return self._static_poster_()
            team_id = await self.default_team()
            if team_id is None:
                raise WorkspaceGone("")
        if self._static is not None and team_id == await self._static_team_id():
            return self._static_poster_()
        token = await self._install_token(team_id)
        poster = self._posters.get(team_id)
        if poster is None:
            client = self._new_client(token)
            poster = self._posters[team_id] = self._make_poster(client, team_id)
            poster.current_token = functools.partial(self._install_token, team_id)
        else:
            poster.client.token = token
        return poster

    async def token(self, team_id: str) -> str:
        """`team_id`'s bot token now (refreshed first when it is about to expire)."""
        if self._installs is None or (
            self._static is not None and team_id == await self._static_team_id()
        ):
            return self._static_token()
        return await self._install_token(team_id)

    async def bot(self, team_id: str, enterprise_id: str | None = None) -> Bot | None:
        """The installed bot of `team_id` with a current token, or None (not installed)."""
        if self._installs is None:
            return None
        if enterprise_id is not None:
            self._enterprises[team_id] = enterprise_id
        try:
            await self._install_token(team_id)
        except WorkspaceGone:
            return None
        held = self._held.get(team_id)
        return held.bot if held is not None else None

    async def static_team(self) -> str | None:
        """SLACK_BOT_TOKEN's workspace (auth.test, asked once), or None without one."""
        return await self._static_team_id() if self._static is not None else None

    async def default_team(self) -> str | None:
        """SLACK_BOT_TOKEN's workspace, else the only workspace installed, else None."""
        if self._static is not None:
            return await self._static_team_id()
        if self._store is None:
            return None
        rows = [row for row in await self._store.list_slack_workspaces() if row.has_bot]
        if len(rows) == 1 and rows[0].team_id:
            return rows[0].team_id
        return None

    def forget(self, team_id: str) -> None:
        """Drop what this instance holds of `team_id` (it uninstalled the app)."""
        self._held.pop(team_id, None)
        self._posters.pop(team_id, None)
        self._enterprises.pop(team_id, None)

    # ------------------------------------------------------------------ SLACK_BOT_TOKEN

    def _static_token(self) -> str:
        if self._static is None or self._static.token is None:
            raise WorkspaceGone("")
        return self._static.token

    def _static_poster_(self) -> SlackPoster:
        assert self._static is not None  # noqa: S101 - callers check
        if self._static_poster is None:
            self._static_poster = self._make_poster(self._static, self._static_team or "")
        return self._static_poster

    async def _static_team_id(self) -> str:
        if self._static_team is None:
            # The poster asks auth.test once and keeps the answer.
            self._static_team = await self._static_poster_().team_id()
        return self._static_team

    # ------------------------------------------------------------------ installed workspaces

    def _new_client(self, token: str) -> AsyncWebClient:
        template = self._app.client if self._app is not None else self._static
        assert template is not None  # noqa: S101 - an install always comes with the app
        return AsyncWebClient(
            token=token,
            base_url=template.base_url,
            timeout=template.timeout,
            session=template.session,
            retry_handlers=[],
        )

    async def _install_token(self, team_id: str) -> str:
        held = self._held.get(team_id)
        now = self._clock()
        if held is not None and now - held.read_at < RECHECK_SECONDS and self._fresh(held, now):
            return held.bot.bot_token
        lock = self._locks.setdefault(team_id, asyncio.Lock())
        async with lock:
            held = await self._read(team_id)
            if held is None:
                self.forget(team_id)
                raise WorkspaceGone(team_id)
            if self._fresh(held, self._clock()):
                return held.bot.bot_token
            return await self._refresh(team_id, held)

    def _fresh(self, held: _Held, now: float) -> bool:
        expires_at = held.bot.bot_token_expires_at
        if expires_at is None:
            return True
        lifetime = held.lifetime if held.lifetime is not None else 4 * self._margin
        return float(expires_at) - now > min(self._margin, lifetime / 4)

    async def _read(self, team_id: str) -> _Held | None:
        assert self._installs is not None  # noqa: S101 - install mode only
        enterprise_id = await self._enterprise_of(team_id)
        found = await self._installs.async_find_bot_state(
            enterprise_id=enterprise_id, team_id=team_id
        )
        if found is None:
            return None
        expires_at = found.bot.bot_token_expires_at
        # The token's lifetime runs from when it was stored (its install, or its refresh).
        lifetime = None if expires_at is None else max(0.0, float(expires_at) - found.stored_at)
        held = _Held(found.bot, found.version, self._clock(), lifetime)
        self._held[team_id] = held
        return held

    async def _enterprise_of(self, team_id: str) -> str | None:
        if team_id in self._enterprises:
            return self._enterprises[team_id]
        if self._store is not None:
            for row in await self._store.list_slack_workspaces():
                if row.team_id:
                    self._enterprises[row.team_id] = row.enterprise_id
        return self._enterprises.get(team_id)

    async def _refresh(self, team_id: str, held: _Held) -> str:
        """A new token for `team_id`: refreshed here under the lease, or by another instance."""
        assert self._installs is not None  # noqa: S101 - install mode only
        deadline = self._clock() + REFRESH_LEASE_SECONDS
        while True:
            if await self._installs.async_begin_bot_refresh(
                held.bot, seen_version=held.version, lease_seconds=REFRESH_LEASE_SECONDS
            ):
                token = await self._refresh_leased(team_id, held)
                if token is not None:
                    return token
            else:
                await asyncio.sleep(WAIT_POLL_SECONDS)
            reread = await self._read(team_id)
            if reread is None:
                self.forget(team_id)
                raise WorkspaceGone(team_id)
            held = reread
            if self._fresh(held, self._clock()):
                return held.bot.bot_token
            if self._clock() > deadline:
                # Nobody got a new one: the current token still works until it expires.
                expires_at = held.bot.bot_token_expires_at
                if expires_at is not None and float(expires_at) > self._clock():
                    return held.bot.bot_token
                raise WorkspaceGone(team_id, "token_expired")

    async def _refresh_leased(self, team_id: str, held: _Held) -> str | None:
        """Under this instance's lease: ask Slack for a new token and store it. None when the
        lease was lost meanwhile (read the bot again)."""
        assert self._installs is not None and self._app is not None  # noqa: S101
        bot = held.bot
        if bot.bot_refresh_token is None:
            await self._installs.async_abandon_bot_refresh(bot)
            raise WorkspaceGone(team_id, "token_expired")
        try:
            answer = await self._app.client.oauth_v2_access(
                client_id=self._app.client_id,
                client_secret=self._app.client_secret.get_secret_value(),
                grant_type="refresh_token",
                refresh_token=bot.bot_refresh_token,
            )
        except SlackApiError as exc:
            await self._installs.async_abandon_bot_refresh(bot)
            error = str(exc.response.get("error") or "unknown_error")
            if error in _REFRESH_REFUSED:
                log.warning(
                    "Slack workspace %s: its bot token cannot be refreshed (%s)", team_id, error
                )
                raise WorkspaceGone(team_id, error) from None
            raise WorkspaceGone(team_id, f"token refresh failed: {error}") from None
        except Exception:
            await self._installs.async_abandon_bot_refresh(bot)
            raise
        now = self._clock()
        expires_in = answer.get("expires_in")
        refreshed = Bot(
            app_id=bot.app_id,
            enterprise_id=bot.enterprise_id,
            enterprise_name=bot.enterprise_name,
            team_id=bot.team_id,
            team_name=bot.team_name,
            bot_token=str(answer["access_token"]),
            bot_id=bot.bot_id,
            bot_user_id=bot.bot_user_id,
            bot_scopes=bot.bot_scopes,
            bot_refresh_token=str(answer.get("refresh_token") or bot.bot_refresh_token),
            bot_token_expires_at=int(now + int(expires_in)) if expires_in is not None else None,
            is_enterprise_install=bot.is_enterprise_install,
            installed_at=bot.installed_at,
        )
        try:
            version = await self._installs.async_finish_bot_refresh(refreshed)
        except ConflictError:
            log.info("Slack workspace %s: its token was replaced during a refresh", team_id)
            return None
        except StoreError as exc:
            # The old refresh token is spent: this instance goes on with the new token (kept
            # in memory); the others find the lease run out and the workspace needing a new
            # install if the database stays down.
            log.error("Slack workspace %s: could not store its refreshed token: %s", team_id, exc)
            version = held.version
        lifetime = float(expires_in) if expires_in is not None else None
        self._held[team_id] = _Held(refreshed, version, now, lifetime)
        log.info("Slack workspace %s: bot token refreshed", team_id)
        return refreshed.bot_token
