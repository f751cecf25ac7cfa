"""Dedupe marks and key/value cursors of the store."""

from __future__ import annotations

from storage._base import StoreBase, _all, _one


class DedupeMixin(StoreBase):
    """Delivery dedupe marks with expiry, and a small key/value table."""

    async def mark_processed(self, source: str, key: str, *, ttl_seconds: float) -> bool:
        """True only for the first caller of (source, key) until the mark expires."""
        now = self._clock()
        # One statement decides: a fresh insert or the take-over of an expired mark returns a
        # row; a live mark makes the upsert do nothing and return none.
        rows = await self._single_write_op(
            lambda db: _all(
                db,
                """
                INSERT INTO processed_deliveries (source, key, expires_at) VALUES (?, ?, ?)
                ON CONFLICT (source, key) DO UPDATE SET expires_at = excluded.expires_at
                    WHERE processed_deliveries.expires_at <= ?
                RETURNING 1
                """,
                (source, key, now + ttl_seconds, now),
            )
        )
        return bool(rows)

    async def forget_processed(self, source: str, key: str) -> None:
        """Drop a mark, e.g. when handling failed and the delivery should be taken again."""
        await self._single_write_op(
            lambda db: db.execute(
                "DELETE FROM processed_deliveries WHERE source = ? AND key = ?", (source, key)
            )
        )

    async def purge_expired(self, now: float | None = None) -> int:
        """Delete expired dedupe marks; returns how many."""
        when = self._clock() if now is None else now
        rows = await self._single_write_op(
            lambda db: _all(
                db, "DELETE FROM processed_deliveries WHERE expires_at <= ? RETURNING 1", (when,)
            )
        )
        return len(rows)

    # ---------------------------------------------------------------- key/value

    async def kv_get(self, key: str) -> str | None:
        row = await self._read_op(
            lambda db: _one(db, "SELECT value FROM kv_store WHERE key = ?", (key,))
        )
        return None if row is None else str(row["value"])

    async def kv_set(self, key: str, value: str) -> None:
        now = self._clock()
        await self._single_write_op(
            lambda db: db.execute(
                "INSERT INTO kv_store (key, value, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
                " updated_at = excluded.updated_at",
                (key, value, now),
            )
        )

    async def kv_delete(self, key: str) -> None:
        await self._single_write_op(
            lambda db: db.execute("DELETE FROM kv_store WHERE key = ?", (key,))
        )
