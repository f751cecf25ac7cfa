"""SlackWorkspaces on a real store (SQLite and PostgreSQL) against the Slack simulator over
HTTP: each workspace posts with its own token, an expiring token is refreshed once across two
instances, and a workspace that uninstalled (or whose refresh Slack refuses) is gone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass

import aiohttp
import pytest
from pydantic import SecretStr
from slack_sdk.oauth.installation_store.models.installation import Installation
from slack_sdk.web.async_client import AsyncWebClient

from bot.posting.errors import WorkspaceGone
from bot.posting.pacing import ChannelPacer
from bot.posting.poster import SlackPoster
from bot.sandbox.slack import SlackSimulator
from bot.slack_install.installation_store import BridgeInstallationStore
from bot.slack_install.workspaces import SlackOAuthApp, SlackWorkspaces
from bot.tenancy.crypto import TokenCipher
from storage import Store
from tests.storage._support import Backend

TEAMS = ("T0ACME", "T0BETA")
TOKEN_TTL = 120.0


class Clock:
    """Real time, moved forward by hand together with the simulator's."""

    def __init__(self, sim: SlackSimulator) -> None:
        self.offset = 0.0
        self._sim = sim

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds
        self._sim.advance_clock(seconds)


@dataclass
class Instance:
    store: Store
    installs: BridgeInstallationStore
    workspaces: SlackWorkspaces


@pytest.fixture
async def sim() -> AsyncIterator[SlackSimulator]:
    simulator = SlackSimulator(token_rotation=True, token_ttl=TOKEN_TTL, post_rate_per_second=50)
    for team in TEAMS:
        workspace = simulator.add_workspace(team, f"{team[3:].title()} Inc")
        workspace.add_channel(f"C{team[1:]}", "general")
    async with simulator:
        yield simulator


async def install(sim: SlackSimulator, installs: BridgeInstallationStore, team: str) -> None:
    """What the install flow stores: oauth.v2.access's answer for a code Slack issued."""
    code = sim.installs.issue_code(
        client_id=sim.client_id, team_id=team, redirect_uri=None, scope=None, user_id="U0ADMIN"
    )
    client = AsyncWebClient(base_url=sim.api_url)
    answer = await client.oauth_v2_access(
        client_id=sim.client_id, client_secret=sim.client_secret, code=code
    )
    await installs.async_save(
        Installation(
            app_id=answer["app_id"],
            team_id=answer["team"]["id"],
            team_name=answer["team"]["name"],
            bot_token=answer["access_token"],
            bot_id="B0BOT",
            bot_user_id=answer["bot_user_id"],
            bot_scopes=answer["scope"],
            bot_refresh_token=answer.get("refresh_token"),
            bot_token_expires_in=answer.get("expires_in"),
            user_id="U0ADMIN",
            installed_at=time.time(),
        )
    )


@pytest.fixture
async def instances(
    backend: Backend, sim: SlackSimulator, cipher: TokenCipher
) -> AsyncIterator[Callable[[Clock], Awaitable[Instance]]]:
    async with AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())

        async def new(clock: Clock) -> Instance:
            store: Store = await stack.enter_async_context(
                backend.new_store(time.time, instance_id=f"instance-{id(clock)}-{time.time()}")
            )
            installs = BridgeInstallationStore(store, cipher)
            app = SlackOAuthApp(
                sim.client_id,
                SecretStr(sim.client_secret),
                AsyncWebClient(base_url=sim.api_url, session=session, retry_handlers=[]),
            )

            def make_poster(client: AsyncWebClient, team: str) -> SlackPoster:
                return SlackPoster(client, ChannelPacer(rate_per_second=50, burst=50, team=team))

            workspaces = SlackWorkspaces(
                make_poster=make_poster, installs=installs, store=store, app=app, clock=clock
            )
            return Instance(store, installs, workspaces)

        yield new


async def test_each_workspace_posts_with_its_own_token(
    sim: SlackSimulator, instances: Callable[[Clock], Awaitable[Instance]]
) -> None:
    one = await instances(Clock(sim))
    for team in TEAMS:
        await install(sim, one.installs, team)
    for team in TEAMS:
        poster = await one.workspaces.poster(team)
        await poster.post(f"C{team[1:]}", f"hello {team}", [])
    posts = sim.calls_to("chat.postMessage")
    assert [(call.team_id, call.args["channel"]) for call in posts] == [
        ("T0ACME", "C0ACME"),
        ("T0BETA", "C0BETA"),
    ]
    with pytest.raises(WorkspaceGone):
        await one.workspaces.poster("T0NOWHERE")


async def test_an_expiring_token_is_refreshed_once_across_two_instances(
    sim: SlackSimulator, instances: Callable[[Clock], Awaitable[Instance]]
) -> None:
    clock = Clock(sim)
    first, second = await instances(clock), await instances(clock)
    await install(sim, first.installs, "T0ACME")
    before = await first.workspaces.token("T0ACME")
    assert await second.workspaces.token("T0ACME") == before
    # Within the last quarter of its lifetime (and past the re-read interval): due for refresh.
    clock.advance(TOKEN_TTL * 0.8)
    tokens = await asyncio.gather(
        *((first if index % 2 else second).workspaces.token("T0ACME") for index in range(20))
    )
    assert sim.oauth_counters.refreshes == 1
    assert sim.oauth_counters.refresh_token_reuses == 0
    assert len(set(tokens)) == 1
    assert tokens[0] != before
    assert tokens[0] in sim.live_tokens("T0ACME")
    # Later again: the refreshed token's refresh token works once more.
    clock.advance(TOKEN_TTL * 0.8)
    poster = await second.workspaces.poster("T0ACME")
    await poster.post("C0ACME", "after two refreshes", [])
    assert sim.oauth_counters.refreshes == 2
    assert sim.oauth_counters.refresh_token_reuses == 0
    assert sim.calls_to("chat.postMessage")[-1].team_id == "T0ACME"


async def test_an_uninstalled_workspace_is_gone_for_every_instance(
    sim: SlackSimulator, instances: Callable[[Clock], Awaitable[Instance]]
) -> None:
    clock = Clock(sim)
    first, second = await instances(clock), await instances(clock)
    for team in TEAMS:
        await install(sim, first.installs, team)
    await second.workspaces.poster("T0ACME")  # cached by the second instance
    await first.installs.async_delete_all(enterprise_id=None, team_id="T0ACME")
    first.workspaces.forget("T0ACME")
    with pytest.raises(WorkspaceGone):
        await first.workspaces.poster("T0ACME")
    # The other instance reads the install again within a few seconds, then knows too.
    clock.advance(10)
    with pytest.raises(WorkspaceGone):
        await second.workspaces.poster("T0ACME")
    assert (await second.workspaces.poster("T0BETA")) is not None


async def test_a_refresh_slack_refuses_leaves_the_workspace_gone(
    sim: SlackSimulator, instances: Callable[[Clock], Awaitable[Instance]]
) -> None:
    clock = Clock(sim)
    one = await instances(clock)
    await install(sim, one.installs, "T0ACME")
    sim.installs.revoke_team("T0ACME")  # its refresh token no longer works
    clock.advance(TOKEN_TTL * 0.9)
    with pytest.raises(WorkspaceGone) as gone:
        await one.workspaces.token("T0ACME")
    assert gone.value.error == "invalid_refresh_token"
    # The lease was given back: a later try asks Slack again rather than waiting on it.
    with pytest.raises(WorkspaceGone):
        await one.workspaces.token("T0ACME")
    assert sim.oauth_counters.refresh_token_reuses == 2  # each try asked Slack
