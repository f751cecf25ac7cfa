"""Helpers of the tenancy tests: a location connected by OAuth, two instances on one database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from storage import PostgresStore, SqliteStore, Store
from tests.storage._support import START, Backend, FakeClock

DAY = 86_400.0

Instance = SqliteStore | PostgresStore


@asynccontextmanager
async def two_instances(
    backend: Backend, clock: FakeClock
) -> AsyncIterator[tuple[Instance, Instance]]:
    async with (
        backend.new_store(clock, instance_id="instance-a") as a,
        backend.new_store(clock, instance_id="instance-b") as b,
    ):
        yield a, b


async def oauth_location(store: Store, location_id: str = "loc-1", **extra: str) -> int:
    """A location connected by an OAuth Location token; its token_version."""
    record = await store.save_location(
        location_id,
        auth="location",
        name=extra.get("name", "Downtown"),
        company_id=extra.get("company_id", "co-1"),
        access_token=extra.get("access_token", "cipher-access-1"),
        refresh_token=extra.get("refresh_token", "cipher-refresh-1"),
        expires_at=START + DAY,
    )
    return record.token_version
