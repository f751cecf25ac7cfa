"""SharedBudget on the real PostgreSQL: waits from the shared bucket, and a local share while
the database is away (an error, or a statement stuck behind a lock)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import asyncpg
import pytest

from bot.cluster import BucketShape, BudgetExhausted, SharedBudget, WindowShape
from storage import PostgresStore
from tests.storage._support import FakeClock

SHAPE = BucketShape(rate=8.0, burst=10)
KEY = "ghl:loc-1"


class FakeTime:
    """The budget's monotonic clock; it moves when the budget sleeps, or by hand."""

    def __init__(self) -> None:
        self.now = 500.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


@pytest.fixture
def store_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(postgres_url: str, store_clock: FakeClock) -> AsyncIterator[PostgresStore]:
    async with PostgresStore(postgres_url, clock=store_clock) as opened:
        yield opened


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


def budget_on(
    store: PostgresStore,
    fake: FakeTime,
    *,
    database_timeout: float = 2.0,
    retry_database_after: float = 5.0,
) -> SharedBudget:
    return SharedBudget(
        store,
        instances=4,
        database_timeout=database_timeout,
        retry_database_after=retry_database_after,
        clock=fake.clock,
        sleep=fake.sleep,
    )


def test_the_window_under_highlevels_leaves_room_for_late_arrivals() -> None:
    shape = WindowShape.under(100, 10.0)
    # A hundred permits, each 10.5 s after the hundredth before it: requests that reach
    # HighLevel up to 0.5 s later than others still never put 101 in its 10 s window.
    assert shape.limit == 100
    assert shape.period == pytest.approx(10.5)
    assert shape.limit / shape.period / (100 / 10.0) >= 0.95  # of HighLevel's ceiling
    # Without the database, each of four instances keeps to a quarter of that, one at a time.
    share = shape.share(4)
    assert share.rate == pytest.approx(100 / 10.5 / 4)
    assert share.burst == 1


async def test_a_window_lets_its_whole_limit_go_then_sleeps_a_period(
    store: PostgresStore, fake: FakeTime
) -> None:
    budget = budget_on(store, fake)
    window = WindowShape.under(10, 10.0)
    waited = [await budget.take(KEY, window) for _ in range(12)]

    # The store's clock stands still: ten at once, then two a period (10.5 s) after.
    assert waited == pytest.approx([0.0] * 10 + [10.5, 10.5])
    assert fake.sleeps == pytest.approx([10.5, 10.5])


async def test_a_hold_of_a_window_stops_every_permit_until_it_ends(
    store: PostgresStore, fake: FakeTime
) -> None:
    budget = budget_on(store, fake)
    window = WindowShape.under(10, 10.0)
    await budget.hold(KEY, window, 4.0)
    assert [await budget.take(KEY, window) for _ in range(3)] == pytest.approx([4.0] * 3)


async def test_takes_past_the_burst_sleep_until_their_permit(
    store: PostgresStore, fake: FakeTime
) -> None:
    budget = budget_on(store, fake)
    waited = [await budget.take(KEY, SHAPE) for _ in range(SHAPE.burst + 2)]

    assert waited[: SHAPE.burst] == [0.0] * SHAPE.burst
    # The store's clock stands still: the 11th and 12th permits start 1 and 2 costs ahead.
    assert waited[SHAPE.burst :] == pytest.approx([0.125, 0.25])
    assert fake.sleeps == pytest.approx([0.125, 0.25])


async def test_a_permit_beyond_max_wait_is_refused_without_waiting(
    store: PostgresStore, fake: FakeTime
) -> None:
    budget = budget_on(store, fake)
    for _ in range(SHAPE.burst):
        await budget.take(KEY, SHAPE)

    with pytest.raises(BudgetExhausted) as refused:
        await budget.take(KEY, SHAPE, max_wait=0.1)
    assert refused.value.wait == pytest.approx(0.125)
    assert fake.sleeps == []
    assert await budget.take(KEY, SHAPE) == pytest.approx(0.125)  # the refusal took nothing


async def test_a_closed_database_falls_back_to_a_local_share_and_warns_once(
    store: PostgresStore, fake: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    budget = budget_on(store, fake, retry_database_after=5.0)
    await store.close()

    with caplog.at_level(logging.DEBUG, logger="bot.cluster.budget"):
        waited = [await budget.take(KEY, SHAPE) for _ in range(3)]
        fake.now += 5.0  # the database is asked again, and fails again
        await budget.take(KEY, SHAPE)

    assert budget.degraded
    # A quarter of 8 a second, no burst: one at once, then one each half second.
    assert waited == pytest.approx([0.0, 0.5, 0.5])
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "1/4" in warnings[0].getMessage()


async def test_a_stuck_database_times_out_to_the_local_share_then_comes_back(
    store: PostgresStore,
    postgres_url: str,
    fake: FakeTime,
    store_clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    budget = budget_on(store, fake, database_timeout=1.0, retry_database_after=5.0)
    await store.take_budget(KEY, rate=SHAPE.rate, burst=SHAPE.burst)  # the row to lock
    admin = await asyncpg.connect(postgres_url)
    try:
        lock = admin.transaction()
        await lock.start()
        await admin.execute("SELECT * FROM rate_budgets WHERE key = $1 FOR UPDATE", KEY)

        with caplog.at_level(logging.INFO, logger="bot.cluster.budget"):
            waited = [await budget.take(KEY, SHAPE) for _ in range(3)]
            assert budget.degraded
            await lock.rollback()
            fake.now += 5.0
            back = await budget.take(KEY, SHAPE)
    finally:
        await admin.close()

    assert waited == pytest.approx([0.0, 0.5, 0.5])  # the local share, not the stuck row
    assert not budget.degraded
    assert back == 0.0  # the second permit of the shared bucket (burst 10)
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in messages] == ["WARNING", "INFO"]
    assert "available again" in messages[1][1]
    grant = await store.take_budget(KEY, rate=SHAPE.rate, burst=SHAPE.burst, now=store_clock.now)
    assert grant.wait == 0.0  # third permit: the stuck takes reserved nothing
    spent = await admin_spent_until(postgres_url)
    assert spent == pytest.approx(store_clock.now + 3 * 0.125, rel=0, abs=1e-6)


async def test_a_hold_reaches_the_other_instances(postgres_url: str, fake: FakeTime) -> None:
    async with (
        PostgresStore(postgres_url) as first_store,
        PostgresStore(postgres_url) as second_store,
    ):
        first = budget_on(first_store, fake)
        second = budget_on(second_store, fake)
        await first.hold(KEY, SHAPE, 3.0)
        waited = await second.take(KEY, SHAPE)
    assert 2.0 < waited <= 3.0


async def admin_spent_until(url: str) -> float:
    conn = await asyncpg.connect(url)
    try:
        return float(await conn.fetchval("SELECT spent_until FROM rate_budgets"))
    finally:
        await conn.close()
