"""Rate budgets every instance draws on: HighLevel's per-location limit, Slack's per channel.

Each budget is one row. Slack's are token buckets; HighLevel's are sliding windows of
permit starts (`take_window`, below). A token bucket is in GCRA form (the "generic cell
rate algorithm"): `spent_until` is the moment up to which permits have been handed out,
each costing 1/rate seconds. A permit may start once `now >= spent_until - (burst - 1)/rate`,
so a budget left idle lets `burst` permits go at once and then `rate` a second.

A take reserves the next permit in one upsert, race-free without the serial lock (two
instances taking at once queue on the row, and the second sees the first's
`spent_until`): the caller is told when its permit starts and waits until then, so a
busy budget hands out permits in order, with one round trip each and no polling.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

from storage._base import Conn, Row, StoreBase, _one
from storage._errors import StoreError

# CAST: PostgreSQL cannot infer the type of a parameter that is only added or compared.
_TAKE = """
INSERT INTO rate_budgets (key, spent_until, updated_at)
VALUES (:key, CAST(:now AS DOUBLE PRECISION) + CAST(:cost AS DOUBLE PRECISION),
        CAST(:now AS DOUBLE PRECISION))
ON CONFLICT (key) DO UPDATE SET
    spent_until = CASE WHEN rate_budgets.spent_until > excluded.updated_at
                       THEN rate_budgets.spent_until ELSE excluded.updated_at END
                  + CAST(:cost AS DOUBLE PRECISION),
    updated_at = excluded.updated_at
    WHERE rate_budgets.spent_until - excluded.updated_at <= CAST(:allowance AS DOUBLE PRECISION)
RETURNING spent_until
"""

_HOLD = """
INSERT INTO rate_budgets (key, spent_until, updated_at)
VALUES (:key, CAST(:until AS DOUBLE PRECISION), CAST(:now AS DOUBLE PRECISION))
ON CONFLICT (key) DO UPDATE SET
    spent_until = excluded.spent_until, updated_at = excluded.updated_at
    WHERE rate_budgets.spent_until < excluded.spent_until
"""

# A sliding window of permit starts (take_window). `starts` is a JSON array of the last
# `limit` permits' starts, oldest first; `spent_until` is the newest start, or the end of a
# hold (hold_budget), whichever is later: no permit starts before it. A permit starts at
# the latest of now, spent_until and the `limit`-th start before it plus the period.
# PostgreSQL computes it in the upsert itself, on the row as the row lock leaves it, so
# instances taking at once are served one after another, each seeing the others' starts.
_WINDOW_OLDEST = """(CASE WHEN jsonb_array_length(rate_budgets.starts::jsonb) >= :limit
    THEN (rate_budgets.starts::jsonb
          ->> (jsonb_array_length(rate_budgets.starts::jsonb) - :limit))::DOUBLE PRECISION
    END)"""
_WINDOW_NEXT = f"""GREATEST(excluded.updated_at, rate_budgets.spent_until,
    {_WINDOW_OLDEST} + CAST(:period AS DOUBLE PRECISION))"""
_TAKE_WINDOW_PG = f"""
INSERT INTO rate_budgets (key, spent_until, updated_at, starts)
VALUES (:key, CAST(:now AS DOUBLE PRECISION), CAST(:now AS DOUBLE PRECISION), :first)
ON CONFLICT (key) DO UPDATE SET
    spent_until = {_WINDOW_NEXT},
    updated_at = excluded.updated_at,
    starts = ((CASE WHEN jsonb_array_length(rate_budgets.starts::jsonb) >= :limit
                    THEN rate_budgets.starts::jsonb - 0
                    ELSE COALESCE(rate_budgets.starts::jsonb, '[]'::jsonb) END)
              || to_jsonb({_WINDOW_NEXT}))::text
    WHERE {_WINDOW_NEXT} - excluded.updated_at <= CAST(:patience AS DOUBLE PRECISION)
RETURNING spent_until
"""  # noqa: S608 - built from the constant fragments above only
_WINDOW_ROW = "SELECT spent_until, starts FROM rate_budgets WHERE key = ?"
_SAVE_WINDOW = """
INSERT INTO rate_budgets (key, spent_until, updated_at, starts) VALUES (?, ?, ?, ?)
ON CONFLICT (key) DO UPDATE SET
    spent_until = excluded.spent_until, updated_at = excluded.updated_at,
    starts = excluded.starts
"""

# A take that may wait "forever" still needs a number in the statement.
_NO_LIMIT = 1e9


@dataclass(frozen=True, slots=True)
class BudgetGrant:
    """The answer to a take: a permit starting at `start_at` (store clock), or none.

    `wait` is `start_at - now`: how long the caller waits before it goes. Without a
    permit (it would have started later than `max_wait`), it is when one could start.
    """

    granted: bool
    start_at: float
    wait: float


def _shape(rate: float, burst: int) -> tuple[float, float]:
    """A permit's cost in seconds and the burst tolerance (GCRA's T and tau)."""
    if not (rate > 0 and math.isfinite(rate)):
        raise StoreError("a rate budget needs a positive rate")
    if burst < 1:
        raise StoreError("a rate budget needs a burst of at least 1")
    cost = 1.0 / rate
    return cost, (burst - 1) * cost


def window_start(
    spent_until: float | None, starts: Sequence[float], *, now: float, limit: int, period: float
) -> float:
    """When the next permit of a sliding window may start (see _TAKE_WINDOW_PG)."""
    start = now if spent_until is None else max(now, spent_until)
    if len(starts) >= limit:
        start = max(start, starts[len(starts) - limit] + period)
    return start


def _window(limit: int, period: float) -> None:
    if limit < 1:
        raise StoreError("a rate window needs a limit of at least 1")
    if not (period > 0 and math.isfinite(period)):
        raise StoreError("a rate window needs a positive period")


def _starts(text: str | None) -> list[float]:
    return [] if text is None else [float(start) for start in json.loads(text)]


class BudgetsMixin(StoreBase):
    """Token buckets and sliding windows shared by every instance on the database."""

    async def take_budget(
        self,
        key: str,
        *,
        rate: float,
        burst: int,
        max_wait: float | None = None,
        now: float | None = None,
    ) -> BudgetGrant:
        """Reserve the next permit of budget `key` (`rate` a second, bursts of `burst`).

        The permit is granted only if it starts within `max_wait` seconds (None: any
        wait); a take that is not granted changes nothing. Keys name what is limited
        (`ghl:<location>`, `slack:<team>:<channel>`), never a person.
        """
        cost, tolerance = _shape(rate, burst)
        when = self._clock() if now is None else now
        patience = _NO_LIMIT if max_wait is None else max(0.0, max_wait)

        async def take(db: Conn) -> tuple[bool, Row | None]:
            row = await _one(
                db,
                _TAKE,
                {"key": key, "now": when, "cost": cost, "allowance": tolerance + patience},
            )
            if row is not None:
                return True, row
            # Not granted (nothing changed): when one could start.
            return False, await _one(
                db, "SELECT spent_until FROM rate_budgets WHERE key = ?", (key,)
            )

        granted, row = await self._single_write_op(take)
        if granted and row is not None:
            # spent_until moved to max(old, now) + cost; the permit starts where the burst
            # tolerance lets it, and never before now.
            start = max(when, float(row["spent_until"]) - cost - tolerance)
            return BudgetGrant(granted=True, start_at=start, wait=start - when)
        spent_until = when if row is None else float(row["spent_until"])
        start = max(when, spent_until - tolerance)
        return BudgetGrant(granted=False, start_at=start, wait=start - when)

    async def take_window(
        self,
        key: str,
        *,
        limit: int,
        period: float,
        max_wait: float | None = None,
        now: float | None = None,
    ) -> BudgetGrant:
        """Reserve the next permit of budget `key`: at most `limit` permits start in any
        `period` seconds, the first `limit` of an idle budget at once.

        HighLevel counts requests in a sliding window; a window of starts, its period a
        margin longer than the server's window, lets a location's whole limit through in
        each window where a token bucket under the same window could not (see
        bot/cluster/budget.py). `max_wait` and the answer are as for `take_budget`; a hold
        (`hold_budget`) delays every permit until it ends.
        """
        _window(limit, period)
        when = self._clock() if now is None else now
        patience = _NO_LIMIT if max_wait is None else max(0.0, max_wait)

        async def take(db: Conn) -> tuple[bool, float]:
            if db.dialect == "postgresql":
                row = await _one(
                    db,
                    _TAKE_WINDOW_PG,
                    {
                        "key": key,
                        "now": when,
                        "first": json.dumps([when]),
                        "limit": limit,
                        "period": period,
                        "patience": patience,
                    },
                )
                if row is not None:
                    return True, float(row["spent_until"])
            # SQLite (its write transactions are serial), or why PostgreSQL refused it.
            row = await _one(db, _WINDOW_ROW, (key,))
            spent_until = None if row is None else float(row["spent_until"])
            starts = [] if row is None else _starts(row["starts"])
            start = window_start(spent_until, starts, now=when, limit=limit, period=period)
            if start - when > patience or db.dialect == "postgresql":
                return False, start
            ring = [*starts[max(0, len(starts) - limit + 1) :], start]
            await db.execute(_SAVE_WINDOW, (key, start, when, json.dumps(ring)))
            return True, start

        granted, start = await self._single_write_op(take)
        return BudgetGrant(granted=granted, start_at=start, wait=start - when)

    async def hold_budget(
        self,
        key: str,
        *,
        seconds: float,
        rate: float,
        burst: int,
        now: float | None = None,
    ) -> None:
        """No permit of `key` starts for `seconds` (after a 429); then one, then `rate` a second.

        A hold never shortens one already in place, nor permits already reserved.
        """
        _cost, tolerance = _shape(rate, burst)
        when = self._clock() if now is None else now
        until = when + max(0.0, seconds) + tolerance
        await self._single_write_op(
            lambda db: db.execute(_HOLD, {"key": key, "until": until, "now": when})
        )
