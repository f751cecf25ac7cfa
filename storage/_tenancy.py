"""Tenancy: the HighLevel locations (sub-accounts) the bridge works for, the agency companies
whose tokens connect them, and the Slack channels linked to each.

Tokens are stored as the caller gives them, ciphertext (bot/tenancy/crypto.py): the store
never sees one in plain text. HighLevel's refresh tokens are single-use, so one instance at a
time refreshes a row's tokens, under a lease on the row (`begin_token_refresh`), and the new
ones are committed before `finish_token_refresh` returns, that is before the caller uses them.
Every write here is one race-free statement on PostgreSQL (a compare-and-set UPDATE, an
upsert), so several instances may call any of them at once.
"""

from __future__ import annotations

from storage._base import Conn, Row, StoreBase, _all, _one, _required
from storage._errors import ConflictError, NotFoundError
from storage._records import (
    ChannelLink,
    CompanyRecord,
    ConnectionStatus,
    LocationAuth,
    LocationRecord,
    ReleasedWorkspace,
    TokenScope,
)
from storage._tenancy_sql import (
    CLAIM_DISCONNECT_NOTICE,
    CLAIM_LOCATION,
    DISCONNECT_COMPANY,
    DISCONNECT_COMPANY_AND_LOCATIONS,
    DISCONNECT_COMPANY_LOCATIONS,
    DISCONNECT_LOCATION,
    LINK_CHANNEL,
    LOCATION_AUTHS,
    NOTE_SEEN,
    RELEASE_INBOXES,
    RELEASE_LINKS,
    RELEASE_LOCATIONS,
    SAVE_COMPANY,
    SAVE_LOCATION,
    SCOPES,
    STATUSES,
    abandon_refresh_sql,
    begin_refresh_sql,
    channel_link,
    company_record,
    finish_refresh_sql,
    location_record,
    refresh_state_sql,
)


def _scope(scope: str) -> str:
    if scope not in SCOPES:
        raise ValueError(f"unknown token scope {scope!r}")
    return scope


def _optional_float(value: float | None) -> float | None:
    return None if value is None else float(value)


class TenancyMixin(StoreBase):
    """Locations, companies, their tokens and refresh leases, and Slack channel links."""

    # ---------------------------------------------------------------- locations

    async def save_location(
        self,
        location_id: str,
        *,
        auth: LocationAuth,
        name: str | None = None,
        company_id: str | None = None,
        access_token: str | None = None,
        refresh_token: str | None = None,
        expires_at: float | None = None,
    ) -> LocationRecord:
        """Add or reconnect a location: connected, with no disconnection to tell of.

        A token given replaces the stored ones (token_version + 1; a refresh in progress can
        no longer finish); without one they stay, unless `auth` changed. A name, company or
        inbox not given keeps the stored one.
        """
        if auth not in LOCATION_AUTHS:
            raise ValueError(f"unknown location auth {auth!r}")
        if auth == "pit" and (access_token is not None or refresh_token is not None):
            raise ValueError("a location on the private integration token stores no token")
        if access_token is None and refresh_token is not None:
            raise ValueError("a refresh token comes with an access token")
        now = self._clock()
        given = access_token is not None
        params = {
            "location_id": location_id,
            "name": name,
            "company_id": company_id,
            "auth": auth,
            "access_token": access_token,
            "refresh_token": refresh_token,
            "expires_at": _optional_float(expires_at) if given else None,
            "obtained_at": now if given else None,
            "token_version": 1 if given else 0,
            "now": now,
        }
        # One upsert: race-free without the serial lock.
        row = await self._single_write_op(lambda db: _one(db, SAVE_LOCATION, params))
        return location_record(_required(row))

    async def get_location(self, location_id: str) -> LocationRecord | None:
        row = await self._read_op(
            lambda db: _one(db, "SELECT * FROM ghl_locations WHERE location_id = ?", (location_id,))
        )
        return None if row is None else location_record(row)

    async def list_locations(
        self, *, status: ConnectionStatus | None = None
    ) -> list[LocationRecord]:
        """Every location (or those of `status`), by name (case-insensitive; unnamed ones
        last), then id: sorted here, so that both backends give the same order."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"unknown location status {status!r}")
        rows = await self._read_op(
            lambda db: _all(
                db,
                "SELECT * FROM ghl_locations WHERE (CAST(:status AS TEXT) IS NULL"
                " OR status = :status)",
                {"status": status},
            )
        )
        records = [location_record(row) for row in rows]
        return sorted(
            records,
            key=lambda r: (r.name is None, (r.name or "").casefold(), r.name or "", r.location_id),
        )

    async def set_location_name(self, location_id: str, name: str) -> None:
        """NotFoundError for a location the store does not know."""
        await self._update_location(
            location_id,
            "UPDATE ghl_locations SET name = :name, updated_at = :now"
            " WHERE location_id = :key RETURNING location_id",
            {"name": name},
        )

    async def set_location_inbox(self, location_id: str, team_id: str, channel_id: str) -> None:
        """New conversations of the location open their threads in this channel.

        NotFoundError for a location the store does not know.
        """
        await self._update_location(
            location_id,
            "UPDATE ghl_locations SET inbox_team_id = :team_id, inbox_channel_id = :channel_id,"
            " updated_at = :now WHERE location_id = :key RETURNING location_id",
            {"team_id": team_id, "channel_id": channel_id},
        )

    async def set_location_email_from(self, location_id: str, email_from: str | None) -> None:
        """The default From address of the location's emails; None clears it.

        NotFoundError for a location the store does not know.
        """
        await self._update_location(
            location_id,
            "UPDATE ghl_locations SET email_from = :email_from, updated_at = :now"
            " WHERE location_id = :key RETURNING location_id",
            {"email_from": email_from},
        )

    async def _update_location(
        self, location_id: str, sql: str, values: dict[str, str | None]
    ) -> None:
        params = {**values, "key": location_id, "now": self._clock()}
        row = await self._single_write_op(lambda db: _one(db, sql, params))
        if row is None:
            raise NotFoundError(f"no location {location_id}")

    async def note_location_seen(
        self,
        location_id: str,
        *,
        webhook_at: float | None = None,
        poll_at: float | None = None,
    ) -> None:
        """A webhook of the location arrived, or it was polled (for status); never moves a
        mark back. An unknown location, or neither time given, changes nothing."""
        if webhook_at is None and poll_at is None:
            return
        params = {
            "key": location_id,
            "webhook_at": _optional_float(webhook_at),
            "poll_at": _optional_float(poll_at),
        }
        # Made with each webhook: it may share its transaction with the webhook's own writes.
        await self._grouped_write_op(lambda db: db.execute(NOTE_SEEN, params))

    async def disconnect_location(self, location_id: str, reason: str) -> bool:
        """Mark a connected location disconnected and forget its tokens.

        True only for the one call (of any instance) that moved it from connected.
        """
        params = {"key": location_id, "reason": reason, "now": self._clock()}
        row = await self._single_write_op(lambda db: _one(db, DISCONNECT_LOCATION, params))
        return row is not None

    async def claim_disconnect_notice(self, location_id: str) -> bool:
        """True once per disconnection, for the one caller (of any instance) that tells the
        linked channels; False while connected, or once claimed."""
        row = await self._single_write_op(
            lambda db: _one(db, CLAIM_DISCONNECT_NOTICE, {"key": location_id})
        )
        return row is not None

    # ---------------------------------------------------------------- Slack workspaces

    async def claim_location(self, location_id: str, team_id: str) -> str | None:
        """The location belongs to Slack workspace `team_id` from now on, if it belonged to
        none; its owner after the call (`team_id`, or the one that had it already). None
        for a location the store does not know."""
        if not team_id:
            raise ValueError("a location is claimed by a Slack team id")
        params = {"key": location_id, "team_id": team_id}
        # One compare-and-set UPDATE: of instances claiming at once, one team wins.
        row = await self._single_write_op(lambda db: _one(db, CLAIM_LOCATION, params))
        return None if row is None else str(row["slack_team_id"])

    async def release_slack_workspace(self, team_id: str) -> ReleasedWorkspace:
        """Forget Slack workspace `team_id` in the routing, all at once: the locations it owned
        belong to none, its channel links are deleted, and locations whose inbox was in it
        have none. Threads and messages are kept."""
        params = {"team_id": team_id}

        async def release(db: Conn) -> ReleasedWorkspace:
            locations = await _all(db, RELEASE_LOCATIONS, params)
            links = await _all(db, RELEASE_LINKS, params)
            inboxes = await _all(db, RELEASE_INBOXES, params)
            return ReleasedWorkspace(len(locations), len(links), len(inboxes))

        # One transaction (on PostgreSQL too): the three never show apart. Each statement
        # is race-free on its own, so no serial lock is needed.
        return await self._write_op(release, serial=False)

    # ---------------------------------------------------------------- companies

    async def save_company(
        self,
        company_id: str,
        *,
        name: str | None = None,
        access_token: str,
        refresh_token: str | None,
        expires_at: float,
    ) -> CompanyRecord:
        """Add or reconnect an agency with a new Company token (token_version + 1; a refresh
        in progress can no longer finish). A name not given keeps the stored one."""
        params = {
            "company_id": company_id,
            "name": name,
            "access_token": access_token,
            "refresh_token": refresh_token,
            "expires_at": float(expires_at),
            "now": self._clock(),
        }
        row = await self._single_write_op(lambda db: _one(db, SAVE_COMPANY, params))
        return company_record(_required(row))

    async def get_company(self, company_id: str) -> CompanyRecord | None:
        row = await self._read_op(
            lambda db: _one(db, "SELECT * FROM ghl_companies WHERE company_id = ?", (company_id,))
        )
        return None if row is None else company_record(row)

    async def disconnect_company(self, company_id: str, reason: str) -> bool:
        """Mark a connected agency disconnected and forget its tokens; its locations connected
        through it ("company") are disconnected too, with `reason` (each then has a notice to
        claim). True only for the one call that moved the company from connected."""
        params = {"key": company_id, "reason": reason, "now": self._clock()}

        async def disconnect(db: Conn) -> Row | None:
            if db.dialect == "postgresql":
                return await _one(db, DISCONNECT_COMPANY_AND_LOCATIONS, params)
            await db.execute(DISCONNECT_COMPANY_LOCATIONS, params)
            return await _one(db, DISCONNECT_COMPANY, params)

        return await self._single_write_op(disconnect) is not None

    # ---------------------------------------------------------------- token refresh

    async def begin_token_refresh(
        self, scope: TokenScope, key: str, *, seen_version: int, lease_seconds: float
    ) -> bool:
        """Take the row's refresh lease for `lease_seconds`, as this instance.

        True: the caller refreshes now (the row is connected, its token_version is still
        `seen_version`, and no live lease is held, this instance's own included). False:
        someone refreshed it already, or is refreshing it: read the row again.
        """
        if not lease_seconds > 0:
            raise ValueError("a refresh lease lasts a positive number of seconds")
        now = self._clock()
        params = {
            "key": key,
            "seen": int(seen_version),
            "owner": self._instance_id,
            "now": now,
            "until": now + float(lease_seconds),
        }
        sql = begin_refresh_sql(_scope(scope))
        # One compare-and-set UPDATE: of two instances at once, the second waits for the
        # first's row and then finds the lease live.
        row = await self._single_write_op(lambda db: _one(db, sql, params))
        return row is not None

    async def finish_token_refresh(
        self,
        scope: TokenScope,
        key: str,
        *,
        access_token: str,
        refresh_token: str | None,
        expires_at: float,
    ) -> int:
        """Store the refreshed tokens (`refresh_token` as given: None stores none) and end
        the lease; the new token_version. Committed before it returns.

        ConflictError when this instance no longer holds the row's lease (the row was
        disconnected, saved with a newer token, or another took the expired lease over):
        nothing is stored, read the row again. NotFoundError for an unknown row.
        """
        name = _scope(scope)
        now = self._clock()
        params = {
            "key": key,
            "owner": self._instance_id,
            "access_token": access_token,
            "refresh_token": refresh_token,
            "expires_at": float(expires_at),
            "now": now,
        }
        finish_sql, state_sql = finish_refresh_sql(name), refresh_state_sql(name)

        async def finish(db: Conn) -> tuple[Row | None, Row | None]:
            row = await _one(db, finish_sql, params)
            if row is not None:
                return row, None
            return None, await _one(db, state_sql, {"key": key})

        # Not a grouped write: it must be committed when this returns, since the caller
        # uses the new access token only then (the old refresh token is spent).
        row, state = await self._single_write_op(finish)
        if row is not None:
            return int(row["token_version"])
        if state is None:
            raise NotFoundError(f"no {name} {key}")
        if state["status"] != "connected":
            raise ConflictError(f"{name} {key} was disconnected while its token was refreshed")
        raise ConflictError(f"{name} {key}: this instance no longer holds its refresh lease")

    async def abandon_token_refresh(self, scope: TokenScope, key: str) -> None:
        """End this instance's refresh lease on the row without a new token (the refresh
        failed): another may try at once."""
        sql = abandon_refresh_sql(_scope(scope))
        params = {"key": key, "owner": self._instance_id}
        await self._single_write_op(lambda db: db.execute(sql, params))

    # ---------------------------------------------------------------- channel links

    async def link_channel(
        self, team_id: str, channel_id: str, location_id: str, *, linked_by: str
    ) -> ChannelLink:
        """The channel now belongs to the location (replacing any link it had).

        NotFoundError for a location the store does not know.
        """
        params = {
            "team_id": team_id,
            "channel_id": channel_id,
            "location_id": location_id,
            "linked_by": linked_by,
            "now": self._clock(),
        }
        row = await self._single_write_op(lambda db: _one(db, LINK_CHANNEL, params))
        if row is None:
            raise NotFoundError(f"no location {location_id}")
        return channel_link(row)

    async def get_channel_link(self, team_id: str, channel_id: str) -> ChannelLink | None:
        row = await self._read_op(
            lambda db: _one(
                db,
                "SELECT * FROM slack_channel_links WHERE team_id = ? AND channel_id = ?",
                (team_id, channel_id),
            )
        )
        return None if row is None else channel_link(row)

    async def list_channel_links(self, *, location_id: str | None = None) -> list[ChannelLink]:
        """Every link (or the location's), by team then channel."""
        rows = await self._read_op(
            lambda db: _all(
                db,
                "SELECT * FROM slack_channel_links WHERE (CAST(:location_id AS TEXT) IS NULL"
                " OR location_id = :location_id)",
                {"location_id": location_id},
            )
        )
        return sorted(
            (channel_link(row) for row in rows), key=lambda link: (link.team_id, link.channel_id)
        )
