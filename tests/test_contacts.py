"""The contact directory's cache against the HighLevel simulator: bounded in size and in age."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from bot.contacts import (
    DEFAULT_MAX_ENTRIES,
    DEFAULT_TTL_SECONDS,
    ContactDirectory,
    ContactNotFoundError,
)
from bot.highlevel import HighLevelClient, RateLimiter
from bot.recipients import Recipient, RecipientKind
from bot.sandbox.highlevel import ADA_LOVELACE_ID, HighLevelSimulator

# The issue saw 6,000 contacts looked up once each grow the process by 14 MB for good; twice the
# bound is enough to show the cache lets go (each look-up is a real HTTP request).
DISTINCT_CONTACTS = 2 * DEFAULT_MAX_ENTRIES


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def sim() -> AsyncIterator[HighLevelSimulator]:
    simulator = HighLevelSimulator(rate_limit_max=100_000, rate_limit_daily=1_000_000)
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest.fixture
async def highlevel(sim: HighLevelSimulator) -> AsyncIterator[HighLevelClient]:
    client = HighLevelClient(
        token=SecretStr(sim.token),
        location_id=sim.location_id,
        base_url=sim.base_url,
        limiter=RateLimiter(max_requests=100_000, interval=10),
    )
    try:
        yield client
    finally:
        await client.aclose()


def lookups_of(sim: HighLevelSimulator, contact_id: str) -> int:
    return len(sim.requests_to("GET", f"/contacts/{contact_id}"))


async def test_thousands_of_contacts_keep_the_cache_within_its_bound(
    sim: HighLevelSimulator, highlevel: HighLevelClient
) -> None:
    clock = Clock()  # never moves: only the size bound can drop anything
    directory = ContactDirectory(highlevel, clock=clock)
    ids = [sim.add_contact(f"Customer {n}").id for n in range(DISTINCT_CONTACTS)]
    for contact_id in ids:
        assert (await directory.get(contact_id)).id == contact_id
    assert directory.cached_entries <= DEFAULT_MAX_ENTRIES
    # The most recently used stay cached (no new request); the oldest were let go.
    for contact_id in ids[-10:]:
        await directory.get(contact_id)
        assert lookups_of(sim, contact_id) == 1
    await directory.get(ids[0])
    assert lookups_of(sim, ids[0]) == 2
    assert directory.cached_entries <= DEFAULT_MAX_ENTRIES


async def test_a_contact_read_again_stays_cached_while_others_push_the_rest_out(
    sim: HighLevelSimulator, highlevel: HighLevelClient
) -> None:
    directory = ContactDirectory(highlevel, max_entries=3, clock=Clock())
    ids = [sim.add_contact(f"Customer {n}").id for n in range(4)]
    for contact_id in ids[:3]:
        await directory.get(contact_id)
    await directory.get(ids[0])  # used again: now the most recent
    await directory.get(ids[3])  # pushes out the least recently used, ids[1]
    assert directory.cached_entries == 3
    for contact_id in (ids[0], ids[2], ids[3]):
        await directory.get(contact_id)
    await directory.get(ids[1])
    assert [lookups_of(sim, c) for c in ids] == [1, 2, 1, 1]


async def test_an_entry_is_looked_up_again_once_it_is_older_than_the_ttl(
    sim: HighLevelSimulator, highlevel: HighLevelClient
) -> None:
    clock = Clock()
    directory = ContactDirectory(highlevel, clock=clock)
    await directory.get(ADA_LOVELACE_ID)
    clock.now += DEFAULT_TTL_SECONDS - 1
    await directory.get(ADA_LOVELACE_ID)
    assert lookups_of(sim, ADA_LOVELACE_ID) == 1  # still fresh: served from the cache
    clock.now += 2
    await directory.get(ADA_LOVELACE_ID)
    assert lookups_of(sim, ADA_LOVELACE_ID) == 2


async def test_expired_entries_are_swept_without_being_read(
    sim: HighLevelSimulator, highlevel: HighLevelClient
) -> None:
    clock = Clock()
    directory = ContactDirectory(highlevel, clock=clock)
    ids = [sim.add_contact(f"Customer {n}").id for n in range(20)]
    for contact_id in ids:
        await directory.get(contact_id)
    assert directory.cached_entries == 20
    clock.now += DEFAULT_TTL_SECONDS + 1
    await directory.get(ADA_LOVELACE_ID)  # adding one entry sweeps the 20 expired ones
    assert directory.cached_entries == 1


async def test_concurrent_lookups_of_one_recipient_share_one_request(
    sim: HighLevelSimulator, highlevel: HighLevelClient
) -> None:
    directory = ContactDirectory(highlevel, clock=Clock())
    phone = Recipient(RecipientKind.PHONE, "+14155550100")
    found = await asyncio.gather(*(directory.resolve(phone, create=False) for _ in range(5)))
    assert {r.contact.id for r in found} == {ADA_LOVELACE_ID}
    assert len(sim.requests_to("GET", "/contacts/search/duplicate")) == 1
    # The lookup cached the contact under its id as well.
    await directory.get(ADA_LOVELACE_ID)
    assert lookups_of(sim, ADA_LOVELACE_ID) == 0


@pytest.mark.parametrize("contact_id", ["x" * 20_000, "abc\x00def", "id\ud800", "   "])
async def test_an_id_no_contact_can_have_is_not_looked_up(
    sim: HighLevelSimulator, highlevel: HighLevelClient, contact_id: str
) -> None:
    # Such ids arrive in (signed) webhooks; one would not even fit in a URL.
    directory = ContactDirectory(highlevel, clock=Clock())
    with pytest.raises(ContactNotFoundError, match="not a HighLevel contact id"):
        await directory.get(contact_id)
    assert sim.requests == []
