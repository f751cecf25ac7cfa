"""Rate budgets shared by instances: the store's token buckets, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from itertools import pairwise
from typing import Any

import pytest

from storage import LATEST_VERSION, Store, StoreError
from storage._budgets import BudgetGrant
from tests.storage._support import START, Backend, FakeClock

RATE = 8.0  # permits a second
BURST = 10
COST = 1 / RATE
KEY = "ghl:loc-1"


def at(expected: Any) -> Any:
    """A moment (or moments) on the store's clock, to the microsecond: pytest.approx's
    relative tolerance would allow minutes at 1.7e9 s."""
    return pytest.approx(expected, rel=0, abs=1e-6)


async def take(store: Store, key: str = KEY, **extra: float | None) -> BudgetGrant:
    return await store.take_budget(key, rate=RATE, burst=BURST, **extra)


async def test_the_table_comes_with_migration_6(store: Store, backend: Backend) -> None:
    assert LATEST_VERSION >= 6
    assert "rate_budgets" in backend.table_names()


async def test_an_idle_budget_grants_its_burst_at_once_then_paces(
    store: Store, clock: FakeClock
) -> None:
    grants = [await take(store) for _ in range(BURST + 3)]

    assert all(grant.granted for grant in grants)
    assert [grant.wait for grant in grants[:BURST]] == [0.0] * BURST
    # Reservations: each further permit starts one cost after the one before.
    assert [grant.wait for grant in grants[BURST:]] == pytest.approx([COST, 2 * COST, 3 * COST])
    assert grants[-1].start_at == at(clock.now + 3 * COST)


async def test_time_refills_the_bucket_up_to_its_burst(store: Store, clock: FakeClock) -> None:
    for _ in range(BURST):
        await take(store, max_wait=0)
    clock.advance(0.5)  # four permits' worth
    granted_now = [(await take(store, max_wait=0)).granted for _ in range(6)]
    assert granted_now == [True] * 4 + [False] * 2

    clock.advance(3600)  # a long pause refills only up to the burst
    granted_now = [(await take(store, max_wait=0)).granted for _ in range(BURST + 1)]
    assert granted_now == [True] * BURST + [False]


async def test_a_take_beyond_max_wait_is_refused_and_changes_nothing(
    store: Store, clock: FakeClock
) -> None:
    for _ in range(BURST):
        await take(store)

    refused = [await take(store, max_wait=COST / 2) for _ in range(3)]
    assert [grant.granted for grant in refused] == [False] * 3
    assert [grant.wait for grant in refused] == pytest.approx([COST] * 3)

    granted = await take(store, max_wait=COST)
    assert granted.granted
    assert granted.wait == pytest.approx(COST)


async def test_keys_are_budgets_of_their_own(store: Store) -> None:
    for _ in range(BURST):
        await take(store, "ghl:loc-1")
    assert (await take(store, "ghl:loc-1", max_wait=0)).granted is False
    assert (await take(store, "ghl:loc-2", max_wait=0)).granted is True
    assert (await take(store, "slack:T1:C1", max_wait=0)).granted is True


async def test_a_hold_stops_every_permit_then_lets_one_go_then_paces(
    store: Store, clock: FakeClock
) -> None:
    await store.hold_budget(KEY, seconds=5.0, rate=RATE, burst=BURST)

    grants = [await take(store) for _ in range(3)]
    assert [grant.wait for grant in grants] == pytest.approx([5.0, 5.0 + COST, 5.0 + 2 * COST])


async def test_a_shorter_hold_never_cuts_a_longer_one(store: Store, clock: FakeClock) -> None:
    await store.hold_budget(KEY, seconds=5.0, rate=RATE, burst=BURST)
    await store.hold_budget(KEY, seconds=1.0, rate=RATE, burst=BURST)
    assert (await take(store)).wait == pytest.approx(5.0)


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (math.inf, 1), (1.0, 0)])
async def test_a_shapeless_budget_is_refused(store: Store, rate: float, burst: int) -> None:
    with pytest.raises(StoreError):
        await store.take_budget(KEY, rate=rate, burst=burst)


# ---------------------------------------------------------------- several instances


async def test_three_instances_at_one_instant_get_exactly_the_budget(
    backend: Backend, clock: FakeClock
) -> None:
    """A lost update (two takes reading the same row) would grant more than the bucket holds."""
    async with AsyncExitStack() as stack:
        stores: list[Store] = [
            await stack.enter_async_context(backend.new_store(clock)) for _ in range(3)
        ]
        assert await granted_at_once(stores, take) == BURST
        clock.advance(0.5)
        assert await granted_at_once(stores, take) == 4  # 0.5 s at 8 a second


async def test_three_instances_reserving_at_once_keep_every_window_within_the_budget(
    backend: Backend,
) -> None:
    """Real clock, 3 x 100 reservations at once: no 10 s window of their starts holds more than
    burst + rate x 10 = 90 permits, and they follow one another at the rate."""
    async with AsyncExitStack() as stack:
        stores: list[Store] = [
            await stack.enter_async_context(backend.new_store(time.time)) for _ in range(3)
        ]
        grants = await asyncio.gather(*(take(store) for store in stores for _ in range(100)))

    assert all(grant.granted for grant in grants)
    starts = sorted(grant.start_at for grant in grants)
    busiest = max(_in_window(starts, first, 10.0) for first in starts)
    assert busiest <= BURST + RATE * 10
    # Permits queued for later (past the burst) are a cost apart (within float rounding). One
    # that went at once starts at its own `now`, which may be up to a take's duration past its
    # slot, so the queued permit after it can follow it by a little less than a cost.
    queued = sorted(grant.start_at for grant in grants if grant.wait > 0)
    assert len(queued) >= len(grants) // 2  # most of the 300 waited: the gaps mean something
    gaps = [later - earlier for earlier, later in pairwise(queued)]
    assert min(gaps) >= COST - 1e-6


async def granted_at_once(stores: list[Store], taker: Callable[..., Awaitable[BudgetGrant]]) -> int:
    """How many of 40 takes from each store, all at once and waiting for nothing, were granted."""
    grants = await asyncio.gather(
        *(taker(store, max_wait=0) for store in stores for _ in range(40))
    )
    return sum(1 for grant in grants if grant.granted)


def _in_window(starts: list[float], first: float, seconds: float) -> int:
    return sum(1 for start in starts if first <= start < first + seconds)


# ---------------------------------------------------------------- sliding windows (HighLevel's)

LIMIT = 5
PERIOD = 10.5  # a 10 s window and its margin


async def take_window(store: Store, key: str = KEY, **extra: float | int | None) -> BudgetGrant:
    shape: dict[str, Any] = {"limit": LIMIT, "period": PERIOD, **extra}
    return await store.take_window(key, **shape)


async def test_migration_15_gives_budgets_their_window_of_starts(
    store: Store, backend: Backend
) -> None:
    assert LATEST_VERSION >= 15
    await take_window(store)
    [(text,)] = backend.query("SELECT starts FROM rate_budgets WHERE key = 'ghl:loc-1'")
    assert json.loads(text) == [START]


async def test_an_idle_window_grants_its_whole_limit_at_once_then_one_a_period_after_each(
    store: Store, clock: FakeClock
) -> None:
    first = [await take_window(store) for _ in range(LIMIT)]
    assert all(grant.granted for grant in first)
    assert [grant.wait for grant in first] == [0.0] * LIMIT

    clock.advance(2.0)
    later = [await take_window(store) for _ in range(LIMIT + 1)]
    assert all(grant.granted for grant in later)
    # Each starts a period after the one `LIMIT` permits before it, and never before the one
    # just before it: the five of the first instant, then the first of the next period.
    assert [grant.start_at for grant in later] == at(
        [START + PERIOD] * LIMIT + [START + 2 * PERIOD]
    )


async def test_starts_spread_out_keep_their_spacing_a_period_later(
    store: Store, clock: FakeClock
) -> None:
    for _ in range(LIMIT):
        await take_window(store)
        clock.advance(1.0)
    # Now START + 5; the window holds starts at START + 0, 1, 2, 3, 4.
    grants = [await take_window(store) for _ in range(3)]
    assert [grant.start_at for grant in grants] == at(
        [START + PERIOD, START + 1 + PERIOD, START + 2 + PERIOD]
    )
    clock.advance(100.0)  # a long pause: the whole limit again at once
    assert [(await take_window(store, max_wait=0)).granted for _ in range(LIMIT + 1)] == [
        True
    ] * LIMIT + [False]


async def test_a_window_take_beyond_max_wait_is_refused_and_changes_nothing(
    store: Store, clock: FakeClock
) -> None:
    for _ in range(LIMIT):
        await take_window(store)
    clock.advance(3.0)

    refused = [await take_window(store, max_wait=7.0) for _ in range(3)]
    assert [grant.granted for grant in refused] == [False] * 3
    assert [grant.wait for grant in refused] == pytest.approx([PERIOD - 3.0] * 3)

    granted = await take_window(store, max_wait=PERIOD - 3.0)
    assert granted.granted
    assert granted.start_at == at(START + PERIOD)


async def test_a_hold_delays_every_permit_of_a_window_until_it_ends(
    store: Store, clock: FakeClock
) -> None:
    await take_window(store)
    await store.hold_budget(KEY, seconds=4.0, rate=LIMIT / PERIOD, burst=1)

    grants = [await take_window(store) for _ in range(LIMIT)]
    # The hold's end, then the window: four more fit the period that began with the first.
    assert [grant.start_at for grant in grants] == at(
        [START + 4.0] * (LIMIT - 1) + [START + PERIOD]
    )


async def test_a_limit_learnt_later_applies_to_the_starts_already_made(
    store: Store, clock: FakeClock
) -> None:
    for _ in range(3):  # starts at START, START + 1, START + 2
        await take_window(store, limit=3)
        clock.advance(1.0)
    # HighLevel now says 5: two more fit this period at once, then the first start's period.
    grants = [await take_window(store, limit=5) for _ in range(3)]
    assert [grant.start_at for grant in grants] == at([START + 3, START + 3, START + PERIOD])
    # And 2: a period after the second-newest start (START + 3), not after the fifth-newest.
    assert (await take_window(store, limit=2)).start_at == at(START + 3 + PERIOD)


@pytest.mark.parametrize(("limit", "period"), [(0, 10.0), (5, 0.0), (5, -1.0), (5, math.inf)])
async def test_a_shapeless_window_is_refused(store: Store, limit: int, period: float) -> None:
    with pytest.raises(StoreError):
        await store.take_window(KEY, limit=limit, period=period)


async def test_three_instances_at_one_instant_get_exactly_the_window(
    backend: Backend, clock: FakeClock
) -> None:
    """A lost update (two takes reading the same row) would grant more than the window holds."""
    async with AsyncExitStack() as stack:
        stores: list[Store] = [
            await stack.enter_async_context(backend.new_store(clock)) for _ in range(3)
        ]
        assert await granted_at_once(stores, take_window) == LIMIT
        clock.advance(PERIOD - 0.01)
        assert await granted_at_once(stores, take_window) == 0
        clock.advance(0.01)
        assert await granted_at_once(stores, take_window) == LIMIT


async def test_three_instances_reserving_at_once_fill_each_period_and_never_overfill_it(
    backend: Backend,
) -> None:
    """Real clock, 3 x 100 reservations of a 100-per-period window at once: the first 100
    start at once, and no period-long span of their starts holds more than 100."""
    async with AsyncExitStack() as stack:
        stores: list[Store] = [
            await stack.enter_async_context(backend.new_store(time.time)) for _ in range(3)
        ]
        grants = await asyncio.gather(
            *(take_window(store, limit=100) for store in stores for _ in range(100))
        )

    assert all(grant.granted for grant in grants)
    starts = sorted(grant.start_at for grant in grants)
    assert max(_in_window(starts, first, PERIOD) for first in starts) == 100
    # The first hundred went in the first period (a take may wait a moment for the start of
    # another instance's permit, never before it), the rest a period later.
    assert starts[99] - starts[0] < 1.0
    # Each later permit starts exactly a period after the one a hundred before it.
    gaps = [later - earlier for earlier, later in zip(starts, starts[100:], strict=False)]
    assert gaps == pytest.approx([PERIOD] * 200)
