"""Persistence of ghl-bridge: Slack thread <-> HighLevel contact map, messages, send outbox,
delivery dedupe, key/value cursors, tenancy (locations, companies, channel links), and Slack
installations with OAuth states. All SQL of the project lives in this package.

Open with `store = await open_store(settings.database_url)` (sqlite:///… or postgresql://…);
type against `Store`.
"""

from typing import TYPE_CHECKING, Any

from storage._budgets import BudgetGrant
from storage._copy import copy_database
from storage._errors import ConflictError, NotFoundError, OutboxStateError, StoreError
from storage._history import HistoryLease, HistoryState
from storage._leases import HandOver, Takeover
from storage._migrations import LATEST_VERSION, MIGRATIONS, Migration
from storage._open import create_store, open_store
from storage._protocol import Store
from storage._records import (
    INTENT_QUEUED,
    RESEND_KEY_PREFIX,
    UNSET,
    AuditRow,
    ChannelLink,
    CompanyRecord,
    ComposeIntent,
    ConnectionStatus,
    InboundBacklog,
    InboundEvent,
    InboundState,
    IntentState,
    LocationAuth,
    LocationRecord,
    MessageDirection,
    MessageRecord,
    OutboxEntry,
    OutboxState,
    ReleasedWorkspace,
    SlackInstallation,
    SlackInstallationRecord,
    SlackWorkspaceRow,
    StatusChange,
    ThreadRecord,
    TokenScope,
    Unset,
)
from storage._sqlite import SqliteStore
from storage._url import is_postgres_url, parse_sqlite_url, redact_url, validate_database_url

if TYPE_CHECKING:
    from storage._postgres import PostgresStore


def __getattr__(name: str) -> Any:
    # asyncpg is imported only by a bridge on PostgreSQL: SQLite installs start without it.
    if name == "PostgresStore":
        from storage._postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module 'storage' has no attribute {name!r}")


__all__ = [
    "INTENT_QUEUED",
    "LATEST_VERSION",
    "MIGRATIONS",
    "RESEND_KEY_PREFIX",
    "UNSET",
    "AuditRow",
    "BudgetGrant",
    "ChannelLink",
    "CompanyRecord",
    "ComposeIntent",
    "ConflictError",
    "ConnectionStatus",
    "HandOver",
    "HistoryLease",
    "HistoryState",
    "InboundBacklog",
    "InboundEvent",
    "InboundState",
    "IntentState",
    "LocationAuth",
    "LocationRecord",
    "MessageDirection",
    "MessageRecord",
    "Migration",
    "NotFoundError",
    "OutboxEntry",
    "OutboxState",
    "OutboxStateError",
    "PostgresStore",
    "ReleasedWorkspace",
    "SlackInstallation",
    "SlackInstallationRecord",
    "SlackWorkspaceRow",
    "SqliteStore",
    "StatusChange",
    "Store",
    "StoreError",
    "Takeover",
    "ThreadRecord",
    "TokenScope",
    "Unset",
    "copy_database",
    "create_store",
    "is_postgres_url",
    "open_store",
    "parse_sqlite_url",
    "redact_url",
    "validate_database_url",
]
