"""Claim leases: how several instances share the outbox and the inbound queue safely.

A claim (an outbox entry 'sending', an inbound event 'processing') names the instance
holding it and when its lease ends. The holder renews its leases while it works; a claim
whose lease ran out belongs to an instance that died (or lost its database for longer than
a lease), and only then does another instance take it over. An instance stopping gracefully
hands its claims over instead (`hand_over`), for the others to take at once.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection
from dataclasses import dataclass

from storage._base import Conn, Row, StoreBase, _all, _one

log = logging.getLogger(__name__)

_TAKEOVER_ERROR = (
    "the instance sending it stopped answering; the request may have reached HighLevel"
)
# The key/value entry a hand-over rewrites, so that live instances look for it at once.
_HAND_OVER_KEY = "leases.last_hand_over"


@dataclass(frozen=True, slots=True)
class Takeover:
    """Claims of dead instances taken over: sends made uncertain, events queued again, and
    sends whose outcome (sent, failed, …) their Slack post may not show yet."""

    sends: int
    events: int
    unshown: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class HandOver:
    """What a stopping instance gave back: sends put back in the queue (never sent), sends
    left for another instance to take over (the request may have reached HighLevel, or the
    outcome may not be shown yet), and inbound events put back in the queue."""

    requeued_sends: tuple[int, ...] = ()
    expired_sends: tuple[int, ...] = ()
    events: tuple[int, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.requeued_sends or self.expired_sends or self.events)


class LeasesMixin(StoreBase):
    """Renewal of this instance's claims and take-over of expired ones."""

    async def renew_leases(self) -> int:
        """Extend every claim this instance holds by a lease from now; how many it holds."""
        now = self._clock()
        params = {"owner": self._instance_id, "until": now + self._lease_seconds, "now": now}

        async def renew(db: Conn) -> int:
            # Also the sends this instance has finished and is still showing in Slack.
            sends = await _all(
                db,
                "UPDATE outbox SET lease_expires_at = :until"
                " WHERE lease_owner = :owner RETURNING id",
                params,
            )
            events = await _all(
                db,
                "UPDATE inbound_events SET lease_expires_at = :until"
                " WHERE state = 'processing' AND lease_owner = :owner RETURNING id",
                params,
            )
            return len(sends) + len(events)

        return await self._write_op(renew, serial=False)

    async def take_over_expired(self, *, every_claim: bool = False) -> Takeover:
        """Take over the claims whose lease ran out, whoever held them.

        A send's request may have reached HighLevel before its holder died, so the entry
        becomes 'unknown' and is reconciled against the conversation before anyone may
        resend it; an inbound event goes back to 'pending' (its posts are idempotent); a
        send that was finished but maybe not shown is returned in `unshown`, for the caller
        to show its outcome. Claims held under a live lease are never touched, unless
        `every_claim` (a process alone on its database, at start-up: all are a dead one's).
        """
        now = self._clock()
        # Never this process's own claims: it renews those, and at start-up (`every_claim`)
        # its workers may already hold some.
        expired = {"cutoff": math.inf if every_claim else now, "me": self._instance_id}

        async def take(db: Conn) -> tuple[list[Row], list[Row], list[Row]]:
            sends = await _all(
                db,
                "UPDATE outbox SET state = 'unknown', last_error = :error, updated_at = :now,"
                " lease_owner = NULL, lease_expires_at = NULL"
                " WHERE state = 'sending' AND lease_expires_at < :cutoff"
                " AND (lease_owner IS NULL OR lease_owner <> :me) RETURNING id",
                {"error": _TAKEOVER_ERROR, "now": now, **expired},
            )
            unshown = await _all(
                db,
                "UPDATE outbox SET lease_owner = NULL, lease_expires_at = NULL"
                " WHERE state <> 'sending' AND lease_owner IS NOT NULL AND lease_owner <> :me"
                " AND lease_expires_at < :cutoff"
                " RETURNING id",
                expired,
            )
            events = await _all(
                db,
                "UPDATE inbound_events SET state = 'pending', updated_at = :now,"
                " lease_owner = NULL, lease_expires_at = NULL"
                " WHERE state = 'processing' AND lease_expires_at < :cutoff"
                " AND (lease_owner IS NULL OR lease_owner <> :me) RETURNING id",
                {"now": now, **expired},
            )
            return sends, unshown, events

        sends, unshown, events = await self._write_op(take, serial=False)
        if sends or events:
            log.warning(
                "took over the claims of a stopped instance: %d sends (now unknown: %s), "
                "%d inbound events (queued again)",
                len(sends),
                sorted(row["id"] for row in sends),
                len(events),
            )
        return Takeover(
            sends=len(sends),
            events=len(events),
            unshown=tuple(sorted(row["id"] for row in unshown)),
        )

    async def hand_over(self, *, may_have_sent: Collection[int] = ()) -> HandOver:
        """Give back every claim this instance holds, at a graceful stop, so that another
        instance finishes the work now rather than once the lease has run out.

        A send 'sending' whose request never left (its id not in `may_have_sent`) goes back
        to 'pending', attempts unchanged (its Slack post may exist: the next claim looks for
        it). A send in `may_have_sent`, and a finished send whose post may not show its
        outcome yet, keep their claim with the lease expired, so that the next take-over
        (`take_over_expired`) treats them as a dead instance's: reconciled against the
        conversation before anyone may resend, or their outcome shown. Inbound events go back
        to 'pending' (their posts are idempotent). Anything given back also rewrites the mark
        `last_hand_over` reads. Call it once this process works on none of them any more and
        renews no lease: a renewal would make the expired ones its own again.
        """
        now = self._clock()
        kept = sorted(set(may_have_sent))
        not_sent = f"AND id NOT IN ({', '.join('?' for _ in kept)})" if kept else ""
        requeue_sql = f"""
            UPDATE outbox SET state = 'pending', updated_at = ?,
                lease_owner = NULL, lease_expires_at = NULL
            WHERE state = 'sending' AND lease_owner = ? {not_sent}
            RETURNING id
        """  # noqa: S608 - only placeholders are formatted in
        me = self._instance_id

        async def give_back(db: Conn) -> HandOver:
            requeued = await _all(db, requeue_sql, (now, me, *kept))
            # Expired a lease ago, not just now: a taker whose clock is behind this one's
            # (by less than a lease) sees it expired too.
            expired = await _all(
                db,
                "UPDATE outbox SET lease_expires_at = ? WHERE lease_owner = ? RETURNING id",
                (now - self._lease_seconds, me),
            )
            events = await _all(
                db,
                "UPDATE inbound_events SET state = 'pending', updated_at = ?,"
                " lease_owner = NULL, lease_expires_at = NULL"
                " WHERE state = 'processing' AND lease_owner = ? RETURNING id",
                (now, me),
            )
            handed = HandOver(
                requeued_sends=_ids(requeued), expired_sends=_ids(expired), events=_ids(events)
            )
            if handed:
                await db.execute(
                    "INSERT INTO kv_store (key, value, updated_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
                    " updated_at = excluded.updated_at",
                    (_HAND_OVER_KEY, f"{me} {now!r}", now),
                )
            return handed

        return await self._write_op(give_back, serial=False)

    async def last_hand_over(self) -> str | None:
        """A mark that changes with every hand-over (None before the first): one indexed
        read, cheap enough for live instances to look at every second."""
        row = await self._read_op(
            lambda db: _one(db, "SELECT value FROM kv_store WHERE key = ?", (_HAND_OVER_KEY,))
        )
        return None if row is None else str(row["value"])

    async def release_claim(self, outbox_id: int) -> None:
        """The send's Slack post shows its outcome: this instance lets go of it."""
        await self._single_write_op(
            lambda db: db.execute(
                "UPDATE outbox SET lease_owner = NULL, lease_expires_at = NULL"
                " WHERE id = ? AND state <> 'sending' AND lease_owner = ?",
                (outbox_id, self._instance_id),
            )
        )


def _ids(rows: list[Row]) -> tuple[int, ...]:
    return tuple(sorted(int(row["id"]) for row in rows))
