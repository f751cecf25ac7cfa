"""Files of outbox entries: the URL HighLevel gave each uploaded Slack file, kept before the
send that carries it, so no retry, restart or other instance uploads it again."""

from __future__ import annotations

from storage._base import Conn, StoreBase, _all

# ON CONFLICT DO NOTHING: an upload recorded once keeps its first URL (the one a send may
# already carry); a second record of the same file changes nothing.
_RECORD = (
    "INSERT INTO outbox_files (outbox_id, slack_file_id, url, uploaded_at)"
    " VALUES (:outbox_id, :file_id, :url, :now)"
    " ON CONFLICT (outbox_id, slack_file_id) DO NOTHING"
)


class OutboxFilesMixin(StoreBase):
    """Uploaded files of sends: (outbox entry, Slack file) → HighLevel URL."""

    async def record_outbox_upload(self, outbox_id: int, slack_file_id: str, url: str) -> str:
        """Keep `url` as the upload of the entry's Slack file; the URL kept (an earlier one
        wins) is returned."""
        params = {"outbox_id": outbox_id, "file_id": slack_file_id, "url": url}

        async def record(db: Conn) -> str:
            await db.execute(_RECORD, {**params, "now": self._clock()})
            rows = await _all(
                db,
                "SELECT url FROM outbox_files WHERE outbox_id = :outbox_id"
                " AND slack_file_id = :file_id",
                params,
            )
            return str(rows[0][0])

        return await self._write_op(record, serial=False)

    async def set_outbox_conversation(self, outbox_id: int, conversation_id: str) -> None:
        """The HighLevel conversation the entry's files are uploaded into (found or made):
        kept, since HighLevel's search may not show a conversation it has just made."""
        await self._single_write_op(
            lambda db: db.execute(
                "UPDATE outbox SET conversation_id = :conversation_id"
                " WHERE id = :outbox_id AND conversation_id IS NULL",
                {"outbox_id": outbox_id, "conversation_id": conversation_id},
            )
        )

    async def outbox_uploads(self, outbox_id: int) -> dict[str, str]:
        """The entry's uploaded files so far: Slack file id → HighLevel URL."""
        rows = await self._read_op(
            lambda db: _all(
                db,
                "SELECT slack_file_id, url FROM outbox_files WHERE outbox_id = ?",
                (outbox_id,),
            )
        )
        return {str(row[0]): str(row[1]) for row in rows}
