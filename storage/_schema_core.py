"""Migrations 1-6: threads, messages and the outbox, the inbound queue, send order, saved
composes, claim leases and rate budgets. SQLite's SQL; storage/_migrations.py translates
it for PostgreSQL where a migration has no steps of its own."""

from __future__ import annotations

from storage._migration import Migration

INITIAL = Migration(
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

INBOUND_EVENTS = Migration(
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

SEND_ORDER_AND_SEEKS = Migration(
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

COMPOSE_INTENTS = Migration(
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

CLAIM_LEASES = Migration(
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

RATE_BUDGETS = Migration(
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
