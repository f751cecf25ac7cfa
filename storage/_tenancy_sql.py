"""The tenancy aggregate's SQL and row mapping: locations, agency companies, channel links.
storage/_tenancy.py runs them."""

from __future__ import annotations

from typing import Any, Final

from storage._base import Row
from storage._records import ChannelLink, CompanyRecord, LocationRecord

LOCATION_AUTHS: Final = ("pit", "location", "company")
STATUSES: Final = ("connected", "disconnected")

# The table and key column of each refresh lease's scope (constants formatted into SQL).
SCOPES: Final[dict[str, tuple[str, str]]] = {
    "location": ("ghl_locations", "location_id"),
    "company": ("ghl_companies", "company_id"),
}

# A save is a reconnection: status, reason and notice start over. A token given replaces the
# stored ones (a new token_version, and any refresh lease ends: its refresh would overwrite
# the newer token); without one the stored ones stay, unless the way access is held changed
# (they belong to the old way). Names, company and inbox are kept when not given.
SAVE_LOCATION = """
INSERT INTO ghl_locations (location_id, name, company_id, auth, status, access_token,
    refresh_token, expires_at, obtained_at, token_version, disconnect_notified,
    connected_at, updated_at)
VALUES (:location_id, :name, :company_id, :auth, 'connected', :access_token, :refresh_token,
    :expires_at, :obtained_at, :token_version, 0, :now, :now)
ON CONFLICT (location_id) DO UPDATE SET
    name = COALESCE(excluded.name, ghl_locations.name),
    company_id = COALESCE(excluded.company_id, ghl_locations.company_id),
    auth = excluded.auth,
    status = 'connected',
    disconnected_reason = NULL,
    disconnect_notified = 0,
    access_token = CASE WHEN excluded.access_token IS NOT NULL THEN excluded.access_token
        WHEN ghl_locations.auth = excluded.auth THEN ghl_locations.access_token END,
    refresh_token = CASE WHEN excluded.access_token IS NOT NULL THEN excluded.refresh_token
        WHEN ghl_locations.auth = excluded.auth THEN ghl_locations.refresh_token END,
    expires_at = CASE WHEN excluded.access_token IS NOT NULL THEN excluded.expires_at
        WHEN ghl_locations.auth = excluded.auth THEN ghl_locations.expires_at END,
    obtained_at = CASE WHEN excluded.access_token IS NOT NULL THEN excluded.obtained_at
        WHEN ghl_locations.auth = excluded.auth THEN ghl_locations.obtained_at END,
    token_version = ghl_locations.token_version
        + CASE WHEN excluded.access_token IS NOT NULL THEN 1 ELSE 0 END,
    refresh_owner = CASE WHEN excluded.access_token IS NULL
        AND ghl_locations.auth = excluded.auth THEN ghl_locations.refresh_owner END,
    refresh_lease_until = CASE WHEN excluded.access_token IS NULL
        AND ghl_locations.auth = excluded.auth THEN ghl_locations.refresh_lease_until END,
    connected_at = CASE WHEN ghl_locations.status = 'connected'
        THEN ghl_locations.connected_at ELSE excluded.connected_at END,
    updated_at = excluded.updated_at
RETURNING *
"""

SAVE_COMPANY = """
INSERT INTO ghl_companies (company_id, name, status, access_token, refresh_token,
    expires_at, obtained_at, token_version, updated_at)
VALUES (:company_id, :name, 'connected', :access_token, :refresh_token, :expires_at, :now, 1,
    :now)
ON CONFLICT (company_id) DO UPDATE SET
    name = COALESCE(excluded.name, ghl_companies.name),
    status = 'connected',
    disconnected_reason = NULL,
    access_token = excluded.access_token,
    refresh_token = excluded.refresh_token,
    expires_at = excluded.expires_at,
    obtained_at = excluded.obtained_at,
    token_version = ghl_companies.token_version + 1,
    refresh_owner = NULL,
    refresh_lease_until = NULL,
    updated_at = excluded.updated_at
RETURNING *
"""

# What a disconnection sets: no tokens (and no refresh of them), a reason, a notice to claim.
_DISCONNECTED = """status = 'disconnected', disconnected_reason = :reason,
    access_token = NULL, refresh_token = NULL, expires_at = NULL, obtained_at = NULL,
    refresh_owner = NULL, refresh_lease_until = NULL, updated_at = :now"""

DISCONNECT_LOCATION = f"""
UPDATE ghl_locations SET {_DISCONNECTED}, disconnect_notified = 0
WHERE location_id = :key AND status = 'connected'
RETURNING location_id
"""  # noqa: S608 - only constants of this module are formatted in

DISCONNECT_COMPANY_LOCATIONS = f"""
UPDATE ghl_locations SET {_DISCONNECTED}, disconnect_notified = 0
WHERE company_id = :key AND auth = 'company' AND status = 'connected'
"""  # noqa: S608 - only constants of this module are formatted in

DISCONNECT_COMPANY = f"""
UPDATE ghl_companies SET {_DISCONNECTED}
WHERE company_id = :key AND status = 'connected'
RETURNING company_id
"""  # noqa: S608 - only constants of this module are formatted in

# PostgreSQL: both in one statement, atomic without a transaction. A data-modifying WITH
# runs to completion whether or not the main statement reads it.
DISCONNECT_COMPANY_AND_LOCATIONS = (
    f"WITH locations AS ({DISCONNECT_COMPANY_LOCATIONS}) {DISCONNECT_COMPANY}"
)

CLAIM_DISCONNECT_NOTICE = """
UPDATE ghl_locations SET disconnect_notified = 1
WHERE location_id = :key AND status = 'disconnected' AND disconnect_notified = 0
RETURNING location_id
"""

# Only ever forward: an event handled late does not move the mark back. A NULL value leaves
# its column as it is (the comparison is NULL, so the CASE keeps the column).
NOTE_SEEN = """
UPDATE ghl_locations SET
    last_webhook_at = CASE WHEN last_webhook_at IS NULL
            OR last_webhook_at < CAST(:webhook_at AS DOUBLE PRECISION)
        THEN CAST(:webhook_at AS DOUBLE PRECISION) ELSE last_webhook_at END,
    last_poll_at = CASE WHEN last_poll_at IS NULL
            OR last_poll_at < CAST(:poll_at AS DOUBLE PRECISION)
        THEN CAST(:poll_at AS DOUBLE PRECISION) ELSE last_poll_at END
WHERE location_id = :key
"""

# Only a location the store knows is linked (CAST: PostgreSQL types an INSERT's SELECT list
# before it looks at the target columns).
LINK_CHANNEL = """
INSERT INTO slack_channel_links (team_id, channel_id, location_id, linked_by, linked_at)
SELECT CAST(:team_id AS TEXT), CAST(:channel_id AS TEXT), location_id,
    CAST(:linked_by AS TEXT), CAST(:now AS DOUBLE PRECISION)
FROM ghl_locations WHERE location_id = :location_id
ON CONFLICT (team_id, channel_id) DO UPDATE SET
    location_id = excluded.location_id,
    linked_by = excluded.linked_by,
    linked_at = excluded.linked_at
RETURNING *
"""

# The owner after the statement: :team_id if there was none, else the one there was. On
# PostgreSQL a second claim waits for the first's row and then computes the COALESCE on the
# row the first wrote, so of two claims at once exactly one sets its team. updated_at is left
# as it is: `/highlevel status` shows it as when a disconnection happened.
CLAIM_LOCATION = """
UPDATE ghl_locations SET slack_team_id = COALESCE(slack_team_id, CAST(:team_id AS TEXT))
WHERE location_id = :key
RETURNING slack_team_id
"""

# A workspace that uninstalled the app: what it owned is owned by none, its links are gone,
# and inboxes in its channels are no inboxes. Run together in one transaction.
RELEASE_LOCATIONS = """
UPDATE ghl_locations SET slack_team_id = NULL WHERE slack_team_id = :team_id
RETURNING location_id
"""

RELEASE_LINKS = "DELETE FROM slack_channel_links WHERE team_id = :team_id RETURNING location_id"

RELEASE_INBOXES = """
UPDATE ghl_locations SET inbox_team_id = NULL, inbox_channel_id = NULL
WHERE inbox_team_id = :team_id
RETURNING location_id
"""


def begin_refresh_sql(scope: str) -> str:
    """Take the row's refresh lease if its token is still :seen and nobody holds a live one."""
    table, key = SCOPES[scope]
    return f"""
        UPDATE {table} SET refresh_owner = :owner, refresh_lease_until = :until
        WHERE {key} = :key AND status = 'connected' AND token_version = :seen
          AND (refresh_lease_until IS NULL OR refresh_lease_until < :now)
        RETURNING {key}
    """  # noqa: S608 - only constants of this module are formatted in


def finish_refresh_sql(scope: str) -> str:
    """Store the refreshed tokens, if this instance still holds the (maybe expired) lease."""
    table, key = SCOPES[scope]
    return f"""
        UPDATE {table} SET access_token = :access_token, refresh_token = :refresh_token,
            expires_at = :expires_at, obtained_at = :now, token_version = token_version + 1,
            refresh_owner = NULL, refresh_lease_until = NULL, updated_at = :now
        WHERE {key} = :key AND status = 'connected' AND refresh_owner = :owner
        RETURNING token_version
    """  # noqa: S608 - only constants of this module are formatted in


def abandon_refresh_sql(scope: str) -> str:
    table, key = SCOPES[scope]
    return f"""
        UPDATE {table} SET refresh_owner = NULL, refresh_lease_until = NULL
        WHERE {key} = :key AND refresh_owner = :owner
    """  # noqa: S608 - only constants of this module are formatted in


def refresh_state_sql(scope: str) -> str:
    table, key = SCOPES[scope]
    return f"SELECT status, refresh_owner FROM {table} WHERE {key} = :key"  # noqa: S608


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def location_record(row: Row) -> LocationRecord:
    return LocationRecord(
        location_id=row["location_id"],
        name=row["name"],
        company_id=row["company_id"],
        auth=row["auth"],
        status=row["status"],
        access_token=row["access_token"],
        refresh_token=row["refresh_token"],
        expires_at=_float(row["expires_at"]),
        obtained_at=_float(row["obtained_at"]),
        token_version=int(row["token_version"]),
        inbox_team_id=row["inbox_team_id"],
        inbox_channel_id=row["inbox_channel_id"],
        disconnected_reason=row["disconnected_reason"],
        disconnect_notified=bool(row["disconnect_notified"]),
        last_webhook_at=_float(row["last_webhook_at"]),
        last_poll_at=_float(row["last_poll_at"]),
        connected_at=float(row["connected_at"]),
        updated_at=float(row["updated_at"]),
        slack_team_id=row["slack_team_id"],
        email_from=row["email_from"],
    )


def company_record(row: Row) -> CompanyRecord:
    return CompanyRecord(
        company_id=row["company_id"],
        name=row["name"],
        status=row["status"],
        access_token=row["access_token"],
        refresh_token=row["refresh_token"],
        expires_at=_float(row["expires_at"]),
        obtained_at=_float(row["obtained_at"]),
        token_version=int(row["token_version"]),
        updated_at=float(row["updated_at"]),
    )


def channel_link(row: Row) -> ChannelLink:
    return ChannelLink(
        team_id=row["team_id"],
        channel_id=row["channel_id"],
        location_id=row["location_id"],
        linked_by=row["linked_by"],
        linked_at=float(row["linked_at"]),
    )
