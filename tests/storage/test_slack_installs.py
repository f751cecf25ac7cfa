"""Slack installations, their bot token refresh leases, and OAuth states in the store, on
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from storage import ConflictError, NotFoundError, SlackInstallation, Store
from tests.storage._support import START, Backend, FakeClock
from tests.storage._tenancy_support import two_instances

LEASE = 60.0


def install(
    team_id: str | None = "T1",
    *,
    user_id: str | None = "U1",
    enterprise_id: str | None = None,
    bot_token: str | None = "cipher-bot-1",  # noqa: S107 - a stand-in ciphertext
    **extra: object,
) -> SlackInstallation:
    fields: dict[str, object] = {
        "enterprise_id": enterprise_id,
        "team_id": team_id,
        "installed_at": START,
        "team_name": "Acme",
        "app_id": "A1",
        "token_type": "bot",
        "bot_id": "B1" if bot_token else None,
        "bot_user_id": "UBOT" if bot_token else None,
        "bot_scopes": ("chat:write", "channels:read") if bot_token else (),
        "bot_token": bot_token,
        "bot_refresh_token": "cipher-bot-refresh-1" if bot_token else None,
        "bot_token_expires_at": START + 43_200 if bot_token else None,
        "user_id": user_id,
        "user_scopes": ("search:read",),
        "user_token": f"cipher-user-{user_id}",
        "custom_values_json": '{"plan": "pro"}',
        **extra,
    }
    return SlackInstallation(**fields)  # type: ignore[arg-type]


# ---------------------------------------------------------------- installations


async def test_an_installation_round_trips_as_the_workspace_and_the_user(
    store: Store, clock: FakeClock
) -> None:
    saved = install(incoming_webhook_url="cipher-hook", incoming_webhook_channel="#general")
    await store.save_slack_installation(saved)
    latest = await store.find_slack_installation(None, "T1")
    own = await store.find_slack_installation(None, "T1", user_id="U1")
    assert latest is not None and own is not None
    expected = dataclasses.replace(saved, bot_installed_at=START)
    assert latest.installation == expected
    assert own.installation == expected
    assert (latest.token_version, latest.refresh_owner, latest.updated_at) == (1, None, START)
    assert await store.find_slack_installation(None, "T1", user_id="U2") is None
    assert await store.find_slack_installation(None, "T2") is None
    assert await store.find_slack_installation("E1", "T1") is None
    bot = await store.find_slack_bot(None, "T1")
    assert bot is not None and bot.installation.bot_token == "cipher-bot-1"


async def test_a_user_only_install_keeps_the_bot_and_a_new_bot_replaces_it(
    store: Store, clock: FakeClock
) -> None:
    await store.save_slack_installation(install())
    clock.advance(10)
    await store.save_slack_installation(
        install(user_id="U2", bot_token=None, installed_at=START + 10)
    )
    latest = await store.find_slack_installation(None, "T1")
    assert latest is not None
    assert latest.installation.user_id == "U2"
    assert latest.installation.user_token == "cipher-user-U2"
    assert latest.installation.bot_token == "cipher-bot-1"
    assert latest.installation.bot_installed_at == START
    assert latest.token_version == 1
    # U1's own install shows the workspace's latest bot too.
    first = await store.find_slack_installation(None, "T1", user_id="U1")
    assert first is not None and first.installation.user_token == "cipher-user-U1"
    assert first.installation.bot_token == "cipher-bot-1"

    await store.save_slack_installation(install(user_id="U2", bot_token="cipher-bot-2"))
    first = await store.find_slack_installation(None, "T1", user_id="U1")
    assert first is not None and first.installation.bot_token == "cipher-bot-2"
    assert first.token_version == 2


async def test_a_bot_alone_is_a_bot_but_no_installation(store: Store) -> None:
    with pytest.raises(ValueError, match="bot token"):
        await store.save_slack_bot(install(bot_token=None))
    await store.save_slack_bot(install(user_id=None))
    bot = await store.find_slack_bot(None, "T1")
    assert bot is not None
    assert (bot.installation.bot_id, bot.installation.user_id) == ("B1", None)
    assert await store.find_slack_installation(None, "T1") is None
    # A later bot replaces it and counts a new token.
    await store.save_slack_bot(install(user_id=None, bot_token="cipher-bot-2"))
    bot = await store.find_slack_bot(None, "T1")
    assert bot is not None and (bot.installation.bot_token, bot.token_version) == (
        "cipher-bot-2",
        2,
    )


async def test_org_wide_installs_are_keyed_by_the_enterprise(store: Store) -> None:
    await store.save_slack_installation(
        install(None, enterprise_id="E1", is_enterprise_install=True, bot_token="cipher-org")
    )
    await store.save_slack_installation(install("T1", enterprise_id="E1", bot_token="cipher-ws"))
    org = await store.find_slack_bot("E1", "T9", is_enterprise_install=True)
    assert org is not None
    assert org.installation.bot_token == "cipher-org"
    assert (org.installation.team_id, org.installation.is_enterprise_install) == (None, True)
    workspace = await store.find_slack_installation("E1", "T1")
    assert workspace is not None and workspace.installation.bot_token == "cipher-ws"
    assert await store.find_slack_bot("E1", "T9") is None
    # The org-wide install is deleted by its enterprise, without a team.
    assert await store.delete_slack_workspace("E1", None) == 2
    assert await store.find_slack_bot("E1", None, is_enterprise_install=True) is None
    assert await store.find_slack_bot("E1", "T1") is not None


async def test_deleting_a_bot_keeps_the_installers(store: Store, backend: Backend) -> None:
    await store.save_slack_installation(install())
    await store.save_slack_bot(install("T2", user_id=None))
    await store.delete_slack_bot(None, "T1")
    await store.delete_slack_bot(None, "T2")
    assert await store.find_slack_bot(None, "T1") is None
    assert await store.find_slack_bot(None, "T2") is None
    latest = await store.find_slack_installation(None, "T1")
    assert latest is not None
    assert (latest.installation.user_token, latest.installation.bot_token) == (
        "cipher-user-U1",
        None,
    )
    assert latest.installation.bot_refresh_token is None
    assert backend.query("SELECT team_id, installer_key FROM slack_installations ORDER BY 2") == [
        ("T1", ""),
        ("T1", "U1"),
    ]


async def test_deleting_installations_by_user_and_all(store: Store, backend: Backend) -> None:
    await store.save_slack_installation(install())
    await store.save_slack_installation(install(user_id="U2", bot_token=None))
    await store.delete_slack_installation(None, "T1", user_id="U1")
    assert await store.find_slack_installation(None, "T1", user_id="U1") is None
    latest = await store.find_slack_installation(None, "T1", user_id="U2")
    assert latest is not None and latest.installation.bot_token == "cipher-bot-1"
    # The latest installer goes too: the workspace keeps its bot, no installation.
    await store.delete_slack_installation(None, "T1", user_id="U2")
    assert await store.find_slack_installation(None, "T1") is None
    assert await store.find_slack_bot(None, "T1") is not None
    assert backend.count_rows("slack_installations") == 1

    await store.save_slack_installation(install(user_id="U3"))
    await store.save_slack_installation(install(user_id="U4", bot_token=None))
    await store.delete_slack_installation(None, "T1")
    assert await store.find_slack_installation(None, "T1") is None
    assert await store.find_slack_installation(None, "T1", user_id="U3") is None
    assert backend.query("SELECT user_token FROM slack_installations") == [(None,)]
    # Without a bot, nothing of the workspace remains.
    await store.delete_slack_bot(None, "T1")
    assert backend.count_rows("slack_installations") == 0


async def test_deleting_a_workspace_leaves_the_others(store: Store, backend: Backend) -> None:
    await store.save_slack_installation(install("T1"))
    await store.save_slack_installation(install("T1", user_id="U2"))
    await store.save_slack_installation(install("T2"))
    assert await store.delete_slack_workspace(None, "T1") == 3
    assert await store.delete_slack_workspace(None, "T1") == 0
    assert await store.find_slack_bot(None, "T1") is None
    assert await store.find_slack_bot(None, "T2") is not None
    assert backend.count_rows("slack_installations") == 2


# ---------------------------------------------------------------- bot token refresh


async def test_a_bot_refresh_is_leased_finished_and_counted(store: Store, clock: FakeClock) -> None:
    await store.save_slack_installation(install())
    assert await store.begin_slack_token_refresh(None, "T1", seen_version=1, lease_seconds=LEASE)
    assert not await store.begin_slack_token_refresh(
        None, "T1", seen_version=1, lease_seconds=LEASE
    )
    clock.advance(2)
    version = await store.finish_slack_token_refresh(
        None,
        "T1",
        bot_token="cipher-bot-2",
        bot_refresh_token="cipher-bot-refresh-2",
        bot_token_expires_at=START + 50_000,
    )
    assert version == 2
    bot = await store.find_slack_bot(None, "T1")
    assert bot is not None
    assert (bot.installation.bot_token, bot.installation.bot_refresh_token) == (
        "cipher-bot-2",
        "cipher-bot-refresh-2",
    )
    assert (bot.installation.bot_token_expires_at, bot.token_version) == (START + 50_000, 2)
    assert (bot.refresh_owner, bot.refresh_lease_until, bot.updated_at) == (None, None, START + 2)
    assert not await store.begin_slack_token_refresh(
        None, "T1", seen_version=1, lease_seconds=LEASE
    )
    # Finishing again without the lease stores nothing.
    with pytest.raises(ConflictError, match="no longer holds"):
        await store.finish_slack_token_refresh(
            None, "T1", bot_token="x", bot_refresh_token=None, bot_token_expires_at=None
        )
    with pytest.raises(ValueError, match="positive"):
        await store.begin_slack_token_refresh(None, "T1", seen_version=2, lease_seconds=0)


async def test_one_of_two_instances_refreshes(backend: Backend, clock: FakeClock) -> None:
    async with two_instances(backend, clock) as (a, b):
        await a.save_slack_installation(install())
        taken = await asyncio.gather(
            a.begin_slack_token_refresh(None, "T1", seen_version=1, lease_seconds=LEASE),
            b.begin_slack_token_refresh(None, "T1", seen_version=1, lease_seconds=LEASE),
        )
        assert sorted(taken) == [False, True]
        holder, other = (a, b) if taken[0] else (b, a)
        with pytest.raises(ConflictError, match="no longer holds"):
            await other.finish_slack_token_refresh(
                None, "T1", bot_token="x", bot_refresh_token=None, bot_token_expires_at=None
            )
        # The other's abandon does not end the holder's lease.
        await other.abandon_slack_token_refresh(None, "T1")
        assert not await other.begin_slack_token_refresh(
            None, "T1", seen_version=1, lease_seconds=LEASE
        )
        # An expired lease may be taken over; the first holder then cannot finish.
        clock.advance(LEASE + 1)
        assert await other.begin_slack_token_refresh(
            None, "T1", seen_version=1, lease_seconds=LEASE
        )
        with pytest.raises(ConflictError):
            await holder.finish_slack_token_refresh(
                None, "T1", bot_token="x", bot_refresh_token=None, bot_token_expires_at=None
            )
        await other.abandon_slack_token_refresh(None, "T1")
        assert await holder.begin_slack_token_refresh(
            None, "T1", seen_version=1, lease_seconds=LEASE
        )


async def test_a_new_bot_or_a_deletion_ends_a_refresh(store: Store) -> None:
    with pytest.raises(NotFoundError):
        await store.finish_slack_token_refresh(
            None, "T1", bot_token="x", bot_refresh_token=None, bot_token_expires_at=None
        )
    await store.save_slack_installation(install())
    assert await store.begin_slack_token_refresh(None, "T1", seen_version=1, lease_seconds=LEASE)
    await store.save_slack_installation(install(bot_token="cipher-bot-2"))
    with pytest.raises(ConflictError, match="no longer holds"):
        await store.finish_slack_token_refresh(
            None, "T1", bot_token="x", bot_refresh_token=None, bot_token_expires_at=None
        )
    assert await store.begin_slack_token_refresh(None, "T1", seen_version=2, lease_seconds=LEASE)
    await store.delete_slack_bot(None, "T1")
    with pytest.raises(ConflictError, match="deleted"):
        await store.finish_slack_token_refresh(
            None, "T1", bot_token="x", bot_refresh_token=None, bot_token_expires_at=None
        )
    assert not await store.begin_slack_token_refresh(
        None, "T1", seen_version=2, lease_seconds=LEASE
    )


# ---------------------------------------------------------------- OAuth states


async def test_a_state_is_consumed_once_and_not_after_it_expired(
    store: Store, clock: FakeClock
) -> None:
    await store.issue_oauth_state("s1", START + 600)
    await store.issue_oauth_state("s2", START + 600)
    with pytest.raises(ConflictError):
        await store.issue_oauth_state("s1", START + 900)
    assert await store.consume_oauth_state("s1")
    assert not await store.consume_oauth_state("s1")
    assert not await store.consume_oauth_state("never-issued")
    clock.advance(600)
    assert not await store.consume_oauth_state("s2")


async def test_expired_states_are_purged(store: Store, backend: Backend, clock: FakeClock) -> None:
    await store.issue_oauth_state("old", START + 10)
    await store.issue_oauth_state("new", START + 600)
    assert await store.purge_expired_oauth_states() == 0
    clock.advance(10)
    assert await store.purge_expired_oauth_states() == 1
    assert await store.purge_expired_oauth_states(START + 600) == 1
    assert backend.count_rows("slack_oauth_states") == 0


async def test_two_stores_racing_for_a_state_consume_it_once(
    backend: Backend, clock: FakeClock
) -> None:
    async with two_instances(backend, clock) as (a, b):
        for n in range(20):
            await a.issue_oauth_state(f"s{n}", START + 600)
            results = await asyncio.gather(
                a.consume_oauth_state(f"s{n}"), b.consume_oauth_state(f"s{n}")
            )
            assert sorted(results) == [False, True]
