"""Token rotation across two instances on one PostgreSQL: Slack's bot tokens expire every few
seconds, both bridges keep sending and showing replies in two workspaces, and each expiring
token is refreshed by exactly one of them (a refresh token works once)."""

from __future__ import annotations

import itertools
from functools import partial

import pytest

from bot.sandbox.highlevel import HighLevelSimulator
from bot.sandbox.slack import SlackDriver
from bot.sandbox.stack import AGENT_USER, SALES_CHANNEL
from tests.e2e.conftest import eventually
from tests.e2e.test_oauth_install import L1, L2
from tests.e2e.test_slack_install import (
    ACME,
    ACME_ADMIN,
    ACME_SALES,
    ADA_PHONE,
    MARIE_PHONE,
    SEND,
    command,
    contact_id,
    set_up,
    thread_texts,
    two_workspace_stack,
)


def went_out_count(highlevel: HighLevelSimulator, count: int) -> bool:
    return len(highlevel.requests_to(*SEND)) == count


# PostgreSQL, like the second run of every end-to-end test: with `make test-slow` (CI runs it).
pytestmark = [pytest.mark.postgres, pytest.mark.slow]

TOKEN_TTL = 6.0  # seconds: refreshed when under a quarter is left
REFRESHES_WANTED = 4  # at least two per workspace
MAX_ROUNDS = 60


async def test_tokens_rotate_once_across_two_instances_while_both_work(postgres_url: str) -> None:
    stack = two_workspace_stack(postgres_url, token_rotation=True, token_ttl=TOKEN_TTL)
    await stack.start()
    try:
        slack, highlevel = stack.slack, stack.highlevel
        acme_first = await set_up(stack)
        second = await stack.add_bridge()
        acme_second = stack.driver_for(ACME, bridge=second)
        own_second = second.driver
        senders: list[tuple[SlackDriver, str, str, str]] = [
            (stack.driver, AGENT_USER, SALES_CHANNEL, ADA_PHONE),
            (acme_second, ACME_ADMIN, ACME_SALES, MARIE_PHONE),
            (own_second, AGENT_USER, SALES_CHANNEL, ADA_PHONE),
            (acme_first, ACME_ADMIN, ACME_SALES, MARIE_PHONE),
        ]
        # Rounds until the tokens of both workspaces were refreshed a few times: each round
        # is one send through one of the bridges, in turn, and waits for it to go out.
        rounds = itertools.islice(itertools.cycle(senders), MAX_ROUNDS)
        for sent, (driver, user, channel, phone) in enumerate(rounds, start=1):
            await command(driver, f"/sendsms {phone} round {sent}", user=user, channel=channel)
            await eventually(partial(went_out_count, highlevel, sent), within=15)
            if slack.oauth_counters.refreshes >= REFRESHES_WANTED and sent > 8:
                break
        assert slack.oauth_counters.refreshes >= REFRESHES_WANTED
        assert slack.oauth_counters.refresh_token_reuses == 0
        # Replies arrive in both workspaces after the rotations, shown with live tokens.
        await highlevel.customer_reply(contact_id(highlevel, L1, ADA_PHONE), "SMS", "late ada")
        await highlevel.customer_reply(contact_id(highlevel, L2, MARIE_PHONE), "SMS", "late marie")
        await eventually(
            lambda: any("late ada" in t for t in thread_texts(slack, slack.team_id, SALES_CHANNEL)),
            within=15,
        )
        await eventually(
            lambda: any("late marie" in t for t in thread_texts(slack, ACME, ACME_SALES)), within=15
        )
        refused = [
            (call.method, call.error)
            for call in slack.calls
            if call.error
            in ("token_expired", "invalid_auth", "token_revoked", "invalid_refresh_token")
        ]
        assert refused == []
        assert {call.team_id for call in slack.calls_to("chat.postMessage")} == {
            slack.team_id,
            ACME,
        }
    finally:
        await stack.stop()
