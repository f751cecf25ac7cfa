"""A workspace that belongs to an Enterprise Grid organization (installed on its own, not
org-wide) works like any workspace, end to end over real HTTP: it installs the app through
/slack/install → oauth.v2.access, links a channel, sends and receives with its own token, is
stored with its organization, and uninstalling it removes it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.sandbox.highlevel import HighLevelSimulator
from bot.sandbox.slack import SlackSimulator
from bot.sandbox.stack import AGENT_USER, SALES_CHANNEL, SandboxStack
from tests.e2e.conftest import eventually, stack_on, stack_store
from tests.e2e.test_oauth_install import L1, token_location
from tests.e2e.test_outbound import went_out
from tests.e2e.test_slack_install import command, contact_id, send_roots, thread_texts

GRID = "E0GRID"
GRID_NAME = "Grid Co"
GRID_WS = "T0GRIDWS"
GRID_ADMIN = "U0GRIDADMIN"
GRID_SALES = "C0GRIDSALES"
ADA_PHONE = "+14155550100"  # a contact of location 1
SEND = ("POST", "/conversations/messages")


@pytest.fixture
async def grid_stack(database_url: str) -> AsyncIterator[SandboxStack]:
    """The simulator's own workspace, and workspace T0GRIDWS of organization E0GRID (#grid-sales,
    admin U0GRIDADMIN); one HighLevel location; nothing installed yet."""
    sim = SlackSimulator(post_rate_per_second=50.0, post_burst=50, admins=(AGENT_USER,))
    grid = sim.add_workspace(
        GRID_WS, "Grid Ops", enterprise_id=GRID, enterprise_name=GRID_NAME, admins=(GRID_ADMIN,)
    )
    grid.add_user(GRID_ADMIN, "gridadmin", "Gina Grid")
    grid.add_channel(GRID_SALES, "grid-sales")
    stack = stack_on(database_url, highlevel=HighLevelSimulator(locations=1), slack=sim)
    stack.oauth = True
    stack.slack_oauth = True
    await stack.start()
    try:
        yield stack
    finally:
        await stack.stop()


async def test_a_workspace_of_a_grid_org_installs_sends_receives_and_uninstalls(
    grid_stack: SandboxStack,
) -> None:
    stack, slack, highlevel = grid_stack, grid_stack.slack, grid_stack.highlevel
    # The simulator's own workspace installs too: it must be untouched by the Grid one leaving.
    for team, user in ((GRID_WS, GRID_ADMIN), (slack.team_id, AGENT_USER)):
        page = await stack.install_slack(team, user=user)
        assert page.status == 200, page.text
        assert "Installed in Slack" in page.text
    exchange = slack.calls_to("oauth.v2.access")[0]
    assert exchange.ok and exchange.team_id == GRID_WS
    connected = await stack.install(location=L1)
    assert connected.status == 200, connected.text

    async with stack_store(stack) as store:
        rows = {row.team_id: row for row in await store.list_slack_workspaces()}
        assert set(rows) == {GRID_WS, slack.team_id}
        assert rows[GRID_WS].enterprise_id == GRID
        assert rows[GRID_WS].is_enterprise_install is False
        assert rows[GRID_WS].team_name == "Grid Ops"
        assert rows[slack.team_id].enterprise_id is None
        assert await store.find_slack_bot(GRID, GRID_WS) is not None

    grid = stack.driver_for(GRID_WS)
    await command(grid, f"/highlevel link {L1}", user=GRID_ADMIN, channel=GRID_SALES)
    async with stack_store(stack) as store:
        link = await store.get_channel_link(GRID_WS, GRID_SALES)
        assert link is not None and link.location_id == L1

    await command(
        grid, f"/sendsms {ADA_PHONE} hello from the grid", user=GRID_ADMIN, channel=GRID_SALES
    )
    await eventually(lambda: len(highlevel.requests_to(*SEND)) == 1)
    [sent] = highlevel.requests_to(*SEND)
    assert (token_location(highlevel, sent), sent.body["message"]) == (L1, "hello from the grid")
    roots = await eventually(
        lambda: [m for m in send_roots(slack, GRID_WS, GRID_SALES) if went_out(m)]
    )
    assert len(roots) == 1

    await highlevel.customer_reply(contact_id(highlevel, L1, ADA_PHONE), "SMS", "ada in grid")
    replied = "ada in grid"
    await eventually(lambda: any(replied in t for t in thread_texts(slack, GRID_WS, GRID_SALES)))
    assert not any(replied in t for t in thread_texts(slack, slack.team_id, SALES_CHANNEL))

    # Every post in the Grid workspace was made with its own token: the simulator says which
    # workspace each call reached, and the bridge was never given the workspace's seeded token,
    # so these came from the install.
    grid_posts = [
        call
        for call in slack.calls_to("chat.postMessage")
        if call.args.get("channel") == GRID_SALES
    ]
    assert len(grid_posts) >= 2  # the send's post and the reply in its thread
    assert all(call.ok and call.team_id == GRID_WS for call in grid_posts)
    assert not [c for c in slack.calls if c.error in ("channel_not_found", "invalid_auth")]

    deliveries = await slack.uninstall(GRID_WS)
    assert [(d.event_type, d.status) for d in deliveries] == [
        ("app_uninstalled", 200),
        ("tokens_revoked", 200),
    ]
    assert all(d.envelope["enterprise_id"] == GRID for d in deliveries)

    async def grid_row_gone() -> bool:
        async with stack_store(stack) as store:
            teams = [row.team_id for row in await store.list_slack_workspaces()]
        return teams == [slack.team_id]

    await eventually(grid_row_gone)
    async with stack_store(stack) as store:
        assert await store.find_slack_bot(GRID, GRID_WS) is None
        assert await store.get_channel_link(GRID_WS, GRID_SALES) is None
