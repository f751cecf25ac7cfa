"""Message retention (MESSAGE_RETENTION_DAYS): the customer content of finished rows older
than a cut-off is blanked, a short batch at a time.

What is purged: an outbox entry's message, HTML, subject, addresses, phone numbers,
attachment URLs and Slack files (from its payload's `request`, `files` and `display`; the
keys the code reads a row by stay, such as `request.type`, `request.contactId` and
`display.contact_label`) and its uploads' URLs (outbox_files); an inbound event's payload
(the webhook or polled message as it arrived); a closed compose intent's payload (the draft)
and its response URL. Ids, states, times, HighLevel ids, the thread map (slack_threads,
messages, which hold no bodies) and the audit's history (outbox_status_history: no trigger
fires on a payload) stay. Only finished rows are purged: a send sent, failed, cancelled or
of unknown outcome (and not scheduled for after the cut-off), an event done or failed, an
intent closed. Each purged row is stamped `purged_at` (migration 13) and never looked at
again.
"""

from __future__ import annotations

from storage._base import Conn, StoreBase, _all, skip_locked

# Where an outbox payload keeps customer content (entry_payload, bot/outbound/entry.py).
_OUTBOX_CONTENT: tuple[tuple[str, ...], ...] = (
    *(
        ("request", key)
        for key in (
            "message",
            "html",
            "subject",
            "attachments",
            "emailCc",
            "emailBcc",
            "emailTo",
            "emailFrom",
            "toNumber",
            "fromNumber",
            "forward",
        )
    ),
    ("display", "contact_address"),
    ("files",),
)

# What a purged inbound event's or intent's payload becomes: valid JSON saying why it is empty.
_PURGED = '{"purged": true}'


def _purged_payload(dialect: str) -> str:
    """The expression of an outbox row's payload without its content, marked purged."""
    if dialect == "postgresql":
        removed = "CAST(payload AS jsonb)" + "".join(
            f" #- '{{{','.join(path)}}}'" for path in _OUTBOX_CONTENT
        )
        return f"CAST(({removed}) || CAST('{_PURGED}' AS jsonb) AS TEXT)"
    paths = ", ".join("'$." + ".".join(path) + "'" for path in _OUTBOX_CONTENT)
    return f"json_set(json_remove(payload, {paths}), '$.purged', json('true'))"


# Each table's finished rows not purged yet and last changed before :cutoff, as a condition
# on the row named `{t}` (the sub-select's candidate, or the row being updated).
_FINISHED_SEND = (
    "{t}state IN ('sent', 'failed', 'cancelled', 'unknown') AND {t}purged_at IS NULL"
    " AND {t}updated_at < :cutoff AND ({t}scheduled_at IS NULL OR {t}scheduled_at < :cutoff)"
)
_FINISHED_EVENT = (
    "{t}state IN ('done', 'failed') AND {t}purged_at IS NULL AND {t}updated_at < :cutoff"
)
_CLOSED_INTENT = "{t}state = 'done' AND {t}purged_at IS NULL AND {t}closed_at < :cutoff"

# At most :batch of those rows, oldest first (each table's partial index *_unpurged holds
# exactly its rows not purged yet, in that order). The condition is repeated outside the
# sub-select so that on PostgreSQL a row a concurrent transaction changed is judged again as
# it is now; SKIP LOCKED passes over a row a worker holds rather than waiting for it.
_PURGE = """
    UPDATE {table} SET {changes}, purged_at = :now
    WHERE id IN (
        SELECT candidate.id FROM {table} AS candidate
        WHERE {candidate}
        ORDER BY candidate.{order} LIMIT :batch {skip_locked}
    ) AND {row}
    RETURNING id
"""


def _purge_sql(db: Conn, table: str, changes: str, finished: str, order: str) -> str:
    return _PURGE.format(
        table=table,
        changes=changes,
        candidate=finished.format(t="candidate."),
        row=finished.format(t=""),
        order=order,
        skip_locked=skip_locked(db),
    )


class RetentionMixin(StoreBase):
    """Purging the message content of old finished rows (MESSAGE_RETENTION_DAYS)."""

    async def purge_before(self, cutoff: float, *, batch: int = 500) -> int:
        """Purge at most `batch` finished rows last changed before `cutoff`, in one short
        transaction; how many were purged (0: none is left). Sends first, then inbound
        events, then compose intents. Call again until it returns 0; idempotent, and safe
        to run on several instances at once."""
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        now = self._clock()

        async def purge(db: Conn) -> int:
            params = {"cutoff": cutoff, "now": now, "batch": batch, "purged": _PURGED}
            sends = await _all(
                db,
                _purge_sql(
                    db,
                    "outbox",
                    f"payload = {_purged_payload(db.dialect)}",
                    _FINISHED_SEND,
                    "updated_at",
                ),
                params,
            )
            if sends:
                ids = [row["id"] for row in sends]
                await db.execute(
                    "DELETE FROM outbox_files WHERE outbox_id IN"  # noqa: S608 - only "?"s are formatted in
                    f" ({', '.join('?' * len(ids))})",
                    ids,
                )
            purged = len(sends)
            for sql in (
                _purge_sql(
                    db, "inbound_events", "payload = :purged", _FINISHED_EVENT, "updated_at"
                ),
                _purge_sql(
                    db,
                    "compose_intents",
                    "payload = :purged, response_url = NULL",
                    _CLOSED_INTENT,
                    "closed_at",
                ),
            ):
                if purged >= batch:
                    break
                rows = await _all(db, sql, {**params, "batch": batch - purged})
                purged += len(rows)
            return purged

        # Not serial: each UPDATE is race-free on its own (it re-checks its rows, skips those
        # held), and a short transaction lets the workers' writes go between batches.
        return await self._write_op(purge, serial=False)
