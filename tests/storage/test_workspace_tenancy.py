"""Sub-accounts that belong to a Slack workspace (migration 9): claiming one, releasing an
uninstalled workspace, listing the workspaces the app is installed in, and `db copy` of the
owners; on SQLite and PostgreSQL (several instances on one database where it matters)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from storage import (
    LATEST_VERSION,
    MIGRATIONS,
    ReleasedWorkspace,
    SlackInstallation,
    SlackWorkspaceRow,
    SqliteStore,
    Store,
    copy_database,
)
from tests.storage._support import START, Backend, FakeClock, enqueue
from tests.storage._tenancy_support import oauth_location, two_instances

# ---------------------------------------------------------------- schema


async def test_a_version_8_database_gains_owners_and_keeps_its_locations(
    backend: Backend, clock: FakeClock
) -> None:
    async with backend.new_store(clock, migrations=MIGRATIONS[:8]) as old:
        # The version-8 store cannot map a location row of version 9: written from outside.
        backend.query(
            "INSERT INTO ghl_locations (location_id, name, auth, status, access_token,"
            " token_version, connected_at, updated_at)"
            " VALUES ('loc-old', 'Old Town', 'location', 'connected', 'cipher', 3, ?, ?)",
            (START, START),
        )
        await old.link_channel("T1", "C1", "loc-old", linked_by="U1")
        await old.set_location_inbox("loc-old", "T1", "C9")
    assert "ghl_locations_slack_team" not in backend.index_names()

    async with backend.new_store(clock) as new:
        assert await new.schema_version() == LATEST_VERSION >= 9
        assert "ghl_locations_slack_team" in backend.index_names()
        record = await new.get_location("loc-old")
        assert record is not None
        assert record.slack_team_id is None
        assert (record.name, record.access_token, record.token_version) == ("Old Town", "cipher", 3)
        assert (record.inbox_team_id, record.inbox_channel_id) == ("T1", "C9")
        assert [link.channel_id for link in await new.list_channel_links()] == ["C1"]
        assert await new.claim_location("loc-old", "T1") == "T1"


# ---------------------------------------------------------------- claiming


async def test_a_location_is_claimed_once_and_keeps_its_owner(store: Store) -> None:
    await oauth_location(store, "loc-1")
    assert (await store.get_location("loc-1")).slack_team_id is None  # type: ignore[union-attr]
    assert await store.claim_location("loc-x", "T1") is None

    assert await store.claim_location("loc-1", "T1") == "T1"
    assert await store.claim_location("loc-1", "T1") == "T1"
    assert await store.claim_location("loc-1", "T2") == "T1"
    record = await store.get_location("loc-1")
    assert record is not None and record.slack_team_id == "T1"
    # A reconnection (a new token) keeps the owner; listing shows it.
    await oauth_location(store, "loc-1", access_token="cipher-access-2")
    assert [(r.location_id, r.slack_team_id) for r in await store.list_locations()] == [
        ("loc-1", "T1")
    ]


async def test_instances_claiming_at_once_agree_on_one_owner(
    backend: Backend, clock: FakeClock
) -> None:
    async with two_instances(backend, clock) as (a, b):
        await oauth_location(a, "loc-1")
        for round_ in range(6):
            claims = await asyncio.gather(
                a.claim_location("loc-1", "T-a"),
                b.claim_location("loc-1", "T-b"),
                a.claim_location("loc-1", "T-c"),
                b.claim_location("loc-1", "T-d"),
            )
            owner = (await b.get_location("loc-1")).slack_team_id  # type: ignore[union-attr]
            assert owner is not None and owner in {"T-a", "T-b", "T-c", "T-d"}, round_
            assert list(claims) == [owner] * 4, round_
            released = await (a if round_ % 2 else b).release_slack_workspace(owner)
            assert released.locations == 1


# ---------------------------------------------------------------- releasing


async def test_releasing_a_workspace_undoes_only_its_routing(store: Store) -> None:
    for location_id in ("loc-1", "loc-2", "loc-3", "loc-4"):
        await oauth_location(store, location_id, name=location_id)
    assert await store.claim_location("loc-1", "T1") == "T1"
    assert await store.claim_location("loc-2", "T1") == "T1"
    assert await store.claim_location("loc-3", "T2") == "T2"
    await store.link_channel("T1", "C1", "loc-1", linked_by="U1")
    await store.link_channel("T1", "C2", "loc-2", linked_by="U1")
    await store.link_channel("T2", "C1", "loc-3", linked_by="U2")
    await store.set_location_inbox("loc-1", "T1", "C1")
    await store.set_location_inbox("loc-3", "T2", "C3")
    # An unowned location whose inbox was in T1 (made before workspaces owned anything).
    await store.set_location_inbox("loc-4", "T1", "C4")
    thread = await store.upsert_thread(
        team_id="T1", channel_id="C1", location_id="loc-1", contact_id="c-1", thread_ts="1.0"
    )
    entry = await enqueue(store, "queued-in-t1", location_id="loc-1")

    released = await store.release_slack_workspace("T1")

    assert released == ReleasedWorkspace(locations=2, links=2, inboxes=2)
    owners = {r.location_id: r.slack_team_id for r in await store.list_locations()}
    assert owners == {"loc-1": None, "loc-2": None, "loc-3": "T2", "loc-4": None}
    inboxes = {
        r.location_id: (r.inbox_team_id, r.inbox_channel_id) for r in await store.list_locations()
    }
    assert inboxes == {
        "loc-1": (None, None),
        "loc-2": (None, None),
        "loc-3": ("T2", "C3"),
        "loc-4": (None, None),
    }
    assert [(k.team_id, k.channel_id) for k in await store.list_channel_links()] == [("T2", "C1")]
    assert await store.get_thread(thread.id) == thread
    assert await store.get_outbox(entry.id) == entry
    # Nothing left of it: a second release changes nothing, and the location may be claimed.
    assert await store.release_slack_workspace("T1") == ReleasedWorkspace(0, 0, 0)
    assert await store.claim_location("loc-1", "T2") == "T2"


# ---------------------------------------------------------------- workspaces


def _install(team_id: str | None, user_id: str | None, **extra: object) -> SlackInstallation:
    fields: dict[str, object] = {
        "enterprise_id": None,
        "team_id": team_id,
        "installed_at": START,
        "team_name": "Acme",
        "bot_token": "cipher-bot",
        "bot_token_expires_at": START + 43_200,
        "user_id": user_id,
        "user_token": f"cipher-user-{user_id}",
        **extra,
    }
    return SlackInstallation(**fields)  # type: ignore[arg-type]


async def test_workspaces_are_listed_once_each_by_name_without_tokens(
    store: Store, clock: FakeClock
) -> None:
    assert await store.list_slack_workspaces() == []
    await store.save_slack_installation(_install("T2", "U1", team_name="zeta"))
    clock.advance(5)
    await store.save_slack_installation(_install("T2", "U2", team_name="zeta", bot_token=None))
    await store.save_slack_installation(
        _install("T1", "U3", team_name="Alpha", bot_token_expires_at=None, installed_at=START + 9)
    )
    await store.save_slack_installation(
        _install(
            None,
            "U4",
            enterprise_id="E1",
            team_name=None,
            is_enterprise_install=True,
            enterprise_name="Grid",
        )
    )
    await store.save_slack_bot(_install("T3", None, team_name="alpha"))
    await store.save_slack_installation(_install("T0", "U5", team_name="Alpha"))
    await store.delete_slack_bot(None, "T0")

    rows = await store.list_slack_workspaces()

    assert rows == [
        SlackWorkspaceRow(None, "T0", "Alpha", False, START, None, has_bot=False),
        SlackWorkspaceRow(None, "T1", "Alpha", False, START + 9, None, has_bot=True),
        SlackWorkspaceRow(None, "T3", "alpha", False, START, START + 43_200, has_bot=True),
        SlackWorkspaceRow(None, "T2", "zeta", False, START, START + 43_200, has_bot=True),
        SlackWorkspaceRow("E1", None, None, True, START, START + 43_200, has_bot=True),
    ]
    assert not any(
        "token" in field.name and "expires" not in field.name
        for field in dataclasses.fields(SlackWorkspaceRow)
    )
    await store.delete_slack_workspace(None, "T2")
    assert [row.team_id for row in await store.list_slack_workspaces()] == ["T0", "T1", "T3", None]


# ---------------------------------------------------------------- db copy


async def test_db_copy_keeps_the_owners(store: Store, backend: Backend, tmp_path: Path) -> None:
    await oauth_location(store, "loc-1")
    await oauth_location(store, "loc-2")
    assert await store.claim_location("loc-1", "T1") == "T1"
    target = tmp_path / "copy.db"

    counts = await copy_database(backend.url, f"sqlite:///{target}")

    assert counts["ghl_locations"] == 2
    async with SqliteStore(target) as copied:
        owners = {r.location_id: r.slack_team_id for r in await copied.list_locations()}
    assert owners == {"loc-1": "T1", "loc-2": None}
