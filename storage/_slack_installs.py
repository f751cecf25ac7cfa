"""Slack installations (Bolt's installation store) and OAuth states (Bolt's state store).

Tokens are stored as the caller gives them, ciphertext (bot/slack_install/): the store never
sees one in plain text. Each workspace (or Enterprise Grid org, for an org-wide install) has
one row with its latest bot and installer, and each installing user a row of their own. With
token rotation a bot token is refreshed by one instance at a time, under a lease on the
workspace's row (`begin_slack_token_refresh`), committed before `finish_slack_token_refresh`
returns. Every write is one race-free statement on PostgreSQL, so several instances may call
any of them at once.
"""

from __future__ import annotations

from storage._base import Conn, Row, StoreBase, _all, _one
from storage._errors import ConflictError, NotFoundError
from storage._records import SlackInstallation, SlackInstallationRecord, SlackWorkspaceRow
from storage._slack_installs_sql import (
    ABANDON_REFRESH,
    BEGIN_REFRESH,
    CLEAR_BOT,
    CLEAR_INSTALLER,
    DELETE_BOT,
    DELETE_BOT_ONLY_ROW,
    DELETE_INSTALLATION,
    DELETE_INSTALLER_ONLY_ROW,
    DELETE_USER_ROWS,
    DELETE_WORKSPACE,
    FIND,
    FINISH_REFRESH,
    REFRESH_STATE,
    SAVE_BOT,
    SAVE_INSTALLATION,
    SAVE_WORKSPACE_INSTALLATION,
    WORKSPACE,
    WORKSPACES,
    installation_record,
    key,
    save_params,
    workspace_keys,
    workspace_row,
)


def _name(enterprise_id: str | None, team_id: str | None) -> str:
    return f"Slack installation (enterprise {enterprise_id or '-'}, team {team_id or '-'})"


class SlackInstallsMixin(StoreBase):
    """Slack installations, their bot token refresh leases, and OAuth states."""

    # ---------------------------------------------------------------- installations

    async def save_slack_installation(self, installation: SlackInstallation) -> None:
        """Store an install as the workspace's latest, and as its installing user's.

        With a bot token it replaces the workspace's bot (token_version + 1; a refresh in
        progress can no longer finish); without one (a user-only install) the bot stays.
        """
        params = save_params(installation, self._clock())
        sql = SAVE_INSTALLATION if installation.user_id else SAVE_WORKSPACE_INSTALLATION
        # One upsert of both rows: race-free without the serial lock.
        await self._single_write_op(lambda db: db.execute(sql, params))

    async def save_slack_bot(self, installation: SlackInstallation) -> None:
        """Store only the bot of `installation` (its user fields are ignored) as the
        workspace's; a workspace without an install gets a row holding just the bot."""
        if installation.bot_token is None:
            raise ValueError("a bot is saved with its bot token")
        params = save_params(installation, self._clock())
        await self._single_write_op(lambda db: db.execute(SAVE_BOT, params))

    async def find_slack_installation(
        self,
        enterprise_id: str | None,
        team_id: str | None,
        *,
        user_id: str | None = None,
        is_enterprise_install: bool = False,
    ) -> SlackInstallationRecord | None:
        """The workspace's latest install, or `user_id`'s own; either with the workspace's
        latest bot. None when there is none (a workspace with only a bot has no install)."""
        params = {
            **workspace_keys(enterprise_id, team_id, is_enterprise_install=is_enterprise_install),
            "installer_key": key(user_id),
        }
        rows = await self._read_op(lambda db: _all(db, FIND, params))
        by_key = {row["installer_key"]: row for row in rows}
        row, workspace = by_key.get(key(user_id)), by_key.get(WORKSPACE)
        if row is None or row["user_id"] is None:
            return None
        return installation_record(row, workspace)

    async def find_slack_bot(
        self, enterprise_id: str | None, team_id: str | None, *, is_enterprise_install: bool = False
    ) -> SlackInstallationRecord | None:
        """The workspace's latest bot (the record's user fields are its latest installer's),
        or None when it has no bot token."""
        params = {
            **workspace_keys(enterprise_id, team_id, is_enterprise_install=is_enterprise_install),
            "installer_key": WORKSPACE,
        }
        row = await self._read_op(lambda db: _one(db, FIND, params))
        if row is None or row["bot_token"] is None:
            return None
        return installation_record(row)

    async def delete_slack_bot(self, enterprise_id: str | None, team_id: str | None) -> None:
        """Forget the workspace's bot (its tokens); its installers' user tokens stay."""
        params = {**workspace_keys(enterprise_id, team_id), "now": self._clock()}

        async def delete(db: Conn) -> None:
            if db.dialect == "postgresql":
                await db.execute(DELETE_BOT, params)
                return
            await db.execute(DELETE_BOT_ONLY_ROW, params)
            await db.execute(CLEAR_BOT, params)

        await self._single_write_op(delete)

    async def delete_slack_installation(
        self, enterprise_id: str | None, team_id: str | None, *, user_id: str | None = None
    ) -> None:
        """Forget `user_id`'s install (or every installer's, when None) with its user tokens;
        the workspace's bot stays."""
        params = {
            **workspace_keys(enterprise_id, team_id),
            "installer_key": key(user_id),
            "now": self._clock(),
        }

        async def delete(db: Conn) -> None:
            if db.dialect == "postgresql":
                await db.execute(DELETE_INSTALLATION, params)
                return
            await db.execute(DELETE_USER_ROWS, params)
            await db.execute(DELETE_INSTALLER_ONLY_ROW, params)
            await db.execute(CLEAR_INSTALLER, params)

        await self._single_write_op(delete)

    async def delete_slack_workspace(self, enterprise_id: str | None, team_id: str | None) -> int:
        """Forget everything of the workspace (bot, installers, tokens) at once; rows deleted.
        What an uninstall or a revocation of the bot token does."""
        params = workspace_keys(enterprise_id, team_id)
        rows = await self._single_write_op(lambda db: _all(db, DELETE_WORKSPACE, params))
        return len(rows)

    async def list_slack_workspaces(self) -> list[SlackWorkspaceRow]:
        """Every workspace (or org, for an org-wide install) with a stored install or bot, by
        team name (case-insensitive; unnamed ones last), then team id: sorted here, so that
        both backends give the same order. Tokens are not read."""
        rows = await self._read_op(lambda db: _all(db, WORKSPACES))
        workspaces = [workspace_row(row) for row in rows]
        return sorted(
            workspaces,
            key=lambda w: (
                w.team_name is None,
                (w.team_name or "").casefold(),
                w.team_name or "",
                w.team_id or "",
                w.enterprise_id or "",
            ),
        )

    # ---------------------------------------------------------------- bot token refresh

    async def begin_slack_token_refresh(
        self,
        enterprise_id: str | None,
        team_id: str | None,
        *,
        seen_version: int,
        lease_seconds: float,
    ) -> bool:
        """Take the workspace bot's refresh lease for `lease_seconds`, as this instance.

        True: the caller refreshes now (the bot is there, its token_version is still
        `seen_version`, and no live lease is held, this instance's own included). False:
        someone refreshed it already, or is refreshing it: find the bot again.
        """
        if not lease_seconds > 0:
            raise ValueError("a refresh lease lasts a positive number of seconds")
        now = self._clock()
        params = {
            **workspace_keys(enterprise_id, team_id),
            "seen": int(seen_version),
            "owner": self._instance_id,
            "now": now,
            "until": now + float(lease_seconds),
        }
        # One compare-and-set UPDATE: of two instances at once, the second waits for the
        # first's row and then finds the lease live.
        return await self._single_write_op(lambda db: _one(db, BEGIN_REFRESH, params)) is not None

    async def finish_slack_token_refresh(
        self,
        enterprise_id: str | None,
        team_id: str | None,
        *,
        bot_token: str,
        bot_refresh_token: str | None,
        bot_token_expires_at: float | None,
    ) -> int:
        """Store the refreshed bot tokens (ciphertext) and end the lease; the new
        token_version. Committed before it returns.

        ConflictError when this instance no longer holds the lease (the bot was saved anew,
        deleted, or another took the expired lease over): nothing is stored, find the bot
        again. NotFoundError when the workspace has no row at all.
        """
        params = {
            **workspace_keys(enterprise_id, team_id),
            "owner": self._instance_id,
            "bot_token": bot_token,
            "bot_refresh_token": bot_refresh_token,
            "bot_token_expires_at": (
                None if bot_token_expires_at is None else float(bot_token_expires_at)
            ),
            "now": self._clock(),
        }
        state_params = workspace_keys(enterprise_id, team_id)

        async def finish(db: Conn) -> tuple[Row | None, Row | None]:
            row = await _one(db, FINISH_REFRESH, params)
            if row is not None:
                return row, None
            return None, await _one(db, REFRESH_STATE, state_params)

        # Not grouped: committed when this returns, as the caller uses the new token then.
        row, state = await self._single_write_op(finish)
        if row is not None:
            return int(row["token_version"])
        name = _name(enterprise_id, team_id)
        if state is None:
            raise NotFoundError(f"no {name}")
        if not state["has_bot"]:
            raise ConflictError(f"{name}: its bot was deleted while its token was refreshed")
        raise ConflictError(f"{name}: this instance no longer holds its refresh lease")

    async def abandon_slack_token_refresh(
        self, enterprise_id: str | None, team_id: str | None
    ) -> None:
        """End this instance's refresh lease without a new token (the refresh failed)."""
        params = {**workspace_keys(enterprise_id, team_id), "owner": self._instance_id}
        await self._single_write_op(lambda db: db.execute(ABANDON_REFRESH, params))

    # ---------------------------------------------------------------- OAuth states

    async def issue_oauth_state(self, state: str, expires_at: float) -> None:
        """Remember a state handed to an install until `expires_at`.

        ConflictError if it is already issued (states are random: a repeat is a bug).
        """
        params = {"state": state, "expires_at": float(expires_at)}
        row = await self._single_write_op(
            lambda db: _one(
                db,
                "INSERT INTO slack_oauth_states (state, expires_at) VALUES (:state, :expires_at)"
                " ON CONFLICT (state) DO NOTHING RETURNING state",
                params,
            )
        )
        if row is None:
            raise ConflictError("this OAuth state was issued already")

    async def consume_oauth_state(self, state: str) -> bool:
        """True once for a state issued and not expired; it is gone afterwards (any call:
        of two at once, one deletes it and the other finds nothing)."""
        now = self._clock()
        row = await self._single_write_op(
            lambda db: _one(
                db, "DELETE FROM slack_oauth_states WHERE state = ? RETURNING expires_at", (state,)
            )
        )
        return row is not None and float(row["expires_at"]) > now

    async def purge_expired_oauth_states(self, now: float | None = None) -> int:
        """Delete the states expired by `now` (default: the clock's); returns how many."""
        when = self._clock() if now is None else now
        rows = await self._single_write_op(
            lambda db: _all(
                db, "DELETE FROM slack_oauth_states WHERE expires_at <= ? RETURNING 1", (when,)
            )
        )
        return len(rows)
