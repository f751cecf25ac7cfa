"""Token refresh leases in the store: one refresh per location (or company) at a time, across
instances, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from storage import ConflictError, NotFoundError, Store
from tests.storage._support import START, Backend, FakeClock
from tests.storage._tenancy_support import DAY, oauth_location, two_instances

LEASE = 60.0


# ---------------------------------------------------------------- token refresh


async def test_a_refresh_is_leased_finished_and_counted(store: Store, clock: FakeClock) -> None:
    version = await oauth_location(store)
    assert await store.begin_token_refresh(
        "location", "loc-1", seen_version=version, lease_seconds=LEASE
    )
    # The lease is held, even against this instance: one refresh at a time.
    assert not await store.begin_token_refresh(
        "location", "loc-1", seen_version=version, lease_seconds=LEASE
    )
    clock.advance(2)
    new_version = await store.finish_token_refresh(
        "location", "loc-1", access_token="a2", refresh_token="r2", expires_at=START + DAY
    )
    assert new_version == version + 1
    record = await store.get_location("loc-1")
    assert record is not None
    assert (record.access_token, record.refresh_token, record.token_version) == ("a2", "r2", 2)
    assert (record.obtained_at, record.expires_at) == (START + 2, START + DAY)
    # Refreshed already: whoever saw the old version is told to read again.
    assert not await store.begin_token_refresh(
        "location", "loc-1", seen_version=version, lease_seconds=LEASE
    )
    assert await store.begin_token_refresh(
        "location", "loc-1", seen_version=new_version, lease_seconds=LEASE
    )


async def test_a_minted_token_is_stored_without_a_refresh_token(store: Store) -> None:
    await store.save_location("loc-1", auth="company", company_id="co-1", access_token="m1")
    assert await store.begin_token_refresh("location", "loc-1", seen_version=1, lease_seconds=5)
    assert (
        await store.finish_token_refresh(
            "location", "loc-1", access_token="m2", refresh_token=None, expires_at=START + DAY
        )
        == 2
    )
    record = await store.get_location("loc-1")
    assert record is not None and (record.access_token, record.refresh_token) == ("m2", None)


async def test_an_expired_lease_may_be_taken_and_an_abandoned_one_at_once(
    backend: Backend, clock: FakeClock
) -> None:
    async with two_instances(backend, clock) as (a, b):
        version = await oauth_location(a)
        assert await a.begin_token_refresh("location", "loc-1", seen_version=1, lease_seconds=9)
        assert not await b.begin_token_refresh("location", "loc-1", seen_version=1, lease_seconds=9)
        clock.advance(9)  # the lease ends now: still a's
        assert not await b.begin_token_refresh("location", "loc-1", seen_version=1, lease_seconds=9)
        clock.advance(0.5)
        assert await b.begin_token_refresh("location", "loc-1", seen_version=1, lease_seconds=9)
        # a's lease was taken over: its refresh must not overwrite what b stores.
        with pytest.raises(ConflictError, match="no longer holds its refresh lease"):
            await a.finish_token_refresh(
                "location", "loc-1", access_token="late", refresh_token="late", expires_at=1.0
            )
        await a.abandon_token_refresh("location", "loc-1")  # not a's: changes nothing
        assert not await a.begin_token_refresh(
            "location", "loc-1", seen_version=1, lease_seconds=10
        )
        await b.abandon_token_refresh("location", "loc-1")
        assert await a.begin_token_refresh("location", "loc-1", seen_version=1, lease_seconds=9)
        record = await a.get_location("loc-1")
        assert record is not None
        assert (record.access_token, record.token_version) == ("cipher-access-1", version)


async def test_a_refresh_cannot_finish_on_a_disconnected_or_newly_saved_row(
    store: Store,
) -> None:
    await oauth_location(store)
    assert await store.begin_token_refresh("location", "loc-1", seen_version=1, lease_seconds=9)
    await store.disconnect_location("loc-1", "uninstalled")
    with pytest.raises(ConflictError, match="disconnected while its token was refreshed"):
        await store.finish_token_refresh(
            "location", "loc-1", access_token="a", refresh_token="r", expires_at=1.0
        )
    assert not await store.begin_token_refresh("location", "loc-1", seen_version=1, lease_seconds=9)
    record = await store.get_location("loc-1")
    assert record is not None and record.access_token is None

    version = await oauth_location(store, access_token="installed")
    assert await store.begin_token_refresh(
        "location", "loc-1", seen_version=version, lease_seconds=9
    )
    await oauth_location(store, access_token="installed-again")  # a newer install wins
    with pytest.raises(ConflictError, match="no longer holds"):
        await store.finish_token_refresh(
            "location", "loc-1", access_token="a", refresh_token="r", expires_at=1.0
        )
    record = await store.get_location("loc-1")
    assert record is not None and record.access_token == "installed-again"

    with pytest.raises(NotFoundError):
        await store.finish_token_refresh(
            "location", "loc-x", access_token="a", refresh_token="r", expires_at=1.0
        )
    assert not await store.begin_token_refresh("location", "loc-x", seen_version=0, lease_seconds=9)
    with pytest.raises(ValueError, match="unknown token scope"):
        await store.begin_token_refresh("agency", "loc-1", seen_version=0, lease_seconds=9)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        await store.begin_token_refresh("location", "loc-1", seen_version=0, lease_seconds=0)


async def test_a_company_token_is_refreshed_under_its_own_lease(
    store: Store, clock: FakeClock
) -> None:
    await store.save_company("co-1", access_token="ca", refresh_token="cr", expires_at=START)
    await store.save_location("co-1", auth="location", access_token="same-id-other-table")
    assert await store.begin_token_refresh("company", "co-1", seen_version=1, lease_seconds=9)
    # The location of the same id is another row, with a lease of its own.
    assert await store.begin_token_refresh("location", "co-1", seen_version=1, lease_seconds=9)
    assert not await store.begin_token_refresh("company", "co-1", seen_version=1, lease_seconds=9)
    clock.advance(1)
    assert (
        await store.finish_token_refresh(
            "company", "co-1", access_token="ca2", refresh_token="cr2", expires_at=START + DAY
        )
        == 2
    )
    company = await store.get_company("co-1")
    assert company is not None
    assert (company.access_token, company.refresh_token, company.obtained_at) == (
        "ca2",
        "cr2",
        START + 1,
    )
    await store.disconnect_company("co-1", "uninstalled")
    assert not await store.begin_token_refresh("company", "co-1", seen_version=2, lease_seconds=9)


async def test_instances_racing_to_refresh_let_exactly_one_through(
    backend: Backend, clock: FakeClock
) -> None:
    async with two_instances(backend, clock) as (a, b):
        version = await oauth_location(a)
        for round_ in range(8):
            won = await asyncio.gather(
                *(
                    store.begin_token_refresh(
                        "location", "loc-1", seen_version=version, lease_seconds=LEASE
                    )
                    for store in (a, b, a, b)
                )
            )
            assert won.count(True) == 1, won
            winner = (a, b, a, b)[won.index(True)]
            loser = b if winner is a else a
            new_version = await winner.finish_token_refresh(
                "location",
                "loc-1",
                access_token=f"a{round_}",
                refresh_token=f"r{round_}",
                expires_at=START + DAY,
            )
            assert new_version == version + 1
            # Committed before it returned: the other instance sees the new tokens.
            seen = await loser.get_location("loc-1")
            assert seen is not None
            assert (seen.refresh_token, seen.token_version) == (f"r{round_}", new_version)
            stale = await asyncio.gather(
                a.begin_token_refresh("location", "loc-1", seen_version=version, lease_seconds=1),
                b.begin_token_refresh("location", "loc-1", seen_version=version, lease_seconds=1),
            )
            assert stale == [False, False]  # type: ignore[comparison-overlap]
            version = new_version
