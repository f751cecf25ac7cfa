"""Tenancy in the store: locations, agency companies, channel links and the outbox of a lost
location, on SQLite and PostgreSQL (several instances on one database where it matters).
Refresh leases: test_token_refresh.py."""

from __future__ import annotations

import asyncio

import pytest

from storage import LATEST_VERSION, MIGRATIONS, NotFoundError, OutboxState, Store
from tests.storage._support import CHECK, START, Backend, FakeClock, Rejected, enqueue
from tests.storage._tenancy_support import DAY, oauth_location, two_instances

# ---------------------------------------------------------------- schema


async def test_migration_7_makes_the_tables_with_their_rules(
    store: Store, backend: Backend
) -> None:
    assert LATEST_VERSION >= 7
    assert {"ghl_locations", "ghl_companies", "slack_channel_links"} <= backend.table_names()
    assert {"ghl_locations_company", "slack_channel_links_location"} <= backend.index_names()
    with pytest.raises(Rejected, match=CHECK):
        backend.query(
            "INSERT INTO ghl_locations (location_id, auth, status, connected_at, updated_at)"
            " VALUES ('x', 'location', 'paused', 0, 0)"
        )
    with pytest.raises(Rejected, match=CHECK):
        backend.query(
            "INSERT INTO ghl_locations (location_id, auth, status, connected_at, updated_at)"
            " VALUES ('x', 'agency', 'connected', 0, 0)"
        )
    with pytest.raises(Rejected, match=CHECK):
        backend.query(
            "INSERT INTO ghl_companies (company_id, status, updated_at) VALUES ('x', 'gone', 0)"
        )


async def test_a_version_6_database_gains_the_tables_and_keeps_its_rows(
    backend: Backend, clock: FakeClock
) -> None:
    async with backend.new_store(clock, migrations=MIGRATIONS[:6]) as old:
        await old.kv_set("cursor", "abc")
        entry = await enqueue(old, "before-7")
    assert "ghl_locations" not in backend.table_names()
    async with backend.new_store(clock) as new:
        assert await new.schema_version() == LATEST_VERSION
        assert await new.kv_get("cursor") == "abc"
        assert (await new.get_outbox(entry.id)) is not None
        assert await new.list_locations() == []
        await oauth_location(new)
        assert [r.location_id for r in await new.list_locations()] == ["loc-1"]


# ---------------------------------------------------------------- locations


async def test_a_saved_location_is_connected_with_its_first_token(
    store: Store, clock: FakeClock
) -> None:
    record = await store.save_location(
        "loc-1",
        auth="location",
        name="Downtown",
        company_id="co-1",
        access_token="cipher-access",
        refresh_token="cipher-refresh",
        expires_at=START + DAY,
    )

    assert record.location_id == "loc-1"
    assert (record.name, record.company_id, record.auth) == ("Downtown", "co-1", "location")
    assert record.status == "connected"
    assert (record.access_token, record.refresh_token) == ("cipher-access", "cipher-refresh")
    assert (record.expires_at, record.obtained_at) == (START + DAY, START)
    assert record.token_version == 1
    assert (record.inbox_team_id, record.inbox_channel_id) == (None, None)
    assert (record.disconnected_reason, record.disconnect_notified) == (None, False)
    assert (record.last_webhook_at, record.last_poll_at) == (None, None)
    assert (record.connected_at, record.updated_at) == (START, START)
    assert await store.get_location("loc-1") == record
    assert await store.get_location("loc-2") is None


async def test_a_pit_location_has_no_token(store: Store) -> None:
    record = await store.save_location("loc-pit", auth="pit", name="Main")
    assert (record.auth, record.status, record.token_version) == ("pit", "connected", 0)
    assert (record.access_token, record.refresh_token, record.expires_at) == (None, None, None)
    with pytest.raises(ValueError, match="stores no token"):
        await store.save_location("loc-pit", auth="pit", access_token="cipher")
    with pytest.raises(ValueError, match="comes with an access token"):
        await store.save_location("loc-2", auth="location", refresh_token="cipher")
    with pytest.raises(ValueError, match="unknown location auth"):
        await store.save_location("loc-2", auth="agency")  # type: ignore[arg-type]
    assert await store.get_location("loc-2") is None


async def test_saving_again_keeps_what_is_not_given_and_counts_new_tokens(
    store: Store, clock: FakeClock
) -> None:
    await oauth_location(store)
    await store.set_location_inbox("loc-1", "T1", "C-inbox")
    clock.advance(10)

    kept = await store.save_location("loc-1", auth="location")
    assert (kept.name, kept.company_id) == ("Downtown", "co-1")
    assert (kept.inbox_team_id, kept.inbox_channel_id) == ("T1", "C-inbox")
    assert (kept.access_token, kept.refresh_token, kept.token_version) == (
        "cipher-access-1",
        "cipher-refresh-1",
        1,
    )
    assert (kept.obtained_at, kept.connected_at, kept.updated_at) == (START, START, START + 10)

    renewed = await store.save_location(
        "loc-1", auth="location", name="Uptown", access_token="a2", refresh_token="r2",
        expires_at=START + 2 * DAY,
    )  # fmt: skip
    assert (renewed.name, renewed.access_token, renewed.refresh_token) == ("Uptown", "a2", "r2")
    assert (renewed.token_version, renewed.obtained_at) == (2, START + 10)
    assert renewed.expires_at == START + 2 * DAY

    # Now connected through its agency: the Location tokens belong to the old way.
    moved = await store.save_location("loc-1", auth="company")
    assert (moved.auth, moved.access_token, moved.refresh_token, moved.expires_at) == (
        "company",
        None,
        None,
        None,
    )
    minted = await store.save_location(
        "loc-1", auth="company", access_token="minted", expires_at=START + DAY
    )
    assert (minted.access_token, minted.refresh_token, minted.token_version) == ("minted", None, 3)


async def test_locations_are_listed_by_name_then_id_and_by_status(store: Store) -> None:
    for location_id, name in (("loc-c", "beta"), ("loc-b", None), ("loc-a", "Alpha"),
                              ("loc-d", "alpha"), ("loc-e", None)):  # fmt: skip
        await store.save_location(location_id, auth="location", name=name)
    await store.disconnect_location("loc-d", "uninstalled")

    assert [r.location_id for r in await store.list_locations()] == [
        "loc-a",
        "loc-d",
        "loc-c",
        "loc-b",
        "loc-e",
    ]
    connected = await store.list_locations(status="connected")
    assert [r.location_id for r in connected] == ["loc-a", "loc-c", "loc-b", "loc-e"]
    disconnected = await store.list_locations(status="disconnected")
    assert [r.location_id for r in disconnected] == ["loc-d"]
    with pytest.raises(ValueError, match="unknown location status"):
        await store.list_locations(status="paused")  # type: ignore[arg-type]


async def test_name_and_inbox_are_set_on_known_locations_only(
    store: Store, clock: FakeClock
) -> None:
    await oauth_location(store)
    clock.advance(5)
    await store.set_location_name("loc-1", "Harbour")
    await store.set_location_inbox("loc-1", "T9", "C9")
    record = await store.get_location("loc-1")
    assert record is not None
    assert (record.name, record.inbox_team_id, record.inbox_channel_id) == ("Harbour", "T9", "C9")
    assert record.updated_at == START + 5
    with pytest.raises(NotFoundError):
        await store.set_location_name("loc-x", "Nowhere")
    with pytest.raises(NotFoundError):
        await store.set_location_inbox("loc-x", "T9", "C9")
    assert await store.get_location("loc-x") is None


async def test_a_default_sender_is_set_and_cleared_on_its_location_only(
    store: Store, clock: FakeClock
) -> None:
    await oauth_location(store)
    await oauth_location(store, "loc-2")

    async def senders() -> dict[str, str | None]:
        return {r.location_id: r.email_from for r in await store.list_locations()}

    assert await senders() == {"loc-1": None, "loc-2": None}
    clock.advance(5)
    await store.set_location_email_from("loc-1", "frontdesk@acme.example")
    record = await store.get_location("loc-1")
    assert record is not None
    assert (record.email_from, record.updated_at) == ("frontdesk@acme.example", START + 5)
    assert await senders() == {"loc-1": "frontdesk@acme.example", "loc-2": None}
    # A reconnection keeps it.
    await store.save_location("loc-1", auth="location", access_token="ct-new")
    assert await senders() == {"loc-1": "frontdesk@acme.example", "loc-2": None}
    await store.set_location_email_from("loc-1", None)
    assert await senders() == {"loc-1": None, "loc-2": None}
    with pytest.raises(NotFoundError):
        await store.set_location_email_from("loc-x", "frontdesk@acme.example")
    assert await store.get_location("loc-x") is None


async def test_seen_marks_only_move_forward(store: Store) -> None:
    await oauth_location(store)
    await store.note_location_seen("loc-1", webhook_at=START + 20)
    await store.note_location_seen("loc-1", poll_at=START + 30)
    await store.note_location_seen("loc-1", webhook_at=START + 10, poll_at=START + 40)
    await store.note_location_seen("loc-1")
    await store.note_location_seen("loc-unknown", webhook_at=START)

    record = await store.get_location("loc-1")
    assert record is not None
    assert (record.last_webhook_at, record.last_poll_at) == (START + 20, START + 40)
    assert record.updated_at == START  # a mark is not a change of the location
    assert await store.get_location("loc-unknown") is None


# ---------------------------------------------------------------- disconnection


async def test_a_disconnection_forgets_the_tokens_and_is_told_once(
    store: Store, clock: FakeClock
) -> None:
    await oauth_location(store)
    assert not await store.claim_disconnect_notice("loc-1")  # connected: nothing to tell
    clock.advance(3)

    assert await store.disconnect_location("loc-1", "invalid_grant")
    assert not await store.disconnect_location("loc-1", "again")
    assert not await store.disconnect_location("loc-x", "unknown")

    record = await store.get_location("loc-1")
    assert record is not None
    assert (record.status, record.disconnected_reason) == ("disconnected", "invalid_grant")
    assert (record.access_token, record.refresh_token) == (None, None)
    assert (record.expires_at, record.obtained_at) == (None, None)
    assert (record.name, record.company_id) == ("Downtown", "co-1")
    assert record.updated_at == START + 3
    assert not record.disconnect_notified

    assert await store.claim_disconnect_notice("loc-1")
    assert not await store.claim_disconnect_notice("loc-1")
    assert not await store.claim_disconnect_notice("loc-x")
    notified = await store.get_location("loc-1")
    assert notified is not None and notified.disconnect_notified


async def test_a_reconnection_clears_the_disconnection_and_the_next_one_is_told_again(
    store: Store, clock: FakeClock
) -> None:
    await oauth_location(store)
    await store.disconnect_location("loc-1", "uninstalled")
    assert await store.claim_disconnect_notice("loc-1")
    clock.advance(100)

    back = await store.save_location(
        "loc-1", auth="location", access_token="a2", refresh_token="r2", expires_at=START + DAY
    )
    assert (back.status, back.disconnected_reason, back.disconnect_notified) == (
        "connected",
        None,
        False,
    )
    assert (back.access_token, back.token_version) == ("a2", 2)
    assert back.connected_at == START + 100
    assert not await store.claim_disconnect_notice("loc-1")

    assert await store.disconnect_location("loc-1", "invalid_grant")
    assert await store.claim_disconnect_notice("loc-1")
    assert not await store.claim_disconnect_notice("loc-1")


async def test_instances_racing_to_disconnect_and_tell_get_one_true_each(
    backend: Backend, clock: FakeClock
) -> None:
    async with two_instances(backend, clock) as (a, b):
        for round_ in range(5):
            await oauth_location(a, access_token=f"a{round_}")
            moved = await asyncio.gather(
                a.disconnect_location("loc-1", "invalid_grant"),
                b.disconnect_location("loc-1", "uninstalled"),
            )
            assert sorted(moved) == [False, True]
            claims = await asyncio.gather(
                *(store.claim_disconnect_notice("loc-1") for store in (a, b, a, b))
            )
            assert sorted(claims) == [False, False, False, True]


# ---------------------------------------------------------------- companies


async def test_a_company_is_saved_with_a_new_token_each_time(
    store: Store, clock: FakeClock
) -> None:
    first = await store.save_company(
        "co-1", name="Agency", access_token="ca1", refresh_token="cr1", expires_at=START + DAY
    )
    assert (first.company_id, first.name, first.status) == ("co-1", "Agency", "connected")
    assert (first.access_token, first.refresh_token, first.token_version) == ("ca1", "cr1", 1)
    assert (first.expires_at, first.obtained_at, first.updated_at) == (START + DAY, START, START)
    clock.advance(7)
    second = await store.save_company(
        "co-1", access_token="ca2", refresh_token="cr2", expires_at=START + 2 * DAY
    )
    assert (second.name, second.access_token, second.token_version) == ("Agency", "ca2", 2)
    assert second.obtained_at == START + 7
    assert await store.get_company("co-1") == second
    assert await store.get_company("co-2") is None


async def test_a_company_disconnection_takes_its_company_locations_with_it(
    store: Store,
) -> None:
    await store.save_company("co-1", access_token="ca", refresh_token="cr", expires_at=START)
    await store.save_location("loc-a", auth="company", company_id="co-1", access_token="m-a")
    await store.save_location("loc-b", auth="company", company_id="co-1")
    await store.save_location("loc-own", auth="location", company_id="co-1", access_token="x")
    await store.save_location("loc-other", auth="company", company_id="co-2", access_token="y")

    assert await store.disconnect_company("co-1", "uninstalled")
    assert not await store.disconnect_company("co-1", "again")
    assert not await store.disconnect_company("co-x", "unknown")

    company = await store.get_company("co-1")
    assert company is not None
    assert (company.status, company.access_token, company.refresh_token) == (
        "disconnected",
        None,
        None,
    )
    status = {
        r.location_id: (r.status, r.disconnected_reason) for r in await store.list_locations()
    }
    assert status == {
        "loc-a": ("disconnected", "uninstalled"),
        "loc-b": ("disconnected", "uninstalled"),
        "loc-own": ("connected", None),
        "loc-other": ("connected", None),
    }
    a = await store.get_location("loc-a")
    assert a is not None and a.access_token is None
    assert await store.claim_disconnect_notice("loc-a")
    assert await store.claim_disconnect_notice("loc-b")
    assert not await store.claim_disconnect_notice("loc-own")

    back = await store.save_company("co-1", access_token="c2", refresh_token="r2", expires_at=1.0)
    assert back.status == "connected" and back.token_version == 2


# ---------------------------------------------------------------- channel links


async def test_a_channel_belongs_to_one_location_at_a_time(store: Store, clock: FakeClock) -> None:
    await oauth_location(store, "loc-1")
    await oauth_location(store, "loc-2")
    first = await store.link_channel("T1", "C1", "loc-1", linked_by="U-admin")
    assert (first.team_id, first.channel_id, first.location_id) == ("T1", "C1", "loc-1")
    assert (first.linked_by, first.linked_at) == ("U-admin", START)
    clock.advance(4)
    moved = await store.link_channel("T1", "C1", "loc-2", linked_by="U-owner")
    assert (moved.location_id, moved.linked_by, moved.linked_at) == ("loc-2", "U-owner", START + 4)
    assert await store.get_channel_link("T1", "C1") == moved
    assert await store.get_channel_link("T1", "C2") is None
    assert await store.get_channel_link("T2", "C1") is None

    await store.link_channel("T2", "C1", "loc-1", linked_by="U1")
    await store.link_channel("T1", "C0", "loc-1", linked_by="U1")
    assert [(k.team_id, k.channel_id) for k in await store.list_channel_links()] == [
        ("T1", "C0"),
        ("T1", "C1"),
        ("T2", "C1"),
    ]
    assert [
        (k.team_id, k.channel_id) for k in await store.list_channel_links(location_id="loc-1")
    ] == [
        ("T1", "C0"),
        ("T2", "C1"),
    ]
    assert await store.list_channel_links(location_id="loc-x") == []

    with pytest.raises(NotFoundError, match="no location loc-x"):
        await store.link_channel("T1", "C1", "loc-x", linked_by="U1")
    assert (await store.get_channel_link("T1", "C1")) == moved


# ---------------------------------------------------------------- the outbox of a lost location


async def test_the_unsent_sends_of_a_lost_location_fail_and_are_returned(
    store: Store, clock: FakeClock
) -> None:
    in_flight = await enqueue(store, "in-flight", contact_id="c-1")
    claimed = await store.claim_next()
    assert claimed is not None and claimed.id == in_flight.id
    waiting = await enqueue(store, "waiting", contact_id="c-1")  # behind the send in flight
    sent = await enqueue(store, "sent", contact_id="c-2")
    taken = await store.claim_next()
    assert taken is not None and taken.id == sent.id
    await store.mark_sent(sent.id, conversation_id="conv", ghl_message_id="m-1")
    unsure = await enqueue(store, "unsure", contact_id="c-3")
    assert (await store.claim_next()) is not None
    await store.mark_unknown(unsure.id, "timed out")
    retrying = await enqueue(store, "retrying", contact_id="c-4")
    assert (await store.claim_next()) is not None
    await store.retry_later(retrying.id, next_attempt_at=START + 60, error="429")
    later = await enqueue(store, "later", contact_id="c-5", next_attempt_at=START + 600)
    elsewhere = await enqueue(store, "elsewhere", location_id="loc-2", contact_id="c-6")
    clock.advance(3)

    failed = await store.fail_unsent_for_location("loc-1", "HighLevel access was lost")

    assert [entry.id for entry in failed] == [waiting.id, retrying.id, later.id]
    assert all(entry.state is OutboxState.FAILED for entry in failed)
    assert {entry.last_error for entry in failed} == {"HighLevel access was lost"}
    assert {entry.updated_at for entry in failed} == {START + 3}
    states = {
        entry_id: (await store.get_outbox(entry_id)).state  # type: ignore[union-attr]
        for entry_id in (in_flight.id, sent.id, unsure.id, elsewhere.id)
    }
    assert states == {
        in_flight.id: OutboxState.SENDING,
        sent.id: OutboxState.SENT,
        unsure.id: OutboxState.UNKNOWN,
        elsewhere.id: OutboxState.PENDING,
    }
    assert await store.fail_unsent_for_location("loc-1", "again") == []
