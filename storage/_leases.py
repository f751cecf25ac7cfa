"""Claim leases: how several instances share the outbox and the inbound queue safely.

A claim (an outbox entry 'sending', an inbound event 'processing') names the instance
holding it and when its lease ends. The holder renews its leases while it works; a claim
whose lease ran out belongs to an instance that died (or lost its database for longer than
a lease), and only then does another instance take it over.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from storage._base import StoreBase, _all

log = logging.getLogger(__name__)

_TAKEOVER_ERROR = (
    "the instance sending it stopped answering; the request may have reached HighLevel"
)


@dataclass(frozen=True, slots=True)
class Takeover:
    """Claims of dead instances taken over: sends made uncertain, events queued again, and
    sends whose outcome (sent, failed, …) their Slack post may not show yet."""

    sends: int
    events: int
    unshown: tuple[int, ...] = ()


class LeasesMixin(StoreBase):
    """Renewal of this instance's claims and take-over of expired ones."""

    async def renew_leases(self) -> int:
        """Extend every claim this instance holds by a lease from now; how many it holds."""
        now = self._clock()
        params = {"owner": self._instance_id, "until": now + self._lease_seconds, "now": now}
        async with self._write(serial=False) as db:
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
        async with self._write(serial=False) as db:
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

    async def release_claim(self, outbox_id: int) -> None:
        """The send's Slack post shows its outcome: this instance lets go of it."""
        async with self._write(serial=False) as db:
            await db.execute(
                "UPDATE outbox SET lease_owner = NULL, lease_expires_at = NULL"
                " WHERE id = ? AND state <> 'sending' AND lease_owner = ?",
                (outbox_id, self._instance_id),
            )
