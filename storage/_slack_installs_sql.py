"""The Slack installations' SQL and row mapping; storage/_slack_installs.py runs them.

Keys are never NULL: '' stands for "none" in enterprise_id and team_id, and installer_key
'' is the workspace's row (its latest bot and latest installer), a user id that user's own
row. Bot fields live on the workspace's row only.
"""

from __future__ import annotations

from typing import Any, Final

from storage._base import Row
from storage._records import SlackInstallation, SlackInstallationRecord, SlackWorkspaceRow

WORKSPACE: Final = ""

_CONTENT: Final = (
    "enterprise_name",
    "enterprise_url",
    "team_name",
    "app_id",
    "is_enterprise_install",
    "token_type",
    "user_id",
    "user_scopes",
    "user_token",
    "user_refresh_token",
    "user_token_expires_at",
    "incoming_webhook_url",
    "incoming_webhook_channel",
    "incoming_webhook_channel_id",
    "incoming_webhook_configuration_url",
    "custom_values",
    "installed_at",
)
_BOT: Final = (
    "bot_id",
    "bot_user_id",
    "bot_scopes",
    "bot_token",
    "bot_refresh_token",
    "bot_token_expires_at",
    "bot_installed_at",
)
_COLUMNS: Final = ("enterprise_id", "team_id", "installer_key", *_CONTENT, *_BOT)


def _values(installer: str, *, with_bot: bool) -> str:
    """One VALUES tuple: the installer's key, and NULL bot fields on a user's own row."""
    content = ", ".join(f":{name}" for name in _CONTENT)
    bot = ", ".join(f":{name}" if with_bot else "NULL" for name in _BOT)
    version = ":bot_version" if with_bot else "0"
    return f"(:enterprise_id, :team_id, {installer}, {content}, {bot}, {version}, :now)"


_INSERT: Final = (
    f"INSERT INTO slack_installations ({', '.join(_COLUMNS)}, token_version, updated_at) VALUES"
)

# A bot token given replaces the stored bot (a new token_version, and any refresh lease ends:
# its refresh would overwrite the newer token); without one (a user-only install) the stored
# bot stays.
_KEEP_BOT_UNLESS_GIVEN: Final = ",\n    ".join(
    [
        *(
            f"{name} = CASE WHEN excluded.bot_token IS NOT NULL THEN excluded.{name}"
            f" ELSE slack_installations.{name} END"
            for name in _BOT
        ),
        "token_version = slack_installations.token_version"
        " + CASE WHEN excluded.bot_token IS NOT NULL THEN 1 ELSE 0 END",
        "refresh_owner = CASE WHEN excluded.bot_token IS NOT NULL THEN NULL"
        " ELSE slack_installations.refresh_owner END",
        "refresh_lease_until = CASE WHEN excluded.bot_token IS NOT NULL THEN NULL"
        " ELSE slack_installations.refresh_lease_until END",
        "updated_at = excluded.updated_at",
    ]
)

_ON_CONFLICT: Final = "ON CONFLICT (enterprise_id, team_id, installer_key) DO UPDATE SET"

# The workspace's row and the installer's own, in one statement (race-free on its own).
SAVE_INSTALLATION: Final = f"""
{_INSERT} {_values("''", with_bot=True)}, {_values(":installer_key", with_bot=False)}
{_ON_CONFLICT}
    {", ".join(f"{name} = excluded.{name}" for name in _CONTENT)},
    {_KEEP_BOT_UNLESS_GIVEN}
"""

# An install without an installing user (none to key a row of its own by).
SAVE_WORKSPACE_INSTALLATION: Final = f"""
{_INSERT} {_values("''", with_bot=True)}
{_ON_CONFLICT}
    {", ".join(f"{name} = excluded.{name}" for name in _CONTENT)},
    {_KEEP_BOT_UNLESS_GIVEN}
"""

# A bot on its own: the workspace's row, created without an installer if there is none.
SAVE_BOT: Final = f"""
{_INSERT} {_values("''", with_bot=True)}
{_ON_CONFLICT}
    enterprise_name = COALESCE(excluded.enterprise_name, slack_installations.enterprise_name),
    team_name = COALESCE(excluded.team_name, slack_installations.team_name),
    app_id = COALESCE(excluded.app_id, slack_installations.app_id),
    is_enterprise_install = excluded.is_enterprise_install,
    {_KEEP_BOT_UNLESS_GIVEN}
"""

_WORKSPACE: Final = "enterprise_id = :enterprise_id AND team_id = :team_id"

FIND: Final = f"""
SELECT * FROM slack_installations
WHERE {_WORKSPACE} AND installer_key IN ('', CAST(:installer_key AS TEXT))
"""  # noqa: S608 - only constants of this module are formatted in

_NO_BOT: Final = ", ".join(f"{name} = NULL" for name in _BOT)
_NO_USER: Final = (
    "user_id = NULL, user_scopes = NULL, user_token = NULL, user_refresh_token = NULL,"
    " user_token_expires_at = NULL"
)
_NO_LEASE: Final = "refresh_owner = NULL, refresh_lease_until = NULL"

# A workspace row without an installer holds only its bot: it goes with the bot.
DELETE_BOT_ONLY_ROW: Final = f"""
DELETE FROM slack_installations
WHERE {_WORKSPACE} AND installer_key = '' AND user_id IS NULL
"""  # noqa: S608 - only constants of this module are formatted in

CLEAR_BOT: Final = f"""
UPDATE slack_installations SET {_NO_BOT}, {_NO_LEASE}, updated_at = :now
WHERE {_WORKSPACE} AND installer_key = '' AND user_id IS NOT NULL
"""  # noqa: S608 - only constants of this module are formatted in

# PostgreSQL: both in one statement (their rows are disjoint), atomic without a transaction.
DELETE_BOT: Final = f"WITH gone AS ({DELETE_BOT_ONLY_ROW}) {CLEAR_BOT}"

# :installer_key '' means every installer of the workspace.
_INSTALLER: Final = "(CAST(:installer_key AS TEXT) = '' OR {column} = :installer_key)"

DELETE_USER_ROWS: Final = f"""
DELETE FROM slack_installations
WHERE {_WORKSPACE} AND installer_key <> '' AND {_INSTALLER.format(column="installer_key")}
"""  # noqa: S608 - only constants of this module are formatted in

DELETE_INSTALLER_ONLY_ROW: Final = f"""
DELETE FROM slack_installations
WHERE {_WORKSPACE} AND installer_key = '' AND bot_token IS NULL
  AND {_INSTALLER.format(column="user_id")}
"""  # noqa: S608 - only constants of this module are formatted in

CLEAR_INSTALLER: Final = f"""
UPDATE slack_installations SET {_NO_USER}, updated_at = :now
WHERE {_WORKSPACE} AND installer_key = '' AND bot_token IS NOT NULL
  AND user_id IS NOT NULL AND {_INSTALLER.format(column="user_id")}
"""  # noqa: S608 - only constants of this module are formatted in

DELETE_INSTALLATION: Final = (
    f"WITH users AS ({DELETE_USER_ROWS}), workspace AS ({DELETE_INSTALLER_ONLY_ROW})"
    f" {CLEAR_INSTALLER}"
)

DELETE_WORKSPACE: Final = f"""
DELETE FROM slack_installations WHERE {_WORKSPACE} RETURNING installer_key
"""  # noqa: S608 - only constants of this module are formatted in

BEGIN_REFRESH: Final = f"""
UPDATE slack_installations SET refresh_owner = :owner, refresh_lease_until = :until
WHERE {_WORKSPACE} AND installer_key = '' AND bot_token IS NOT NULL
  AND token_version = :seen
  AND (refresh_lease_until IS NULL OR refresh_lease_until < :now)
RETURNING token_version
"""  # noqa: S608 - only constants of this module are formatted in

FINISH_REFRESH: Final = f"""
UPDATE slack_installations SET bot_token = :bot_token, bot_refresh_token = :bot_refresh_token,
    bot_token_expires_at = :bot_token_expires_at, token_version = token_version + 1,
    {_NO_LEASE}, updated_at = :now
WHERE {_WORKSPACE} AND installer_key = '' AND bot_token IS NOT NULL AND refresh_owner = :owner
RETURNING token_version
"""  # noqa: S608 - only constants of this module are formatted in

ABANDON_REFRESH: Final = f"""
UPDATE slack_installations SET {_NO_LEASE}
WHERE {_WORKSPACE} AND installer_key = '' AND refresh_owner = :owner
"""  # noqa: S608 - only constants of this module are formatted in

REFRESH_STATE: Final = f"""
SELECT bot_token IS NOT NULL AS has_bot FROM slack_installations
WHERE {_WORKSPACE} AND installer_key = ''
"""  # noqa: S608 - only constants of this module are formatted in

# The workspaces' own rows (installer_key ''), without their tokens.
WORKSPACES: Final = """
SELECT enterprise_id, team_id, team_name, is_enterprise_install, installed_at,
    bot_token_expires_at, bot_token IS NOT NULL AS has_bot
FROM slack_installations WHERE installer_key = ''
"""


def key(value: str | None) -> str:
    return value or ""


def workspace_keys(
    enterprise_id: str | None, team_id: str | None, *, is_enterprise_install: bool = False
) -> dict[str, str]:
    """The key columns of a workspace (an org-wide install is keyed by its enterprise alone)."""
    return {
        "enterprise_id": key(enterprise_id),
        "team_id": "" if is_enterprise_install else key(team_id),
    }


def _scopes(scopes: tuple[str, ...]) -> str | None:
    return ",".join(scopes) if scopes else None


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def save_params(installation: SlackInstallation, now: float) -> dict[str, Any]:
    """The named values of the SAVE statements."""
    with_bot = installation.bot_token is not None
    return {
        **workspace_keys(
            installation.enterprise_id,
            installation.team_id,
            is_enterprise_install=installation.is_enterprise_install,
        ),
        "installer_key": key(installation.user_id),
        "enterprise_name": installation.enterprise_name,
        "enterprise_url": installation.enterprise_url,
        "team_name": installation.team_name,
        "app_id": installation.app_id,
        "is_enterprise_install": int(installation.is_enterprise_install),
        "token_type": installation.token_type,
        "user_id": installation.user_id,
        "user_scopes": _scopes(installation.user_scopes),
        "user_token": installation.user_token,
        "user_refresh_token": installation.user_refresh_token,
        "user_token_expires_at": _float(installation.user_token_expires_at),
        "incoming_webhook_url": installation.incoming_webhook_url,
        "incoming_webhook_channel": installation.incoming_webhook_channel,
        "incoming_webhook_channel_id": installation.incoming_webhook_channel_id,
        "incoming_webhook_configuration_url": installation.incoming_webhook_configuration_url,
        "custom_values": installation.custom_values_json,
        "installed_at": float(installation.installed_at),
        "bot_id": installation.bot_id,
        "bot_user_id": installation.bot_user_id,
        "bot_scopes": _scopes(installation.bot_scopes),
        "bot_token": installation.bot_token,
        "bot_refresh_token": installation.bot_refresh_token,
        "bot_token_expires_at": _float(installation.bot_token_expires_at),
        "bot_installed_at": (
            _float(installation.bot_installed_at or installation.installed_at) if with_bot else None
        ),
        "bot_version": 1 if with_bot else 0,
        "now": now,
    }


def _split(scopes: str | None) -> tuple[str, ...]:
    return tuple(scopes.split(",")) if scopes else ()


def _none_if_empty(value: str) -> str | None:
    return value or None


def installation_record(row: Row, bot_row: Row | None = None) -> SlackInstallationRecord:
    """The record of `row`, with the bot (and its refresh state) of `bot_row` if given."""
    bot = row if bot_row is None else bot_row
    return SlackInstallationRecord(
        installation=SlackInstallation(
            enterprise_id=_none_if_empty(row["enterprise_id"]),
            team_id=_none_if_empty(row["team_id"]),
            installed_at=float(row["installed_at"]),
            is_enterprise_install=bool(row["is_enterprise_install"]),
            enterprise_name=row["enterprise_name"],
            enterprise_url=row["enterprise_url"],
            team_name=row["team_name"],
            app_id=row["app_id"],
            token_type=row["token_type"],
            bot_id=bot["bot_id"],
            bot_user_id=bot["bot_user_id"],
            bot_scopes=_split(bot["bot_scopes"]),
            bot_token=bot["bot_token"],
            bot_refresh_token=bot["bot_refresh_token"],
            bot_token_expires_at=_float(bot["bot_token_expires_at"]),
            bot_installed_at=_float(bot["bot_installed_at"]),
            user_id=row["user_id"],
            user_scopes=_split(row["user_scopes"]),
            user_token=row["user_token"],
            user_refresh_token=row["user_refresh_token"],
            user_token_expires_at=_float(row["user_token_expires_at"]),
            incoming_webhook_url=row["incoming_webhook_url"],
            incoming_webhook_channel=row["incoming_webhook_channel"],
            incoming_webhook_channel_id=row["incoming_webhook_channel_id"],
            incoming_webhook_configuration_url=row["incoming_webhook_configuration_url"],
            custom_values_json=row["custom_values"],
        ),
        token_version=int(bot["token_version"]),
        refresh_owner=bot["refresh_owner"],
        refresh_lease_until=_float(bot["refresh_lease_until"]),
        updated_at=float(row["updated_at"]),
    )


def workspace_row(row: Row) -> SlackWorkspaceRow:
    return SlackWorkspaceRow(
        enterprise_id=_none_if_empty(row["enterprise_id"]),
        team_id=_none_if_empty(row["team_id"]),
        team_name=row["team_name"],
        is_enterprise_install=bool(row["is_enterprise_install"]),
        installed_at=float(row["installed_at"]),
        bot_token_expires_at=_float(row["bot_token_expires_at"]),
        has_bot=bool(row["has_bot"]),
    )
