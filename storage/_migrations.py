"""Schema migrations, applied in order when a store opens, on SQLite and on PostgreSQL.

Each migration runs in its own transaction together with the row that records it in
`schema_migrations`, so a crash leaves the schema either before or after a step, never
half-way. Steps are lists of single statements on purpose: sqlite3's `executescript` commits
the open transaction first, which would break that guarantee. A migration's `postgresql`
steps build the same tables in PostgreSQL's types (DOUBLE PRECISION for REAL, identity
columns for INTEGER PRIMARY KEY); without them its steps are valid on both. A database at
version N has the same tables and columns on both backends, which is what `db copy` needs.
Never edit a released migration; append a new one.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage._errors import StoreError
from storage._schema_inbox import DESCRIPTION as _INBOX_DESCRIPTION
from storage._schema_inbox import STATEMENTS as _INBOX_STATEMENTS
from storage._schema_windows import DESCRIPTION as _WINDOWS_DESCRIPTION
from storage._schema_windows import STATEMENTS as _WINDOWS_STATEMENTS


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]
    postgresql: tuple[str, ...] | None = None

    def steps(self, dialect: str) -> tuple[str, ...]:
        """The statements to run on `dialect` ('sqlite' or 'postgresql')."""
        if dialect == "postgresql" and self.postgresql is not None:
            return self.postgresql
        return self.statements


CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at  DOUBLE PRECISION NOT NULL
)
"""

_INITIAL = Migration(
    version=1,
    description="threads, messages, outbox, processed deliveries, key/value",
    statements=(
        # thread_ts is NULL while a thread is reserved and its Slack root is not posted yet.
        # SQLite treats NULLs as distinct in UNIQUE, so any number of reserved threads may
        # exist in a channel, while each posted thread_ts maps to exactly one row. The
        # contact-side UNIQUE has no nullable column: one thread per contact per channel.
        """
        CREATE TABLE slack_threads (
            id              INTEGER PRIMARY KEY,
            team_id         TEXT NOT NULL,
            channel_id      TEXT NOT NULL,
            thread_ts       TEXT,
            location_id     TEXT NOT NULL,
            contact_id      TEXT NOT NULL,
            conversation_id TEXT,
            channel_type    TEXT,
            email_thread_id TEXT,
            subject         TEXT,
            contact_label   TEXT,
            created_at      REAL NOT NULL,
            updated_at      REAL NOT NULL,
            UNIQUE (team_id, channel_id, thread_ts),
            UNIQUE (team_id, channel_id, location_id, contact_id)
        )
        """,
        "CREATE INDEX slack_threads_conversation ON slack_threads (location_id, conversation_id)",
        "CREATE INDEX slack_threads_contact ON slack_threads (location_id, contact_id)",
        """
        CREATE TABLE outbox (
            id                   INTEGER PRIMARY KEY,
            idempotency_key      TEXT NOT NULL UNIQUE,
            team_id              TEXT NOT NULL,
            channel_id           TEXT NOT NULL,
            slack_user_id        TEXT NOT NULL,
            thread_id            INTEGER REFERENCES slack_threads (id) ON DELETE SET NULL,
            location_id          TEXT NOT NULL,
            contact_id           TEXT NOT NULL,
            conversation_id      TEXT,
            message_type         TEXT NOT NULL,
            payload              TEXT NOT NULL,
            state                TEXT NOT NULL DEFAULT 'pending' CHECK (state IN
                ('pending', 'sending', 'sent', 'failed', 'unknown', 'cancelled')),
            attempts             INTEGER NOT NULL DEFAULT 0,
            last_error           TEXT,
            next_attempt_at      REAL NOT NULL,
            ghl_message_id       TEXT,
            ghl_email_message_id TEXT,
            ghl_message_ids      TEXT NOT NULL DEFAULT '[]',
            slack_ts             TEXT,
            scheduled_at         REAL,
            created_at           REAL NOT NULL,
            updated_at           REAL NOT NULL
        )
        """,
        "CREATE INDEX outbox_state ON outbox (state, id)",
        "CREATE INDEX outbox_contact ON outbox (location_id, contact_id, state, id)",
        "CREATE INDEX outbox_thread ON outbox (thread_id)",
        """
        CREATE TABLE messages (
            id                   INTEGER PRIMARY KEY,
            thread_id            INTEGER REFERENCES slack_threads (id) ON DELETE SET NULL,
            slack_channel_id     TEXT,
            slack_ts             TEXT,
            ghl_message_id       TEXT,
            ghl_email_message_id TEXT,
            email_thread_id      TEXT,
            direction            TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
            message_type         TEXT,
            status               TEXT,
            slack_user_id        TEXT,
            outbox_id            INTEGER REFERENCES outbox (id) ON DELETE SET NULL,
            created_at           REAL NOT NULL,
            updated_at           REAL NOT NULL,
            CHECK ((slack_channel_id IS NULL) = (slack_ts IS NULL))
        )
        """,
        """
        CREATE UNIQUE INDEX messages_ghl_message_id ON messages (ghl_message_id)
            WHERE ghl_message_id IS NOT NULL
        """,
        """
        CREATE UNIQUE INDEX messages_slack ON messages (slack_channel_id, slack_ts)
            WHERE slack_ts IS NOT NULL
        """,
        "CREATE INDEX messages_thread ON messages (thread_id, created_at)",
        "CREATE INDEX messages_outbox ON messages (outbox_id)",
        # source is e.g. 'ghl_webhook', 'ghl_message', 'slack_event'; key is that source's id.
        """
        CREATE TABLE processed_deliveries (
            source     TEXT NOT NULL,
            key        TEXT NOT NULL,
            expires_at REAL NOT NULL,
            PRIMARY KEY (source, key)
        ) WITHOUT ROWID
        """,
        "CREATE INDEX processed_deliveries_expiry ON processed_deliveries (expires_at)",
        """
        CREATE TABLE kv_store (
            key        TEXT PRIMARY KEY,
            value      TEXT NOT NULL,
            updated_at REAL NOT NULL
        ) WITHOUT ROWID
        """,
    ),
)

_INBOUND_EVENTS = Migration(
    version=2,
    description="inbound events: HighLevel webhooks and polled messages, stored before any 2xx",
    statements=(
        # HighLevel retries a webhook only on 429, so an accepted event must survive a crash:
        # it is stored here before the HTTP answer and processed off the request path.
        # conversation_key orders processing per conversation (posts stay in order in a thread).
        """
        CREATE TABLE inbound_events (
            id               INTEGER PRIMARY KEY,
            source           TEXT NOT NULL,
            event_type       TEXT NOT NULL,
            conversation_key TEXT NOT NULL,
            payload          TEXT NOT NULL,
            state            TEXT NOT NULL DEFAULT 'pending'
                             CHECK (state IN ('pending', 'processing', 'done', 'failed')),
            attempts         INTEGER NOT NULL DEFAULT 0,
            last_error       TEXT,
            next_attempt_at  REAL NOT NULL,
            received_at      REAL NOT NULL,
            updated_at       REAL NOT NULL
        )
        """,
        "CREATE INDEX inbound_events_due ON inbound_events (state, next_attempt_at, id)",
        "CREATE INDEX inbound_events_conversation ON inbound_events (conversation_key, state)",
    ),
)

_SEND_ORDER_AND_SEEKS = Migration(
    version=3,
    description="inbound events ordered by when they were sent; index seeks for hot queries",
    statements=(
        # sort_at is when the message was sent (HighLevel's dateAdded, else when it arrived):
        # a conversation's events are shown in that order, whatever order they arrived in.
        # The table is rebuilt rather than given the column by ALTER TABLE, which would need
        # a DEFAULT that a forgetful INSERT would silently sort by.
        """
        CREATE TABLE inbound_events_v3 (
            id               INTEGER PRIMARY KEY,
            source           TEXT NOT NULL,
            event_type       TEXT NOT NULL,
            conversation_key TEXT NOT NULL,
            payload          TEXT NOT NULL,
            state            TEXT NOT NULL DEFAULT 'pending'
                             CHECK (state IN ('pending', 'processing', 'done', 'failed')),
            attempts         INTEGER NOT NULL DEFAULT 0,
            last_error       TEXT,
            next_attempt_at  REAL NOT NULL,
            received_at      REAL NOT NULL,
            updated_at       REAL NOT NULL,
            sort_at          REAL NOT NULL
        )
        """,
        """
        INSERT INTO inbound_events_v3 (id, source, event_type, conversation_key, payload,
            state, attempts, last_error, next_attempt_at, received_at, updated_at, sort_at)
        SELECT id, source, event_type, conversation_key, payload, state, attempts,
            last_error, next_attempt_at, received_at, updated_at, received_at
        FROM inbound_events
        """,
        "DROP TABLE inbound_events",
        "ALTER TABLE inbound_events_v3 RENAME TO inbound_events",
        "CREATE INDEX inbound_events_due ON inbound_events (state, next_attempt_at, id)",
        # A conversation's first pending event (state = 'pending', ordered by sort_at then
        # rowid) and whether one is processing are each one seek here, however long its
        # history; it replaces inbound_events_conversation (conversation_key, state).
        "CREATE INDEX inbound_events_order ON inbound_events (conversation_key, state, sort_at)",
        "CREATE INDEX inbound_events_source ON inbound_events (source, received_at)",
        # claim_next walks the pending sends in this order (due longest first, then oldest:
        # rowid ends every index) and stops at the first it may take, without sorting them.
        "CREATE INDEX outbox_due ON outbox (state, next_attempt_at)",
    ),
)

_COMPOSE_INTENTS = Migration(
    version=4,
    description="compose intents: a send a person asked for, saved before Slack is answered",
    statements=(
        # A compose is written here before the ack that tells Slack (and so the person) "ok",
        # and closed in the transaction that writes its outbox entry (same idempotency key), or
        # once the person has been told why it cannot be sent. One still open at start-up was
        # cut off by a stop or a crash: it is finished then, or the person is told.
        """
        CREATE TABLE compose_intents (
            id              INTEGER PRIMARY KEY,
            idempotency_key TEXT NOT NULL UNIQUE,
            kind            TEXT NOT NULL,
            team_id         TEXT NOT NULL,
            channel_id      TEXT NOT NULL,
            slack_user_id   TEXT NOT NULL,
            payload         TEXT NOT NULL,
            response_url    TEXT,
            state           TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'done')),
            outcome         TEXT,
            created_at      REAL NOT NULL,
            closed_at       REAL
        )
        """,
        # Only open intents are ever looked for, oldest first; closed ones stay out of the index.
        "CREATE INDEX compose_intents_open ON compose_intents (created_at) WHERE state = 'open'",
    ),
)

_CLAIM_LEASES = Migration(
    version=5,
    description="claim leases: which instance holds a send or an inbound event, and until when",
    statements=(
        # Several instances share one PostgreSQL: a claim is held under a lease its holder
        # renews, and only an expired one is taken over. Claims left by a version without
        # leases get an expired one (0), so the first instance to look takes them over.
        "ALTER TABLE outbox ADD COLUMN lease_owner TEXT",
        "ALTER TABLE outbox ADD COLUMN lease_expires_at DOUBLE PRECISION",
        "UPDATE outbox SET lease_expires_at = 0 WHERE state = 'sending'",
        "ALTER TABLE inbound_events ADD COLUMN lease_owner TEXT",
        "ALTER TABLE inbound_events ADD COLUMN lease_expires_at DOUBLE PRECISION",
        "UPDATE inbound_events SET lease_expires_at = 0 WHERE state = 'processing'",
    ),
)

_RATE_BUDGETS = Migration(
    version=6,
    description="rate budgets: HighLevel's and Slack's limits shared by every instance",
    statements=(
        # One token bucket per limited thing (storage/_budgets.py): `spent_until` is how far
        # ahead its permits are handed out. Keys name a location or a channel, never a person.
        """
        CREATE TABLE rate_budgets (
            key         TEXT PRIMARY KEY,
            spent_until DOUBLE PRECISION NOT NULL,
            updated_at  DOUBLE PRECISION NOT NULL
        )
        """,
    ),
)

_TENANCY = Migration(
    version=7,
    description="tenancy: locations and agency companies with their tokens, Slack channel links",
    statements=(
        # Tokens are ciphertext (the caller encrypts). token_version counts new access tokens;
        # refresh_owner and refresh_lease_until are the lease of the one instance refreshing
        # the row's tokens (storage/_tenancy.py). disconnect_notified is 0 or 1 on both
        # backends: `db copy` writes SQLite's integers into PostgreSQL as they are.
        """
        CREATE TABLE ghl_companies (
            company_id          TEXT PRIMARY KEY,
            name                TEXT,
            status              TEXT NOT NULL CHECK (status IN ('connected', 'disconnected')),
            access_token        TEXT,
            refresh_token       TEXT,
            expires_at          REAL,
            obtained_at         REAL,
            token_version       INTEGER NOT NULL DEFAULT 0,
            refresh_owner       TEXT,
            refresh_lease_until REAL,
            disconnected_reason TEXT,
            updated_at          REAL NOT NULL
        )
        """,
        # company_id is not a reference: a Location token names its company, which the
        # bridge may never have had a token of.
        """
        CREATE TABLE ghl_locations (
            location_id         TEXT PRIMARY KEY,
            name                TEXT,
            company_id          TEXT,
            auth                TEXT NOT NULL CHECK (auth IN ('pit', 'location', 'company')),
            status              TEXT NOT NULL CHECK (status IN ('connected', 'disconnected')),
            access_token        TEXT,
            refresh_token       TEXT,
            expires_at          REAL,
            obtained_at         REAL,
            token_version       INTEGER NOT NULL DEFAULT 0,
            refresh_owner       TEXT,
            refresh_lease_until REAL,
            inbox_team_id       TEXT,
            inbox_channel_id    TEXT,
            disconnected_reason TEXT,
            disconnect_notified INTEGER NOT NULL DEFAULT 0 CHECK (disconnect_notified IN (0, 1)),
            last_webhook_at     REAL,
            last_poll_at        REAL,
            connected_at        REAL NOT NULL,
            updated_at          REAL NOT NULL
        )
        """,
        "CREATE INDEX ghl_locations_company ON ghl_locations (company_id)",
        """
        CREATE TABLE slack_channel_links (
            team_id     TEXT NOT NULL,
            channel_id  TEXT NOT NULL,
            location_id TEXT NOT NULL,
            linked_by   TEXT NOT NULL,
            linked_at   REAL NOT NULL,
            PRIMARY KEY (team_id, channel_id)
        ) WITHOUT ROWID
        """,
        "CREATE INDEX slack_channel_links_location ON slack_channel_links (location_id)",
    ),
)


_SLACK_INSTALLS = Migration(
    version=8,
    description="Slack installations (OAuth) with their encrypted tokens, and OAuth states",
    statements=(
        # Keys are never NULL ('' stands for none) so that the primary key matches one row:
        # enterprise_id '' outside Enterprise Grid, team_id '' for an org-wide install.
        # installer_key '' is the workspace's row: its latest bot and latest installer; each
        # installing user also has a row of their own (installer_key = user id). Tokens and
        # the incoming webhook URL are ciphertext (the caller encrypts). token_version counts
        # new bot tokens; refresh_owner and refresh_lease_until are the lease of the one
        # instance rotating the bot token (storage/_slack_installs.py). Flags are 0 or 1 on
        # both backends, as `db copy` writes SQLite's integers into PostgreSQL as they are.
        """
        CREATE TABLE slack_installations (
            enterprise_id                      TEXT NOT NULL,
            team_id                            TEXT NOT NULL,
            installer_key                      TEXT NOT NULL,
            enterprise_name                    TEXT,
            enterprise_url                     TEXT,
            team_name                          TEXT,
            app_id                             TEXT,
            is_enterprise_install              INTEGER NOT NULL DEFAULT 0
                                               CHECK (is_enterprise_install IN (0, 1)),
            token_type                         TEXT,
            bot_id                             TEXT,
            bot_user_id                        TEXT,
            bot_scopes                         TEXT,
            bot_token                          TEXT,
            bot_refresh_token                  TEXT,
            bot_token_expires_at               REAL,
            bot_installed_at                   REAL,
            user_id                            TEXT,
            user_scopes                        TEXT,
            user_token                         TEXT,
            user_refresh_token                 TEXT,
            user_token_expires_at              REAL,
            incoming_webhook_url               TEXT,
            incoming_webhook_channel           TEXT,
            incoming_webhook_channel_id        TEXT,
            incoming_webhook_configuration_url TEXT,
            custom_values                      TEXT NOT NULL DEFAULT '{}',
            installed_at                       REAL NOT NULL,
            token_version                      INTEGER NOT NULL DEFAULT 0,
            refresh_owner                      TEXT,
            refresh_lease_until                REAL,
            updated_at                         REAL NOT NULL,
            PRIMARY KEY (enterprise_id, team_id, installer_key)
        ) WITHOUT ROWID
        """,
        # A state is consumed once (DELETE ... RETURNING); expired ones are purged by expiry.
        """
        CREATE TABLE slack_oauth_states (
            state      TEXT PRIMARY KEY,
            expires_at REAL NOT NULL
        ) WITHOUT ROWID
        """,
        "CREATE INDEX slack_oauth_states_expiry ON slack_oauth_states (expires_at)",
    ),
)


_SUB_ACCOUNT_OWNERS = Migration(
    version=9,
    description="sub-accounts belong to one Slack workspace, or to none yet",
    statements=(
        # The Slack team whose channels may use the sub-account; NULL: none yet (every one
        # in single-workspace mode, and those whose workspace uninstalled the app). Only
        # NULL -> team and team -> NULL ever happen (storage/_tenancy.py), so a sub-account
        # never moves from one workspace to another directly.
        "ALTER TABLE ghl_locations ADD COLUMN slack_team_id TEXT",
        "CREATE INDEX ghl_locations_slack_team ON ghl_locations (slack_team_id)",
    ),
)


_OUTBOX_FILES = Migration(
    version=10,
    description="the HighLevel URL of each Slack file a send carries, kept before the send",
    statements=(
        # One row per (send, Slack file), written once its upload answered and before the
        # send: a retry, a restart or another instance finds it and never uploads it again.
        """
        CREATE TABLE outbox_files (
            outbox_id     INTEGER REFERENCES outbox (id) ON DELETE CASCADE NOT NULL,
            slack_file_id TEXT NOT NULL,
            url           TEXT NOT NULL,
            uploaded_at   REAL NOT NULL,
            PRIMARY KEY (outbox_id, slack_file_id)
        ) WITHOUT ROWID
        """,
    ),
)


_DEFAULT_SENDER = Migration(
    version=11,
    description="a sub-account's default From address for emails (`/highlevel from`)",
    statements=(
        # NULL: none, HighLevel's own default sender of the sub-account is used. HighLevel
        # sends only from a verified sender of the sub-account; the bridge does not check.
        "ALTER TABLE ghl_locations ADD COLUMN email_from TEXT",
    ),
)


_STATUS_HISTORY = Migration(
    version=12,
    description="every send's status history (queued, sent, failed, delivered, read…): the audit",
    statements=(
        # Appended by triggers, in the statement that changes a send's state (outbox) or the
        # status HighLevel reports for one of its messages (messages), so every path that
        # changes them (the store's transitions, take-overs, hand-overs, recovery) is
        # recorded, atomically with the change. 'pending' is recorded as 'queued'; a claim
        # ('sending') is not recorded. `at` is the row's own updated_at (created_at when
        # queued): the store's clock. `detail` is last_error for 'failed' and 'unknown'.
        """
        CREATE TABLE outbox_status_history (
            id        INTEGER PRIMARY KEY,
            outbox_id INTEGER REFERENCES outbox (id) ON DELETE CASCADE NOT NULL,
            status    TEXT NOT NULL,
            at        REAL NOT NULL,
            detail    TEXT
        )
        """,
        "CREATE INDEX outbox_status_history_outbox ON outbox_status_history (outbox_id, id)",
        # The audit reads sends by when they were made.
        "CREATE INDEX outbox_created ON outbox (created_at)",
        # The sends made before this version: queued when made, then their state now and the
        # status last reported for their messages (their earlier steps were not kept).
        """
        INSERT INTO outbox_status_history (outbox_id, status, at, detail)
        SELECT id, 'queued', created_at, NULL FROM outbox ORDER BY id
        """,
        """
        INSERT INTO outbox_status_history (outbox_id, status, at, detail)
        SELECT id, state, updated_at,
            CASE WHEN state IN ('failed', 'unknown') THEN last_error END
        FROM outbox WHERE state NOT IN ('pending', 'sending') ORDER BY id
        """,
        """
        INSERT INTO outbox_status_history (outbox_id, status, at, detail)
        SELECT outbox_id, status, updated_at, NULL FROM messages
        WHERE outbox_id IS NOT NULL AND status IS NOT NULL ORDER BY id
        """,
        # One statement each (sqlite3 runs a trigger's BEGIN ... END as one statement).
        """
        CREATE TRIGGER outbox_history_queued AFTER INSERT ON outbox
        BEGIN
            INSERT INTO outbox_status_history (outbox_id, status, at, detail)
            VALUES (NEW.id, CASE NEW.state WHEN 'pending' THEN 'queued' ELSE NEW.state END,
                NEW.created_at, NULL);
        END
        """,
        """
        CREATE TRIGGER outbox_history_state AFTER UPDATE OF state ON outbox
        WHEN NEW.state IS NOT OLD.state AND NEW.state <> 'sending'
        BEGIN
            INSERT INTO outbox_status_history (outbox_id, status, at, detail)
            VALUES (NEW.id, CASE NEW.state WHEN 'pending' THEN 'queued' ELSE NEW.state END,
                NEW.updated_at,
                CASE WHEN NEW.state IN ('failed', 'unknown') THEN NEW.last_error END);
        END
        """,
        # A status of a send's message: reported on a message already linked to the send, or
        # known before the send's answer linked the message to it (an early echo).
        """
        CREATE TRIGGER messages_history_status AFTER UPDATE OF status, outbox_id ON messages
        WHEN NEW.outbox_id IS NOT NULL AND NEW.status IS NOT NULL
            AND (NEW.status IS NOT OLD.status OR OLD.outbox_id IS NULL)
        BEGIN
            INSERT INTO outbox_status_history (outbox_id, status, at, detail)
            VALUES (NEW.outbox_id, NEW.status, NEW.updated_at, NULL);
        END
        """,
        """
        CREATE TRIGGER messages_history_insert AFTER INSERT ON messages
        WHEN NEW.outbox_id IS NOT NULL AND NEW.status IS NOT NULL
        BEGIN
            INSERT INTO outbox_status_history (outbox_id, status, at, detail)
            VALUES (NEW.outbox_id, NEW.status, NEW.updated_at, NULL);
        END
        """,
    ),
)

_RETENTION = Migration(
    version=13,
    description="message retention: when a finished row's message content was purged",
    statements=(
        # MESSAGE_RETENTION_DAYS (storage/_retention.py) blanks the bodies, subjects,
        # addresses and attachment URLs of finished rows older than the limit and stamps
        # them here, so a purge run looks only at rows not purged yet (these partial
        # indexes, in the order it takes them) and never rewrites one twice.
        "ALTER TABLE outbox ADD COLUMN purged_at DOUBLE PRECISION",
        "ALTER TABLE inbound_events ADD COLUMN purged_at DOUBLE PRECISION",
        "ALTER TABLE compose_intents ADD COLUMN purged_at DOUBLE PRECISION",
        "CREATE INDEX outbox_unpurged ON outbox (updated_at) WHERE purged_at IS NULL",
        "CREATE INDEX inbound_events_unpurged ON inbound_events (updated_at)"
        " WHERE purged_at IS NULL",
        "CREATE INDEX compose_intents_unpurged ON compose_intents (closed_at)"
        " WHERE purged_at IS NULL AND state = 'done'",
    ),
)


# PostgreSQL: the same triggers as functions in PL/pgSQL (created in the schema of the
# search_path, like the tables, and finding the table there when they run).
_STATUS_HISTORY_PG_TRIGGERS = (
    """
    CREATE FUNCTION outbox_status_history_of_outbox() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO outbox_status_history (outbox_id, status, at, detail)
        VALUES (NEW.id, CASE NEW.state WHEN 'pending' THEN 'queued' ELSE NEW.state END,
            CASE WHEN TG_OP = 'INSERT' THEN NEW.created_at ELSE NEW.updated_at END,
            CASE WHEN TG_OP = 'UPDATE' AND NEW.state IN ('failed', 'unknown')
                THEN NEW.last_error END);
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER outbox_history_queued AFTER INSERT ON outbox
    FOR EACH ROW EXECUTE FUNCTION outbox_status_history_of_outbox()
    """,
    """
    CREATE TRIGGER outbox_history_state AFTER UPDATE OF state ON outbox
    FOR EACH ROW WHEN (NEW.state IS DISTINCT FROM OLD.state AND NEW.state <> 'sending')
    EXECUTE FUNCTION outbox_status_history_of_outbox()
    """,
    """
    CREATE FUNCTION outbox_status_history_of_message() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO outbox_status_history (outbox_id, status, at, detail)
        VALUES (NEW.outbox_id, NEW.status, NEW.updated_at, NULL);
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER messages_history_status AFTER UPDATE OF status, outbox_id ON messages
    FOR EACH ROW WHEN (NEW.outbox_id IS NOT NULL AND NEW.status IS NOT NULL
        AND (NEW.status IS DISTINCT FROM OLD.status OR OLD.outbox_id IS NULL))
    EXECUTE FUNCTION outbox_status_history_of_message()
    """,
    """
    CREATE TRIGGER messages_history_insert AFTER INSERT ON messages
    FOR EACH ROW WHEN (NEW.outbox_id IS NOT NULL AND NEW.status IS NOT NULL)
    EXECUTE FUNCTION outbox_status_history_of_message()
    """,
)


_IDENTITY = "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"


def _postgresql(migration: Migration, *, steps: tuple[str, ...] | None = None) -> Migration:
    """The migration with its steps in PostgreSQL's types (see the module docstring)."""

    def translate(statement: str) -> str:
        return (
            statement.replace("INTEGER PRIMARY KEY", _IDENTITY)
            .replace("INTEGER REFERENCES", "BIGINT REFERENCES")
            .replace(" REAL", " DOUBLE PRECISION")
            .replace(") WITHOUT ROWID", ")")
        )

    translated = tuple(translate(s) for s in (migration.statements if steps is None else steps))
    return Migration(migration.version, migration.description, migration.statements, translated)


MIGRATIONS: tuple[Migration, ...] = (
    _postgresql(_INITIAL),
    _postgresql(_INBOUND_EVENTS),
    # SQLite rebuilds the table to add a NOT NULL column without a default; PostgreSQL
    # can add, fill and constrain it in place (and keep the id sequence as it is).
    _postgresql(
        _SEND_ORDER_AND_SEEKS,
        steps=(
            "ALTER TABLE inbound_events ADD COLUMN sort_at REAL",
            "UPDATE inbound_events SET sort_at = received_at",
            "ALTER TABLE inbound_events ALTER COLUMN sort_at SET NOT NULL",
            "DROP INDEX inbound_events_conversation",
            "CREATE INDEX inbound_events_order"
            " ON inbound_events (conversation_key, state, sort_at)",
            "CREATE INDEX inbound_events_source ON inbound_events (source, received_at)",
            "CREATE INDEX outbox_due ON outbox (state, next_attempt_at)",
        ),
    ),
    _postgresql(_COMPOSE_INTENTS),
    _CLAIM_LEASES,
    _RATE_BUDGETS,
    _postgresql(_TENANCY),
    _postgresql(_SLACK_INSTALLS),
    _SUB_ACCOUNT_OWNERS,
    _postgresql(_OUTBOX_FILES),
    _DEFAULT_SENDER,
    # The table, indexes and back-fill translated; the triggers PostgreSQL's own.
    _postgresql(
        _STATUS_HISTORY,
        steps=(
            *(s for s in _STATUS_HISTORY.statements if "CREATE TRIGGER" not in s),
            *_STATUS_HISTORY_PG_TRIGGERS,
        ),
    ),
    _RETENTION,
    Migration(14, _INBOX_DESCRIPTION, _INBOX_STATEMENTS),
    Migration(15, _WINDOWS_DESCRIPTION, _WINDOWS_STATEMENTS),
)
LATEST_VERSION = MIGRATIONS[-1].version


def refuse_newer_schema(database: str, current: int, migrations: tuple[Migration, ...]) -> None:
    """StoreError when the database's schema is newer than the program's migrations know."""
    known = migrations[-1].version if migrations else 0
    if current > known:
        raise StoreError(
            f"database {database} has schema version {current}, newer than this "
            f"program knows ({known}); refusing to touch it"
        )


def check_migrations(migrations: tuple[Migration, ...]) -> None:
    """Versions must be 1, 2, 3, ... so a gap or reorder is caught at import, not in production."""
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(migrations) + 1)):
        raise RuntimeError(f"migration versions must be 1..n in order, got {versions}")


check_migrations(MIGRATIONS)
