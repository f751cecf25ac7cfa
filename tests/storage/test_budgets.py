"""Rate budgets shared by instances: the store's token buckets, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import math
import time
from contextlib import AsyncExitStack
from itertools import pairwise

import pytest

from storage import LATEST_VERSION, Store, StoreError
from storage._budgets import BudgetGrant
from tests.storage._support import Backend, FakeClock

RATE = 8.0  # permits a second
BURST = 10
COST = 1 / RATE
KEY = "ghl:loc-1"


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
    assert grants[-1].start_at == pytest.approx(clock.now + 3 * COST)


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

        async def hammer() -> list[bool]:
            grants = await asyncio.gather(
                *(take(store, max_wait=0) for store in stores for _ in range(40))
            )
            return [grant.granted for grant in grants]

        assert (await hammer()).count(True) == BURST
        clock.advance(0.5)
        assert (await hammer()).count(True) == 4  # 0.5 s at 8 a second


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


def _in_window(starts: list[float], first: float, seconds: float) -> int:
    return sum(1 for start in starts if first <= start < first + seconds)
