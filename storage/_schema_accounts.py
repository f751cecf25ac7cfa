"""Migrations 7-13: sub-accounts and their tokens, Slack installations, send owners,
outbox files, default senders, the status history (with PostgreSQL's own triggers) and
message retention. SQLite's SQL; storage/_migrations.py translates it for PostgreSQL where
a migration has no steps of its own."""

from __future__ import annotations

from storage._migration import Migration

TENANCY = Migration(
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


SLACK_INSTALLS = Migration(
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


SUB_ACCOUNT_OWNERS = Migration(
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


OUTBOX_FILES = Migration(
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


DEFAULT_SENDER = Migration(
    version=11,
    description="a sub-account's default From address for emails (`/highlevel from`)",
    statements=(
        # NULL: none, HighLevel's own default sender of the sub-account is used. HighLevel
        # sends only from a verified sender of the sub-account; the bridge does not check.
        "ALTER TABLE ghl_locations ADD COLUMN email_from TEXT",
    ),
)


STATUS_HISTORY = Migration(
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

RETENTION = Migration(
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
STATUS_HISTORY_PG_TRIGGERS = (
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
