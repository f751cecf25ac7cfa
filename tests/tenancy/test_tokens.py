"""TokenKeeper over a real OAuth server and real stores (SQLite, PostgreSQL), one instance or
two on one database: refresh ahead of expiry and after a 401, never a refresh token reused."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr

from bot.highlevel import AccessLostError, UnavailableError
from bot.tenancy.tokens import LocationTokenSource, TokenKeeper
from storage import LocationRecord
from tests.tenancy._oauth_server import OAuthServer
from tests.tenancy.conftest import Instances, Lost

LOC = "loc-1"


@pytest.fixture
async def http(server: OAuthServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url) as client:
        yield client


async def check(http: httpx.AsyncClient, token: SecretStr, location_id: str = LOC) -> int:
    """An API call with the token, as HighLevel would judge it: 200, or 401."""
    response = await http.get(
        "/check",
        params={"locationId": location_id},
        headers={"Authorization": f"Bearer {token.get_secret_value()}"},
    )
    return response.status_code


async def call_with_refresh(http: httpx.AsyncClient, source: LocationTokenSource) -> int:
    """What HighLevelClient does: the token, and on a 401 one refresh and the call again."""
    token = await source.access_token()
    status = await check(http, token)
    if status == 401:
        newer = await source.refreshed(token)
        assert newer is not None
        status = await check(http, newer)
        if status == 401:
            await source.refused(newer)
    return status


async def hammer(
    http: httpx.AsyncClient, sources: list[LocationTokenSource], seconds: float
) -> list[int]:
    """Each source called from 3 tasks for `seconds`; every status seen."""
    statuses: list[int] = []
    deadline = time.monotonic() + seconds

    async def caller(source: LocationTokenSource) -> None:
        while time.monotonic() < deadline:
            statuses.append(await call_with_refresh(http, source))
            await asyncio.sleep(0.02)  # pacing the calls, not waiting for anything

    await asyncio.gather(*(caller(source) for source in sources for _ in range(3)))
    return statuses


async def installed(instances: Instances, installer_of: int = 0) -> list[TokenKeeper]:
    keepers = [await instances.new(), await instances.new()]
    installer = keepers[installer_of][1]
    await installer.complete(instances.server.code_for_location(LOC))
    return [keeper for keeper, _ in keepers]


async def test_refresh_ahead_of_expiry_never_reuses_a_refresh_token(
    instances: Instances, server: OAuthServer, http: httpx.AsyncClient
) -> None:
    server.ttl = 2.0
    keeper, installer = await instances.new()
    await installer.complete(server.code_for_location(LOC))
    statuses = await hammer(http, [keeper.source(LOC)], seconds=6.0)
    assert statuses and set(statuses) == {200}
    assert server.reuses == 0
    assert server.refreshes >= 3  # a 2 s token, refreshed with 0.5 s to go
    # No 401 was needed: each refresh happened ahead of expiry.
    assert len([s for s in server.seen if s.path == "/oauth/token"]) == server.refreshes + 1


async def test_two_instances_refresh_one_location_once_at_a_time(
    instances: Instances, server: OAuthServer, http: httpx.AsyncClient
) -> None:
    one, two = await installed(instances)
    rounds = 12
    for _ in range(rounds):
        token = await one.access_token(LOC)
        # Both instances (twice each) were told 401 for the same token at once.
        got = await asyncio.gather(
            one.refreshed(LOC, token),
            two.refreshed(LOC, token),
            one.refreshed(LOC, token),
            two.refreshed(LOC, token),
        )
        assert all(x is not None for x in got)
        assert len({x.get_secret_value() for x in got if x is not None}) == 1
        assert got[0] is not None and got[0].get_secret_value() != token.get_secret_value()
        assert await check(http, got[0]) == 200
    assert server.refreshes == rounds
    assert server.reuses == 0

    # And ahead of expiry, both instances calling all the time.
    server.ttl = 1.0
    await one.refreshed(LOC, await one.access_token(LOC))  # a token of the short lifetime
    before = server.refreshes
    statuses = await hammer(http, [one.source(LOC), two.source(LOC)], seconds=5.0)
    assert set(statuses) == {200}
    assert server.reuses == 0
    assert server.refreshes - before >= 4


async def test_a_401_refreshes_and_an_older_401_does_not_refresh_again(
    instances: Instances, server: OAuthServer, http: httpx.AsyncClient
) -> None:
    one, _two = await installed(instances)
    source = one.source(LOC)
    token = await source.access_token()
    assert await check(http, token) == 200
    server.expire_access(LOC)  # revoked early: only the 401 tells
    assert await check(http, token) == 401
    newer = await source.refreshed(token)
    assert newer is not None and await check(http, newer) == 200
    assert server.refreshes == 1
    # A request that went out with the old token is told 401 late: the stored token is newer.
    again = await source.refreshed(token)
    assert again is not None and again.get_secret_value() == newer.get_secret_value()
    assert server.refreshes == 1
    assert (await source.access_token()).get_secret_value() == newer.get_secret_value()


async def test_invalid_grant_loses_access_once_across_instances(
    instances: Instances, server: OAuthServer
) -> None:
    one, two = await installed(instances)
    token = await one.access_token(LOC)
    server.revoke_refresh_tokens(LOC)  # e.g. the app was uninstalled meanwhile
    results = await asyncio.gather(
        *(keeper.refreshed(LOC, token) for keeper in (one, two, one, two, one)),
        return_exceptions=True,
    )
    assert all(isinstance(r, AccessLostError) for r in results), results
    assert len(instances.lost.calls) == 1
    location_id, reason = instances.lost.calls[0]
    assert location_id == LOC and "refresh token" in reason
    row = await instances_store_row(one, LOC)
    assert row.status == "disconnected" and row.access_token is None
    with pytest.raises(AccessLostError) as caught:
        await two.access_token(LOC)
    assert caught.value.location_id == LOC
    assert len(instances.lost.calls) == 1


async def test_401_to_a_fresh_token_is_access_lost(
    instances: Instances, server: OAuthServer
) -> None:
    one, two = await installed(instances)
    token = await one.access_token(LOC)
    fresh = await one.refreshed(LOC, token)
    assert fresh is not None
    await two.refused(LOC, token)  # about a token the store has moved past: no verdict
    assert (await instances_store_row(one, LOC)).status == "connected"
    with pytest.raises(AccessLostError):
        await two.refused(LOC, fresh)
    assert instances.lost.calls == [(LOC, instances.lost.calls[0][1])]
    assert "401" in instances.lost.calls[0][1]
    assert (await instances_store_row(one, LOC)).status == "disconnected"
    with pytest.raises(AccessLostError):
        await one.refused(LOC, fresh)
    assert len(instances.lost.calls) == 1


async def test_unknown_refresh_outcome_is_retried_once_then_left_alone(
    instances: Instances, server: OAuthServer, http: httpx.AsyncClient
) -> None:
    one, two = await installed(instances)
    token = await one.access_token(LOC)
    # A 502 before HighLevel acted: the one prompt retry gets the new tokens.
    server.fail_refresh.append((502, False))
    newer = await one.refreshed(LOC, token)
    assert newer is not None and await check(http, newer) == 200
    assert server.reuses == 0

    # Two unknown outcomes in a row: raised, and this instance stops trying for a while...
    server.fail_refresh.extend([(502, False), (502, False)])
    with pytest.raises(UnavailableError):
        await one.refreshed(LOC, newer)
    calls = len(server.seen)
    with pytest.raises(UnavailableError, match="unknown outcomes"):
        await one.refreshed(LOC, newer)
    assert len(server.seen) == calls  # not asked again
    # ... while the lease was given back: another instance refreshes at once.
    latest = await two.refreshed(LOC, newer)
    assert latest is not None and await check(http, latest) == 200
    assert server.reuses == 0


async def test_a_refresh_spent_by_an_attempt_whose_answer_was_lost(
    instances: Instances, server: OAuthServer
) -> None:
    one, _two = await installed(instances)
    token = await one.access_token(LOC)
    server.fail_refresh.append((502, True))  # HighLevel refreshed, then the answer was lost
    with pytest.raises(AccessLostError, match="answer was lost"):
        await one.refreshed(LOC, token)
    assert server.reuses == 1  # the single retry, and no more
    assert len(instances.lost.calls) == 1


async def test_a_dead_lease_holder_holds_up_the_others_only_until_its_lease_ends(
    instances: Instances, server: OAuthServer, http: httpx.AsyncClient
) -> None:
    keeper, installer = await instances.new(lease_seconds=1.0)
    await installer.complete(server.code_for_location(LOC))
    token = await keeper.access_token(LOC)
    async with instances.backend.new_store(time.time, instance_id="dead") as dead:
        row = await dead.get_location(LOC)
        assert row is not None
        assert await dead.begin_token_refresh(
            "location", LOC, seen_version=row.token_version, lease_seconds=1.0
        )
        started = time.monotonic()
        newer = await keeper.refreshed(LOC, token)
        waited = time.monotonic() - started
    assert newer is not None and await check(http, newer) == 200
    assert 0.5 < waited < 5.0
    assert server.reuses == 0


async def test_pit_location_uses_the_static_token(instances: Instances) -> None:
    lost = Lost()
    keeper, _ = await instances.new()
    pit = TokenKeeper(
        keeper._store,
        None,
        None,
        pit=("loc-pit", SecretStr("pit-token")),
        app_id=None,
        on_access_lost=lost,
    )
    source = pit.source("loc-pit")
    assert (await source.access_token()).get_secret_value() == "pit-token"
    assert await source.refreshed(SecretStr("pit-token")) is None
    await source.refused(SecretStr("pit-token"))
    assert lost.calls == []
    with pytest.raises(AccessLostError, match="not connected"):
        await pit.access_token("loc-other")


async def instances_store_row(keeper: TokenKeeper, location_id: str) -> LocationRecord:
    row = await keeper._store.get_location(location_id)
    assert row is not None
    return row
