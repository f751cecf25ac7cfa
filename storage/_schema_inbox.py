"""Migration 14: working the inbox from Slack (history shown, conversation state, Home tab)."""

from __future__ import annotations

DESCRIPTION = "the inbox from Slack: earlier messages shown, waiting, unread, star, assignee"

# The same SQL on SQLite and PostgreSQL.
STATEMENTS: tuple[str, ...] = (
    # A conversation's state as its thread root shows it. waiting_since: the first
    # customer message not answered yet (NULL: nobody waits); unread_count: HighLevel's,
    # as last set from Slack or told by a ConversationUnreadUpdate webhook (NULL: not
    # known); assigned_to: the HighLevel user id the contact was assigned to from Slack.
    "ALTER TABLE slack_threads ADD COLUMN waiting_since DOUBLE PRECISION",
    "ALTER TABLE slack_threads ADD COLUMN last_inbound_at DOUBLE PRECISION",
    "ALTER TABLE slack_threads ADD COLUMN unread_count INTEGER",
    "ALTER TABLE slack_threads ADD COLUMN starred INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE slack_threads ADD COLUMN assigned_to TEXT",
    "CREATE INDEX slack_threads_waiting ON slack_threads (team_id, waiting_since)"
    " WHERE waiting_since IS NOT NULL",
    # "Earlier messages": where paging back through HighLevel's history stopped
    # (its lastMessageId), whether it reached the start, and a short lease so two
    # clicks on two instances never post the same page.
    "ALTER TABLE slack_threads ADD COLUMN history_cursor TEXT",
    "ALTER TABLE slack_threads ADD COLUMN history_done INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE slack_threads ADD COLUMN history_busy_until DOUBLE PRECISION",
    # Each HighLevel message posted into a thread as history, once.
    """
    CREATE TABLE thread_history (
        thread_id     INTEGER NOT NULL REFERENCES slack_threads (id) ON DELETE CASCADE,
        ghl_message_id TEXT NOT NULL,
        shown_at      DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (thread_id, ghl_message_id)
    )
    """,
    # HighLevel's own words on a send it accepted (SendMessageResponseDto.msg, e.g. "Message
    # queued successfully."), shown on the send's post. Not customer content.
    "ALTER TABLE outbox ADD COLUMN ghl_msg TEXT",
)
