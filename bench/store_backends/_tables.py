"""The tables SQLAlchemy's statements name."""

from __future__ import annotations

import sqlalchemy as sa  # type: ignore[import-not-found, unused-ignore]

# The statements' tables, as a port would declare them (the migrations create them).
_META = sa.MetaData()
_THREADS = sa.Table(
    "slack_threads",
    _META,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("team_id", sa.Text),
    sa.Column("channel_id", sa.Text),
    sa.Column("thread_ts", sa.Text),
    sa.Column("location_id", sa.Text),
    sa.Column("contact_id", sa.Text),
    sa.Column("conversation_id", sa.Text),
    sa.Column("channel_type", sa.Text),
    sa.Column("email_thread_id", sa.Text),
    sa.Column("subject", sa.Text),
    sa.Column("contact_label", sa.Text),
    sa.Column("created_at", sa.Float),
    sa.Column("updated_at", sa.Float),
)
_OUTBOX = sa.Table(
    "outbox",
    _META,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("idempotency_key", sa.Text),
    sa.Column("team_id", sa.Text),
    sa.Column("channel_id", sa.Text),
    sa.Column("slack_user_id", sa.Text),
    sa.Column("thread_id", sa.BigInteger),
    sa.Column("location_id", sa.Text),
    sa.Column("contact_id", sa.Text),
    sa.Column("conversation_id", sa.Text),
    sa.Column("message_type", sa.Text),
    sa.Column("payload", sa.Text),
    sa.Column("state", sa.Text),
    sa.Column("attempts", sa.Integer),
    sa.Column("last_error", sa.Text),
    sa.Column("next_attempt_at", sa.Float),
    sa.Column("ghl_message_id", sa.Text),
    sa.Column("ghl_email_message_id", sa.Text),
    sa.Column("ghl_message_ids", sa.Text),
    sa.Column("slack_ts", sa.Text),
    sa.Column("scheduled_at", sa.Float),
    sa.Column("created_at", sa.Float),
    sa.Column("updated_at", sa.Float),
)
_MESSAGES = sa.Table(
    "messages",
    _META,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("thread_id", sa.BigInteger),
    sa.Column("slack_channel_id", sa.Text),
    sa.Column("slack_ts", sa.Text),
    sa.Column("ghl_message_id", sa.Text),
    sa.Column("ghl_email_message_id", sa.Text),
    sa.Column("email_thread_id", sa.Text),
    sa.Column("direction", sa.Text),
    sa.Column("message_type", sa.Text),
    sa.Column("status", sa.Text),
    sa.Column("slack_user_id", sa.Text),
    sa.Column("outbox_id", sa.BigInteger),
    sa.Column("created_at", sa.Float),
    sa.Column("updated_at", sa.Float),
)
_INBOUND = sa.Table(
    "inbound_events",
    _META,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("source", sa.Text),
    sa.Column("event_type", sa.Text),
    sa.Column("conversation_key", sa.Text),
    sa.Column("payload", sa.Text),
    sa.Column("state", sa.Text),
    sa.Column("attempts", sa.Integer),
    sa.Column("last_error", sa.Text),
    sa.Column("next_attempt_at", sa.Float),
    sa.Column("received_at", sa.Float),
    sa.Column("updated_at", sa.Float),
    sa.Column("sort_at", sa.Float),
)
_DELIVERIES = sa.Table(
    "processed_deliveries",
    _META,
    sa.Column("source", sa.Text, primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("expires_at", sa.Float),
)
