"""Persistence of ghl-bridge: Slack thread <-> HighLevel contact map, messages, send outbox,
delivery dedupe and key/value cursors. All SQL of the project lives in this package.

Open with `store = await open_store(settings.database_url)`; type against `Store`.
"""

from storage._errors import ConflictError, NotFoundError, OutboxStateError, StoreError
from storage._migrations import LATEST_VERSION, MIGRATIONS, Migration
from storage._protocol import Store
from storage._records import (
    INTENT_QUEUED,
    UNSET,
    ComposeIntent,
    InboundBacklog,
    InboundEvent,
    InboundState,
    IntentState,
    MessageDirection,
    MessageRecord,
    OutboxEntry,
    OutboxState,
    ThreadRecord,
    Unset,
)
from storage._sqlite import SqliteStore, open_store
from storage._url import parse_sqlite_url

__all__ = [
    "INTENT_QUEUED",
    "LATEST_VERSION",
    "MIGRATIONS",
    "UNSET",
    "ComposeIntent",
    "ConflictError",
    "InboundBacklog",
    "InboundEvent",
    "InboundState",
    "IntentState",
    "MessageDirection",
    "MessageRecord",
    "Migration",
    "NotFoundError",
    "OutboxEntry",
    "OutboxState",
    "OutboxStateError",
    "SqliteStore",
    "Store",
    "StoreError",
    "ThreadRecord",
    "Unset",
    "open_store",
    "parse_sqlite_url",
]
