"""Per-workspace routing (issue 14, "tenants never mix"): a Slack workspace sees and uses only
its own sub-accounts, in routes, choices, links, inboxes and `/highlevel status`; one of no
workspace is offered to nobody until an admin claims it. Real store on an SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from slack_sdk.models.blocks import Block

from bot.highlevel import HighLevelClient
from bot.tenancy.accounts import SubAccounts
from bot.tenancy.admin import SubAccountAdmin
from bot.tenancy.routing import ChannelRouting, Inbox, Route
from bot.ui.highlevel_builder import claim_first_message, status_message, taken_message
from storage import SqliteStore, Store
from tests.ui._slack_checks import assert_message_accepted, foreign_markup, mrkdwn_texts

DEFAULT_INBOX = "C0DEFAULT"
NOW = 1_714_000_000.0


def no_client(location_id: str) -> HighLevelClient:
    raise AssertionError(f"routing asked for a HighLevel client of {location_id}")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """Two workspaces' sub-accounts (A: two, B: one), one of none, one of B disconnected."""
    async with SqliteStore(tmp_path / "bridge.db") as opened:
        for location_id, name in (
            ("loc-a1", "Alpha Dental"),
            ("loc-a2", "Alpha Ortho"),
            ("loc-b", "Beta Bakery"),
            ("loc-u", "Unclaimed Spa"),
            ("loc-b-gone", "Beta Old"),
        ):
            await opened.save_location(location_id, auth="pit", name=name)
        for location_id, team in (
            ("loc-a1", "TA"),
            ("loc-a2", "TA"),
            ("loc-b", "TB"),
            ("loc-b-gone", "TB"),
        ):
            assert await opened.claim_location(location_id, team) == team
        await opened.disconnect_location("loc-b-gone", "invalid_grant")
        yield opened


def routing_of(store: Store, *, per_workspace: bool = True) -> ChannelRouting:
    accounts = SubAccounts(store, no_client)
    return ChannelRouting(store, accounts, default_inbox=DEFAULT_INBOX, per_workspace=per_workspace)


def admin_of(routing: ChannelRouting) -> SubAccountAdmin:
    return SubAccountAdmin(routing, routing._accounts)


def ids(records: object) -> list[str]:
    return [record.location_id for record in records]  # type: ignore[attr-defined]


def shown(message: tuple[str, list[Block]]) -> str:
    text, blocks = message
    texts = mrkdwn_texts(assert_message_accepted(text, blocks))
    for part in texts:
        assert foreign_markup(part) == [], part
    return "\n".join([text, *texts])


# ---------------------------------------------------------------- without per_workspace


async def test_without_per_workspace_every_channel_sees_every_sub_account(store: Store) -> None:
    routing = routing_of(store, per_workspace=False)
    admin = admin_of(routing)
    assert not routing.per_workspace

    route = await routing.route("TB", "C1")
    assert route.location_id is None and not route.linked
    assert ids(route.choices) == ["loc-a1", "loc-a2", "loc-b", "loc-u"]
    assert await routing.may_use("TC", "loc-a1")
    assert await routing.inbox("loc-a1") == Inbox(DEFAULT_INBOX, None)

    outcome = await admin.link("TB", "C1", "Alpha Dental", user_id="U1")
    assert outcome.kind == "linked" and outcome.record is not None
    assert await routing.route("TB", "C1") == Route("loc-a1", linked=True)
    assert (await store.get_location("loc-a1")).slack_team_id == "TA"  # type: ignore[union-attr]
    assert (await store.get_location("loc-u")).slack_team_id is None  # type: ignore[union-attr]
    assert ids(s.record for s in await admin.overview("TC")) == [
        "loc-a1",
        "loc-a2",
        "loc-b",
        "loc-b-gone",
        "loc-u",
    ]


# ---------------------------------------------------------------- routes and inboxes


async def test_a_workspace_routes_only_to_its_own_sub_accounts(store: Store) -> None:
    routing = routing_of(store)
    assert routing.per_workspace

    two = await routing.route("TA", "C1")
    assert (two.location_id, two.linked, ids(two.choices)) == (None, False, ["loc-a1", "loc-a2"])
    assert await routing.route("TB", "C1") == Route("loc-b", linked=False)
    # A workspace with none: nothing, not the sub-account of no workspace.
    assert await routing.route("TC", "C1") == Route(None, linked=False, choices=())

    # A link to another workspace's sub-account (made before links claimed) is not followed.
    await store.link_channel("TB", "C2", "loc-a1", linked_by="U1")
    assert await routing.route("TB", "C2") == Route("loc-b", linked=False)
    # A link in the workspace to a sub-account of none counts; so does its own, even lost.
    await store.link_channel("TC", "C3", "loc-u", linked_by="U1")
    assert await routing.route("TC", "C3") == Route("loc-u", linked=True)
    await store.link_channel("TB", "C4", "loc-b-gone", linked_by="U1")
    assert await routing.route("TB", "C4") == Route("loc-b-gone", linked=True)

    assert await routing.may_use("TA", "loc-a1")
    assert not await routing.may_use("TB", "loc-a1")
    assert not await routing.may_use("TA", "loc-u")
    assert await routing.may_use("TC", "loc-u")  # linked in TC
    assert not await routing.may_use("TA", "loc-missing")


async def test_an_owned_sub_account_uses_only_its_own_workspace_inbox(store: Store) -> None:
    routing = routing_of(store)
    # Owned, no inbox of its own: none (the default inbox is the default workspace's).
    assert await routing.inbox("loc-a1") is None
    await store.set_location_inbox("loc-a1", "TA", "C-A-INBOX")
    await routing._accounts.reload()
    assert await routing.inbox("loc-a1") == Inbox("C-A-INBOX", "TA")
    # An inbox in another workspace (set before owners existed) is never used.
    await store.set_location_inbox("loc-a2", "TB", "C-B-INBOX")
    await routing._accounts.reload()
    assert await routing.inbox("loc-a2") is None
    # Of no workspace: its own inbox, else the default one, as without workspaces.
    assert await routing.inbox("loc-u") == Inbox(DEFAULT_INBOX, None)
    await store.set_location_inbox("loc-u", "TC", "C-U-INBOX")
    await routing._accounts.reload()
    assert await routing.inbox("loc-u") == Inbox("C-U-INBOX", "TC")


# ---------------------------------------------------------------- /highlevel link


async def test_another_workspaces_sub_account_is_as_if_it_did_not_exist(store: Store) -> None:
    admin = admin_of(routing_of(store))

    by_name = await admin.link("TA", "C1", "Beta Bakery", user_id="U1")
    by_id = await admin.link("TA", "C1", "loc-b", user_id="U1")
    for outcome in (by_name, by_id):
        assert outcome.kind == "unknown" and outcome.record is None
        assert ids(outcome.choices) == ["loc-a1", "loc-a2", "loc-u"]
    listed = await admin.link("TA", "C1", "", user_id="U1")
    assert (listed.kind, ids(listed.choices)) == ("unknown", ["loc-a1", "loc-a2", "loc-u"])
    no_alpha = await admin.link("TB", "C1", "Al", user_id="U1")
    assert (no_alpha.kind, ids(no_alpha.choices)) == ("unknown", ["loc-b", "loc-u"])
    assert (await admin.link("TA", "C1", "Alpha", user_id="U1")).kind == "ambiguous"
    assert await store.get_channel_link("TA", "C1") is None
    assert (await admin.link("TC", "C1", "Alpha Dental", user_id="U1")).kind == "unknown"


async def test_linking_a_sub_account_of_no_workspace_claims_it(store: Store) -> None:
    routing = routing_of(store)
    admin = admin_of(routing)
    assert await routing.route("TC", "C1") == Route(None, linked=False, choices=())

    outcome = await admin.link("TC", "C1", "Unclaimed", user_id="U-admin")

    assert outcome.kind == "linked" and outcome.record is not None
    assert outcome.record.location_id == "loc-u"
    assert (await store.get_location("loc-u")).slack_team_id == "TC"  # type: ignore[union-attr]
    assert await routing.route("TC", "C1") == Route("loc-u", linked=True)
    # Every channel of TC has it now, and no other workspace sees it any more.
    assert await routing.route("TC", "C2") == Route("loc-u", linked=False)
    assert ids((await routing.route("TA", "C9")).choices) == ["loc-a1", "loc-a2"]
    assert (await admin.link("TA", "C1", "Unclaimed Spa", user_id="U1")).kind == "unknown"
    assert (await admin.link("TA", "C1", "loc-u", user_id="U1")).kind == "unknown"


class RivalClaimsFirst(ChannelRouting):
    """Another instance's admin, in workspace TB, claims the sub-account just before this
    one does (between the look-up and the claim)."""

    async def claim(self, location_id: str, team_id: str) -> str | None:
        assert await self._store.claim_location(location_id, "TB") == "TB"
        return await super().claim(location_id, team_id)


async def test_a_claim_lost_to_another_workspace_is_refused_without_naming_it(
    store: Store,
) -> None:
    routing = RivalClaimsFirst(store, SubAccounts(store, no_client), per_workspace=True)
    admin = admin_of(routing)

    outcome = await admin.link("TA", "C1", "Unclaimed Spa", user_id="U1")

    assert (outcome.kind, outcome.record, outcome.choices) == ("taken", None, ())
    assert await store.get_channel_link("TA", "C1") is None
    assert (await store.get_location("loc-u")).slack_team_id == "TB"  # type: ignore[union-attr]
    text = shown(taken_message())
    assert "another Slack workspace" in text
    assert "TB" not in text and "Unclaimed" not in text and "Beta" not in text


async def test_an_inbox_claim_lost_to_another_workspace_is_refused(store: Store) -> None:
    await store.link_channel("TA", "C1", "loc-u", linked_by="U1")
    routing = RivalClaimsFirst(store, SubAccounts(store, no_client), per_workspace=True)

    outcome = await admin_of(routing).set_inbox("TA", "C1")

    assert (outcome.kind, outcome.record) == ("taken", None)
    assert (await store.get_location("loc-u")).inbox_channel_id is None  # type: ignore[union-attr]


# ---------------------------------------------------------------- /highlevel inbox


async def test_inbox_is_set_for_the_workspaces_own_sub_account_only(store: Store) -> None:
    routing = routing_of(store)
    admin = admin_of(routing)

    several = await admin.set_inbox("TA", "C1")
    assert (several.kind, ids(several.choices)) == ("link_first", ["loc-a1", "loc-a2"])
    nothing_yet = await admin.set_inbox("TC", "C1")
    assert (nothing_yet.kind, ids(nothing_yet.choices)) == ("claim_first", ["loc-u"])
    text = shown(claim_first_message(nothing_yet.choices))
    assert "Unclaimed Spa" in text and "Alpha" not in text and "Beta" not in text

    only = await admin.set_inbox("TB", "C-B")
    assert only.kind == "set" and only.record is not None and only.record.location_id == "loc-b"
    assert await routing.inbox("loc-b") == Inbox("C-B", "TB")

    # A channel of TC linked to the sub-account of none: making it the inbox claims it.
    await store.link_channel("TC", "C-C", "loc-u", linked_by="U1")
    claimed = await admin.set_inbox("TC", "C-C")
    assert claimed.kind == "set"
    assert (await store.get_location("loc-u")).slack_team_id == "TC"  # type: ignore[union-attr]
    assert await routing.inbox("loc-u") == Inbox("C-C", "TC")
    # Once every sub-account has a workspace, a workspace with none has nothing to claim.
    assert (await admin.set_inbox("TD", "C1")).kind == "none_connected"


# ---------------------------------------------------------------- /highlevel status


async def test_status_shows_the_workspace_its_own_and_the_unclaimed(store: Store) -> None:
    routing = routing_of(store)
    admin = admin_of(routing)
    await store.link_channel("TA", "C0AAAA1", "loc-a1", linked_by="U1")
    await store.link_channel("TB", "C0BBBB1", "loc-b", linked_by="U1")
    await store.link_channel("TB", "C0BBBB2", "loc-u", linked_by="U1")  # before owners existed
    await store.set_location_inbox("loc-a1", "TA", "C0AAAA9")
    await store.set_location_inbox("loc-u", "TB", "C0BBBB9")

    statuses = await admin.overview("TA")

    assert ids(s.record for s in statuses) == ["loc-a1", "loc-a2", "loc-u"]
    by_id = {s.record.location_id: s for s in statuses}
    assert [link.channel_id for link in by_id["loc-a1"].links] == ["C0AAAA1"]
    assert by_id["loc-a1"].inbox_channel_id == "C0AAAA9"
    assert by_id["loc-u"].links == () and by_id["loc-u"].inbox_channel_id is None
    assert [s.unowned for s in statuses] == [False, False, True]
    assert not any(s.default_inbox for s in statuses)

    text = shown(status_message(statuses, now=NOW))
    assert "Alpha Dental" in text and "Unclaimed Spa" in text
    assert "Beta" not in text and "C0BBBB" not in text and DEFAULT_INBOX not in text
    assert text.count("Not in any workspace yet") == 1
    assert "`/highlevel link` in a channel claims it for this workspace" in text

    after = await admin.link("TB", "C0BBBB2", "Unclaimed", user_id="U1")
    assert after.kind == "linked"
    assert ids(s.record for s in await admin.overview("TA")) == ["loc-a1", "loc-a2"]
    b_view = await admin.overview("TB")
    assert ids(s.record for s in b_view) == ["loc-b", "loc-b-gone", "loc-u"]
    assert not any(s.unowned for s in b_view)
    # Without a team (the bridge's own tools), every sub-account.
    assert len(await admin.overview()) == 5
