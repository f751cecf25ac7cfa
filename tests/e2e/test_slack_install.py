"""Installing the app into Slack workspaces, end to end over real HTTP: two workspaces install
it through /slack/install → oauth.v2.access, each sends and receives with its own token and its
own sub-account, neither sees the other's, and one uninstalling leaves the other working."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import pytest
from pydantic import SecretStr

from bot.sandbox.highlevel import HighLevelSimulator
from bot.sandbox.slack import SlackDriver, SlackMessage, SlackSimulator
from bot.sandbox.stack import AGENT_USER, INBOX_CHANNEL, SALES_CHANNEL, SandboxStack, free_port
from bot.slack_install.flow import ORG_WIDE_REFUSED
from bot.tenancy.crypto import generate_key
from storage import Store
from tests.e2e.conftest import eventually, query, stack_on, stack_store
from tests.e2e.test_oauth_install import L1, L2, token_location
from tests.e2e.test_outbound import text_of, went_out

ACME = "T0ACME"
ACME_ADMIN = "U0ACMEADMIN"
ACME_SALES = "C0ACMESALES"
ACME_INBOX = "C0ACMEINBOX"
ADA_PHONE = "+14155550100"  # a contact of location 1
MARIE_PHONE = "+14155550201"  # a contact of location 2
SEND = ("POST", "/conversations/messages")


def two_workspace_stack(
    database_url: str, *, settings_overrides: dict[str, Any] | None = None, **slack: Any
) -> SandboxStack:
    """The simulator's own workspace (#sales, #inbox, admin U0AGENT) and Acme (#acme-sales,
    #acme-inbox, admin U0ACMEADMIN); two HighLevel locations; nothing installed yet."""
    sim = SlackSimulator(post_rate_per_second=50.0, post_burst=50, admins=(AGENT_USER,), **slack)
    acme = sim.add_workspace(ACME, "Acme", admins=(ACME_ADMIN,))
    acme.add_user(ACME_ADMIN, "acmeadmin", "Ada Admin")
    acme.add_channel(ACME_SALES, "acme-sales")
    acme.add_channel(ACME_INBOX, "acme-inbox")
    stack = stack_on(
        database_url,
        highlevel=HighLevelSimulator(locations=2),
        slack=sim,
        settings_overrides=settings_overrides,
    )
    stack.oauth = True
    stack.slack_oauth = True
    return stack


@pytest.fixture
async def two_workspaces(database_url: str) -> AsyncIterator[SandboxStack]:
    stack = two_workspace_stack(database_url)
    await stack.start()
    try:
        yield stack
    finally:
        await stack.stop()


async def command(driver: SlackDriver, text: str, *, user: str, channel: str) -> str:
    command_name, _, rest = text.partition(" ")
    result = await driver.slash_command(command_name, rest, user_id=user, channel_id=channel)
    assert result.status == 200, result.text
    return result.text


async def set_up(stack: SandboxStack) -> SlackDriver:
    """Install into both workspaces, connect both locations, and give each workspace its own:
    the simulator's workspace location 1 (#sales, inbox #inbox), Acme location 2."""
    for team, user in ((stack.slack.team_id, AGENT_USER), (ACME, ACME_ADMIN)):
        page = await stack.install_slack(team, user=user)
        assert page.status == 200, page.text
        assert "Installed in Slack" in page.text
    for location_id in (L1, L2):
        connected = await stack.install(location=location_id)
        assert connected.status == 200, connected.text
    acme = stack.driver_for(ACME)
    await command(stack.driver, f"/highlevel link {L1}", user=AGENT_USER, channel=SALES_CHANNEL)
    await command(stack.driver, "/highlevel inbox", user=AGENT_USER, channel=INBOX_CHANNEL)
    # Location 1 belongs to the first workspace now: Acme's admin cannot reach it.
    refused = await command(acme, f"/highlevel link {L1}", user=ACME_ADMIN, channel=ACME_SALES)
    assert "linked this channel" not in refused
    await command(acme, f"/highlevel link {L2}", user=ACME_ADMIN, channel=ACME_SALES)
    await command(acme, "/highlevel inbox", user=ACME_ADMIN, channel=ACME_INBOX)
    async with stack_store(stack) as store:
        assert (await store.get_channel_link(stack.slack.team_id, SALES_CHANNEL)).location_id == L1  # type: ignore[union-attr]
        assert (await store.get_channel_link(ACME, ACME_SALES)).location_id == L2  # type: ignore[union-attr]
        assert await store.get_channel_link(ACME, SALES_CHANNEL) is None
    return acme


def posts_by_team(sim: SlackSimulator, method: str = "chat.postMessage") -> dict[str, set[str]]:
    """The channels each workspace's token posted to."""
    found: dict[str, set[str]] = {}
    for call in sim.calls_to(method):
        if call.ok:
            found.setdefault(str(call.team_id), set()).add(str(call.args.get("channel")))
    return found


def send_roots(sim: SlackSimulator, team: str, channel: str) -> list[SlackMessage]:
    messages = sim.workspace(team).channel_messages(channel)
    return [m for m in messages if m.bot_id and "linked this channel" not in text_of(m)]


def thread_texts(sim: SlackSimulator, team: str, channel: str) -> list[str]:
    workspace = sim.workspace(team)
    return [
        text_of(message)
        for root in workspace.channel_messages(channel)
        for message in workspace.thread(channel, root.ts)
    ]


def notices_with(sim: SlackSimulator, team: str, user: str, needle: str) -> list[str]:
    """The texts of `user`'s ephemeral notices in workspace `team` that contain `needle`."""
    return [e.text for e in sim.workspace(team).ephemerals(user=user) if needle in e.text]


def contact_id(sim: HighLevelSimulator, location_id: str, phone: str) -> str:
    return next(c.id for c in sim.contacts_of(location_id) if c.phone == phone)


async def test_two_workspaces_send_and_receive_each_with_their_own_token_and_sub_account(
    two_workspaces: SandboxStack,
) -> None:
    stack, slack, highlevel = two_workspaces, two_workspaces.slack, two_workspaces.highlevel
    acme = await set_up(stack)
    assert slack.oauth_counters.codes_exchanged == 2

    await command(
        stack.driver,
        f"/sendsms {ADA_PHONE} hello from sales",
        user=AGENT_USER,
        channel=SALES_CHANNEL,
    )
    await command(
        acme, f"/sendsms {MARIE_PHONE} hello from acme", user=ACME_ADMIN, channel=ACME_SALES
    )
    await eventually(lambda: len(highlevel.requests_to(*SEND)) == 2)
    await eventually(
        lambda: all(
            send_roots(slack, team, channel) and went_out(send_roots(slack, team, channel)[0])
            for team, channel in ((slack.team_id, SALES_CHANNEL), (ACME, ACME_SALES))
        )
    )
    sent = {
        (token_location(highlevel, record), record.body["message"])
        for record in highlevel.requests_to(*SEND)
    }
    assert sent == {(L1, "hello from sales"), (L2, "hello from acme")}

    # The customers answer: each reply opens (or joins) a thread in its own workspace only.
    await highlevel.customer_reply(contact_id(highlevel, L1, ADA_PHONE), "SMS", "ada here")
    await highlevel.customer_reply(contact_id(highlevel, L2, MARIE_PHONE), "SMS", "marie here")
    await eventually(
        lambda: any("ada here" in t for t in thread_texts(slack, slack.team_id, SALES_CHANNEL))
    )
    await eventually(lambda: any("marie here" in t for t in thread_texts(slack, ACME, ACME_SALES)))
    assert not any("marie" in t for t in thread_texts(slack, slack.team_id, SALES_CHANNEL))
    assert not any("ada here" in t for t in thread_texts(slack, ACME, ACME_SALES))

    # Every post was made with the token of the workspace it landed in (a token of one
    # workspace cannot even see another's channels).
    by_team = posts_by_team(slack)
    assert by_team[slack.team_id] <= {SALES_CHANNEL, INBOX_CHANNEL}
    assert by_team[ACME] <= {ACME_SALES, ACME_INBOX}
    assert not [c for c in slack.calls if c.error in ("channel_not_found", "invalid_auth")]


async def test_a_workspace_sees_only_its_own_sub_accounts(two_workspaces: SandboxStack) -> None:
    stack = two_workspaces
    acme = await set_up(stack)
    status = await command(acme, "/highlevel status", user=ACME_ADMIN, channel=ACME_SALES)
    assert L2 in status or stack.highlevel.location_name(L2) in status
    assert L1 not in status and stack.highlevel.location_name(L1) not in status
    # An unlinked Acme channel works with Acme's one sub-account, never the other's.
    acme_workspace = stack.slack.workspace(ACME)
    acme_workspace.add_channel("C0ACMEOTHER", "acme-other")
    await command(acme, f"/sendsms {ADA_PHONE} who is this", user=ACME_ADMIN, channel="C0ACMEOTHER")
    await eventually(
        lambda: (
            len(stack.highlevel.requests_to(*SEND)) >= 1
            or send_roots(stack.slack, ACME, "C0ACMEOTHER")
        )
    )
    for record in stack.highlevel.requests_to(*SEND):
        assert token_location(stack.highlevel, record) == L2


async def test_uninstalling_one_workspace_leaves_the_other_working(
    two_workspaces: SandboxStack,
) -> None:
    stack, slack, highlevel = two_workspaces, two_workspaces.slack, two_workspaces.highlevel
    acme = await set_up(stack)
    # A send from Acme is on its way to HighLevel when Acme uninstalls the app.
    highlevel.faults.scope = "sends"
    highlevel.faults.latency = 1.0
    await command(acme, f"/sendsms {MARIE_PHONE} last words", user=ACME_ADMIN, channel=ACME_SALES)
    await eventually(lambda: query(stack, "SELECT id FROM outbox WHERE state = 'sending'"))
    deliveries = await slack.uninstall(ACME)
    assert [(d.event_type, d.status) for d in deliveries] == [
        ("app_uninstalled", 200),
        ("tokens_revoked", 200),
    ]
    highlevel.faults.latency = 0.0
    # The send still went, once, and is recorded.
    await eventually(lambda: query(stack, "SELECT id FROM outbox WHERE state = 'sent'"))
    assert [r.body["message"] for r in highlevel.requests_to(*SEND)] == ["last words"]
    async with stack_store(stack) as store:
        assert await store.find_slack_bot(None, ACME) is None
        assert await store.get_channel_link(ACME, ACME_SALES) is None
        assert (await store.get_location(L2)).slack_team_id is None  # type: ignore[union-attr]

    # Acme's customer writes: nothing can be shown in Acme any more, and it is said in the log
    # and kept as failed, not retried for ever.
    acme_posts = len(slack.calls_to("chat.postMessage"))
    await highlevel.customer_reply(contact_id(highlevel, L2, MARIE_PHONE), "SMS", "anyone?")
    failed = await eventually(
        lambda: query(stack, "SELECT last_error FROM inbound_events WHERE state = 'failed'")
    )
    assert "Slack workspace gone" in failed[0][0]
    assert len(slack.calls_to("chat.postMessage")) == acme_posts

    # A person still in Acme is told the app is not installed there (through the command's
    # response_url), and nothing is sent.
    await command(acme, f"/sendsms {MARIE_PHONE} hello?", user=ACME_ADMIN, channel=ACME_SALES)
    told = await eventually(
        partial(notices_with, slack, ACME, ACME_ADMIN, "not installed in this workspace")
    )
    assert "/slack/install" in told[0]
    assert len(highlevel.requests_to(*SEND)) == 1

    # The other workspace goes on as before.
    await command(
        stack.driver, f"/sendsms {ADA_PHONE} still here", user=AGENT_USER, channel=SALES_CHANNEL
    )
    await eventually(lambda: len(highlevel.requests_to(*SEND)) == 2)
    await highlevel.customer_reply(contact_id(highlevel, L1, ADA_PHONE), "SMS", "me too")
    await eventually(
        lambda: any("me too" in t for t in thread_texts(slack, slack.team_id, SALES_CHANNEL))
    )


async def test_an_org_wide_install_is_refused_with_a_page(two_workspaces: SandboxStack) -> None:
    page = await two_workspaces.install_slack(enterprise="E0GRID")
    assert page.status == 403
    assert ORG_WIDE_REFUSED.split(".")[0] in page.text
    async with stack_store(two_workspaces) as store:
        assert await store.list_slack_workspaces() == []


async def test_the_install_routes_say_when_installing_is_not_set_up(stack: SandboxStack) -> None:
    import httpx

    async with httpx.AsyncClient() as browser:
        for path in ("/slack/install", "/slack/oauth_redirect?code=x&state=y"):
            answer = await browser.get(f"{stack.bridge_url}{path}")
            assert answer.status_code == 404
            assert "SLACK_CLIENT_ID" in answer.text


async def test_an_allowlist_entry_can_name_one_workspace(database_url: str) -> None:
    # U0SAME exists in both workspaces (ids are a workspace's own): allowed in Acme only.
    stack = two_workspace_stack(
        database_url,
        settings_overrides={"allowed_slack_users": f"{ACME}:U0SAME,{AGENT_USER},{ACME_ADMIN}"},
    )
    stack.slack.add_user("U0SAME", "same", "Sam Same")
    stack.slack.workspace(ACME).add_user("U0SAME", "same", "Sam Same")
    await stack.start()
    try:
        acme = await set_up(stack)
        in_acme = await command(acme, "/sendsms help", user="U0SAME", channel=ACME_SALES)
        assert "How to use /sendsms" in in_acme
        elsewhere = await command(
            stack.driver, "/sendsms help", user="U0SAME", channel=SALES_CHANNEL
        )
        assert "How to use /sendsms" not in elsewhere
        assert "nothing was sent" in elsewhere
    finally:
        await stack.stop()


async def test_a_one_workspace_bridge_keeps_working_when_the_install_flow_is_turned_on(
    database_url: str,
) -> None:
    sim = SlackSimulator(post_rate_per_second=50.0, post_burst=50, admins=(AGENT_USER,))
    acme = sim.add_workspace(ACME, "Acme", admins=(ACME_ADMIN,))
    acme.add_user(ACME_ADMIN, "acmeadmin", "Ada Admin")
    acme.add_channel(ACME_SALES, "acme-sales")
    stack = stack_on(database_url, slack=sim)
    await stack.start()
    try:
        highlevel = stack.highlevel
        await command(
            stack.driver, f"/sendsms {ADA_PHONE} before", user=AGENT_USER, channel=SALES_CHANNEL
        )
        await eventually(lambda: len(highlevel.requests_to(*SEND)) == 1)
        # The operator turns the install flow on, keeping SLACK_BOT_TOKEN.
        await stack.stop_bridge()
        port = free_port()
        assert stack.settings is not None
        stack.settings = stack.settings.model_copy(
            update={
                "slack_client_id": sim.client_id,
                "slack_client_secret": SecretStr(sim.client_secret),
                "slack_authorize_url": sim.authorize_url,
                "port": port,
                "public_url": f"http://127.0.0.1:{port}",
                "token_encryption_key": SecretStr(generate_key()),
            }
        )
        await stack.start_bridge()
        # Its workspace keeps its sub-account (GHL_API_TOKEN's), now as its own.
        async with stack_store(stack) as store:
            owner = await eventually(lambda: _owner(store, highlevel.location_id), within=15)
        assert owner == sim.team_id
        await command(
            stack.driver, f"/sendsms {ADA_PHONE} after", user=AGENT_USER, channel=SALES_CHANNEL
        )
        await eventually(lambda: len(highlevel.requests_to(*SEND)) == 2)
        # A workspace installed now does not get it.
        page = await stack.install_slack(ACME, user=ACME_ADMIN)
        assert page.status == 200, page.text
        driver = stack.driver_for(ACME)
        await command(driver, f"/sendsms {ADA_PHONE} sneaky", user=ACME_ADMIN, channel=ACME_SALES)
        told = await eventually(
            partial(notices_with, sim, ACME, ACME_ADMIN, "belongs to this workspace")
        )
        assert "/highlevel link" in told[0]
        assert len(highlevel.requests_to(*SEND)) == 2
    finally:
        await stack.stop()


async def _owner(store: Store, location_id: str) -> str | None:
    record = await store.get_location(location_id)
    return record.slack_team_id if record is not None else None


async def test_an_admin_entry_can_name_one_workspace(database_url: str) -> None:
    # U0HELPER is no workspace admin anywhere; ADMIN_SLACK_USERS makes it one in Acme only.
    stack = two_workspace_stack(
        database_url, settings_overrides={"admin_slack_users": f"{ACME}:U0HELPER"}
    )
    stack.slack.add_user("U0HELPER", "helper", "Hal Helper")
    stack.slack.workspace(ACME).add_user("U0HELPER", "helper", "Hal Helper")
    await stack.start()
    try:
        for team, user in ((stack.slack.team_id, AGENT_USER), (ACME, ACME_ADMIN)):
            assert (await stack.install_slack(team, user=user)).status == 200
        for location_id in (L1, L2):
            assert (await stack.install(location=location_id)).status == 200
        acme = stack.driver_for(ACME)
        await command(acme, f"/highlevel link {L2}", user="U0HELPER", channel=ACME_SALES)
        refused = await command(
            stack.driver, f"/highlevel link {L1}", user="U0HELPER", channel=SALES_CHANNEL
        )
        async with stack_store(stack) as store:
            acme_link = await store.get_channel_link(ACME, ACME_SALES)
            assert acme_link is not None and acme_link.location_id == L2
            assert await store.get_channel_link(stack.slack.team_id, SALES_CHANNEL) is None
        assert "admin" in refused.lower()
    finally:
        await stack.stop()
