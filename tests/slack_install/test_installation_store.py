"""Bolt's installation and OAuth state stores over the bridge's store, on SQLite and
PostgreSQL: slack_sdk objects round-trip, tokens are ciphertext at rest, states are single use."""

from __future__ import annotations

import asyncio
import copy

import pytest
from pydantic import SecretStr
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.models.installation import Installation

from bot.slack_install.installation_store import BridgeInstallationStore
from bot.slack_install.state_store import BridgeOAuthStateStore
from bot.tenancy.crypto import TokenCipher, TokenDecryptError, generate_key
from storage import ConflictError, Store
from tests.storage._support import START, Backend, FakeClock

BOT_TOKEN = "xoxe.xoxb-1-bot-secret"
BOT_REFRESH = "xoxe-1-bot-refresh-secret"
USER_TOKEN = "xoxe.xoxp-1-user-secret"
USER_REFRESH = "xoxe-1-user-refresh-secret"
HOOK = "https://hooks.slack.invalid/services/T1/B1/hook-secret"
SECRETS = (BOT_TOKEN, BOT_REFRESH, USER_TOKEN, USER_REFRESH, HOOK)


def installation(
    team_id: str | None = "T1", *, user_id: str = "U1", **extra: object
) -> Installation:
    fields: dict[str, object] = {
        "app_id": "A1",
        "enterprise_id": None,
        "team_id": team_id,
        "team_name": "Acme",
        "bot_token": BOT_TOKEN,
        "bot_id": "B1",
        "bot_user_id": "UBOT",
        "bot_scopes": ["chat:write", "channels:history"],
        "bot_refresh_token": BOT_REFRESH,
        "bot_token_expires_at": int(START) + 43_200,
        "user_id": user_id,
        "user_token": USER_TOKEN,
        "user_scopes": ["search:read"],
        "user_refresh_token": USER_REFRESH,
        "user_token_expires_at": int(START) + 43_200,
        "incoming_webhook_url": HOOK,
        "incoming_webhook_channel": "#general",
        "incoming_webhook_channel_id": "C1",
        "incoming_webhook_configuration_url": "https://acme.slack.invalid/config",
        "token_type": "bot",
        "installed_at": START,
        "custom_values": {"plan": "pro"},
        **extra,
    }
    return Installation(**fields)  # type: ignore[arg-type]


def raw_rows(backend: Backend) -> str:
    return repr(backend.query("SELECT * FROM slack_installations"))


async def test_an_installation_round_trips_with_rotation_fields(
    installations: BridgeInstallationStore,
) -> None:
    saved = installation()
    await installations.async_save(saved)
    found = await installations.async_find_installation(enterprise_id=None, team_id="T1")
    assert found is not None
    assert found.to_dict() == saved.to_dict()
    own = await installations.async_find_installation(
        enterprise_id=None, team_id="T1", user_id="U1"
    )
    assert own is not None and own.to_dict() == saved.to_dict()
    bot = await installations.async_find_bot(enterprise_id=None, team_id="T1")
    assert bot is not None
    assert bot.to_dict() == saved.to_bot().to_dict()
    assert (bot.bot_refresh_token, bot.bot_token_expires_at) == (BOT_REFRESH, int(START) + 43_200)
    assert await installations.async_find_bot(enterprise_id=None, team_id="T2") is None
    assert (
        await installations.async_find_installation(enterprise_id=None, team_id="T1", user_id="U9")
        is None
    )


async def test_the_store_never_sees_a_token_in_plain_text(
    installations: BridgeInstallationStore, backend: Backend, cipher: TokenCipher
) -> None:
    await installations.async_save(installation())
    await installations.async_save_bot(installation("T2").to_bot())
    rows = raw_rows(backend)
    assert "UBOT" in rows  # the rows were read
    for secret in SECRETS:
        assert secret not in rows
    (stored,) = backend.query(
        "SELECT bot_token FROM slack_installations WHERE team_id = 'T1' AND installer_key = ''"
    )[0]
    assert cipher.decrypt(stored) == SecretStr(BOT_TOKEN)
    # Another key cannot read them.
    other = BridgeInstallationStore(installations._store, TokenCipher(SecretStr(generate_key())))
    with pytest.raises(TokenDecryptError):
        await other.async_find_bot(enterprise_id=None, team_id="T1")


async def test_a_bot_saved_alone_is_found_as_a_bot(installations: BridgeInstallationStore) -> None:
    bot = Bot(
        app_id="A1",
        team_id="T3",
        bot_token=BOT_TOKEN,
        bot_id="B3",
        bot_user_id="UBOT3",
        bot_scopes="chat:write",
        bot_refresh_token=BOT_REFRESH,
        bot_token_expires_at=int(START) + 100,
        installed_at=START,
    )
    await installations.async_save_bot(bot)
    found = await installations.async_find_bot(enterprise_id=None, team_id="T3")
    assert found is not None and found.to_dict() == bot.to_dict()
    assert await installations.async_find_installation(enterprise_id=None, team_id="T3") is None


async def test_org_wide_installs_are_found_for_any_team_of_the_org(
    installations: BridgeInstallationStore,
) -> None:
    org = installation(None, enterprise_id="E1", is_enterprise_install=True)
    await installations.async_save(org)
    for team in ("T1", "T2", None):
        bot = await installations.async_find_bot(
            enterprise_id="E1", team_id=team, is_enterprise_install=True
        )
        assert bot is not None and bot.bot_token == BOT_TOKEN and bot.team_id is None
        found = await installations.async_find_installation(
            enterprise_id="E1", team_id=team, is_enterprise_install=True
        )
        assert found is not None and found.is_enterprise_install
    assert await installations.async_find_bot(enterprise_id="E1", team_id="T1") is None
    await installations.async_delete_all(enterprise_id="E1", team_id=None)
    assert (
        await installations.async_find_bot(
            enterprise_id="E1", team_id=None, is_enterprise_install=True
        )
        is None
    )


async def test_deletion(installations: BridgeInstallationStore, backend: Backend) -> None:
    await installations.async_save(installation())
    await installations.async_save(installation(user_id="U2", bot_token=None))
    await installations.async_save(installation("T2"))
    await installations.async_delete_installation(enterprise_id=None, team_id="T1", user_id="U1")
    assert (
        await installations.async_find_installation(enterprise_id=None, team_id="T1", user_id="U1")
        is None
    )
    await installations.async_delete_bot(enterprise_id=None, team_id="T1")
    assert await installations.async_find_bot(enterprise_id=None, team_id="T1") is None
    latest = await installations.async_find_installation(enterprise_id=None, team_id="T1")
    assert latest is not None and (latest.user_id, latest.bot_token) == ("U2", None)
    await installations.async_delete_all(enterprise_id=None, team_id="T1")
    assert await installations.async_find_installation(enterprise_id=None, team_id="T1") is None
    assert backend.query("SELECT DISTINCT team_id FROM slack_installations") == [("T2",)]


async def test_a_bot_refresh_happens_once_across_instances(
    backend: Backend, clock: FakeClock, cipher: TokenCipher
) -> None:
    async with (
        backend.new_store(clock, instance_id="a") as a,
        backend.new_store(clock, instance_id="b") as b,
    ):
        first, second = BridgeInstallationStore(a, cipher), BridgeInstallationStore(b, cipher)
        await first.async_save(installation())
        found = await first.async_find_bot_version(enterprise_id=None, team_id="T1")
        assert found is not None
        bot, version = found
        taken = await asyncio.gather(
            first.async_begin_bot_refresh(bot, seen_version=version, lease_seconds=30),
            second.async_begin_bot_refresh(bot, seen_version=version, lease_seconds=30),
        )
        assert sorted(taken) == [False, True]
        winner = first if taken[0] else second
        refreshed = copy.copy(bot)
        refreshed.bot_token = "xoxe.xoxb-2"
        refreshed.bot_refresh_token = "xoxe-2-refresh"
        refreshed.bot_token_expires_at = int(START) + 86_400
        loser = second if winner is first else first
        with pytest.raises(ConflictError):
            await loser.async_finish_bot_refresh(refreshed)
        assert await winner.async_finish_bot_refresh(refreshed) == version + 1
        seen = await loser.async_find_bot_version(enterprise_id=None, team_id="T1")
        assert seen is not None
        assert (seen[0].bot_token, seen[0].bot_refresh_token, seen[1]) == (
            "xoxe.xoxb-2",
            "xoxe-2-refresh",
            version + 1,
        )
        assert seen[0].bot_token_expires_at == int(START) + 86_400
        assert "xoxe.xoxb-2" not in raw_rows(backend)
        # A failed refresh frees the lease at once.
        assert await loser.async_begin_bot_refresh(seen[0], seen_version=seen[1], lease_seconds=30)
        await loser.async_abandon_bot_refresh(seen[0])
        assert await winner.async_begin_bot_refresh(seen[0], seen_version=seen[1], lease_seconds=30)


# ---------------------------------------------------------------- OAuth states


async def test_a_state_is_consumed_once(store: Store, clock: FakeClock) -> None:
    states = BridgeOAuthStateStore(store, clock=clock)
    issued = await states.async_issue()
    other = await states.async_issue()
    assert issued != other and len(issued) >= 40
    assert await states.async_consume(issued)
    assert not await states.async_consume(issued)
    assert not await states.async_consume("forged")
    assert await states.async_consume(other)


async def test_a_state_expires(store: Store, clock: FakeClock, backend: Backend) -> None:
    states = BridgeOAuthStateStore(store, clock=clock, expiration_seconds=60)
    stale = await states.async_issue()
    clock.advance(59)
    fresh = await states.async_issue()
    clock.advance(1)
    assert not await states.async_consume(stale)
    assert await states.async_consume(fresh)
    # Expired states are swept when the next one is issued.
    expired = await states.async_issue()
    clock.advance(61)
    await states.async_issue()
    assert not await states.async_consume(expired)
    assert backend.count_rows("slack_oauth_states") == 1
    with pytest.raises(ValueError, match="positive"):
        BridgeOAuthStateStore(store, expiration_seconds=0)


async def test_two_instances_racing_for_a_state_consume_it_once(
    backend: Backend, clock: FakeClock
) -> None:
    async with (
        backend.new_store(clock, instance_id="a") as a,
        backend.new_store(clock, instance_id="b") as b,
    ):
        first, second = (BridgeOAuthStateStore(s, clock=clock) for s in (a, b))
        for _ in range(10):
            state = await first.async_issue()
            results = await asyncio.gather(first.async_consume(state), second.async_consume(state))
            assert sorted(results) == [False, True]
