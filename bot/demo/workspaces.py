"""The demo's part for agencies with several Slack workspaces: the app installed into two
workspaces through /slack/install, each sending from its own sub-account with its own token,
then one uninstalling it while the other goes on.

A bridge of its own (the Slack app of the simulator, installed by OAuth, and the Marketplace
app of a two-location HighLevel simulator), beside the demo's main one.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from bot.demo._part import PartFailed, accepted_send, play_part, wait_until
from bot.demo.console import Console
from bot.sandbox.highlevel import HighLevelSimulator
from bot.sandbox.slack import SlackSimulator
from bot.sandbox.stack import AGENT_USER, SALES_CHANNEL, SandboxStack

STEP_WORKSPACES = "Two Slack workspaces install the app; one uninstalls it"
ACME = "T0ACME"
ACME_ADMIN = "U0ACMEADMIN"
ACME_SALES = "C0ACMESALES"


async def play_workspaces(database: Path, out: Console, *, step_seconds: float) -> str | None:
    """Run the part; None when it all happened, else why not (already printed)."""
    slack = SlackSimulator(
        post_rate_per_second=50.0, post_burst=50, admins=(AGENT_USER,), team_name="Agency HQ"
    )
    acme = slack.add_workspace(ACME, "Acme Clinic", admins=(ACME_ADMIN,))
    acme.add_user(ACME_ADMIN, "acmeadmin", "Ada Admin")
    acme.add_channel(ACME_SALES, "front-desk")
    stack = SandboxStack(
        database,
        highlevel=HighLevelSimulator(locations=2),
        slack=slack,
        oauth=True,
        slack_oauth=True,
        settings_overrides={"slack_post_rate": 20},
    )
    return await play_part(STEP_WORKSPACES, stack, _script, out, step_seconds=step_seconds)


async def _script(stack: SandboxStack, out: Console, step_seconds: float) -> str:
    slack, highlevel = stack.slack, stack.highlevel
    first, second = highlevel.location_ids[:2]
    home = slack.team_id
    lines: list[str] = []
    for team, user in ((home, AGENT_USER), (ACME, ACME_ADMIN)):
        page = await stack.install_slack(team, user=user)
        if page.status != 200:
            raise PartFailed(f"the install into {team} answered {page.status}")
    lines.append(
        f"{_team_name(stack, home)} and {_team_name(stack, ACME)} installed the app through "
        "/slack/install (one bot token each, encrypted in the database)"
    )
    for location_id in (first, second):
        connected = await stack.install(location=location_id)
        if connected.status != 200:
            raise PartFailed(f"the HighLevel install of {location_id} answered {connected.status}")
    acme = stack.driver_for(ACME)
    await _command(stack.driver, f"/highlevel link {first}", AGENT_USER, SALES_CHANNEL)
    await _command(acme, f"/highlevel link {second}", ACME_ADMIN, ACME_SALES)
    targets = (
        (stack.driver, AGENT_USER, SALES_CHANNEL, home, first),
        (acme, ACME_ADMIN, ACME_SALES, ACME, second),
    )
    for driver, user, channel, team, location_id in targets:
        contact = highlevel.contacts_of(location_id)[0]
        text = f"Hello from {_team_name(stack, team)}"
        await _command(driver, f"/sendsms {contact.phone} {text}", user, channel)
        await wait_until(partial(accepted_send, stack, text), step_seconds, f"“{text}” not sent")
        posted_by = await wait_until(
            partial(_posted_in, slack, channel), step_seconds, f"no post in {channel}"
        )
        lines.append(
            f"{_team_name(stack, team)} → {highlevel.location_name(location_id)}: "
            f"{contact.first_name} {contact.last_name} got “{text}”; shown in Slack with "
            f"{_team_name(stack, posted_by)}'s own token"
        )
    # The bridge warns in its log when a workspace leaves (its tokens deleted, a post it could
    # no longer update): expected here, and said below in the demo's own words.
    with _expected_warnings():
        deliveries = await slack.uninstall(ACME)
        if any(delivery.status != 200 for delivery in deliveries):
            raise PartFailed("the bridge did not take Slack's uninstall events")
        text = f"Still here in {_team_name(stack, home)}"
        contact = highlevel.contacts_of(first)[0]
        await _command(stack.driver, f"/sendsms {contact.phone} {text}", AGENT_USER, SALES_CHANNEL)
        await wait_until(
            partial(accepted_send, stack, text), step_seconds, "the other workspace stopped"
        )
    lines.append(
        f"{_team_name(stack, ACME)} uninstalled the app: its token deleted, its channel "
        f"released; {_team_name(stack, home)} sends on"
    )
    for line in lines:
        out.line(out.dim(f"    {line}"))
    return "each workspace sent from its own sub-account with its own token"


@contextlib.contextmanager
def _expected_warnings() -> Iterator[None]:
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _team_name(stack: SandboxStack, team_id: str) -> str:
    return stack.slack.workspace(team_id).team_name or team_id


async def _command(driver: Any, text: str, user: str, channel: str) -> None:
    command, _, rest = text.partition(" ")
    result = await driver.slash_command(command, rest, user_id=user, channel_id=channel)
    if result.status != 200:
        raise PartFailed(f"{command} answered {result.status}")


def _posted_in(slack: SlackSimulator, channel: str) -> str | None:
    """The workspace whose token made the latest post in `channel`."""
    for call in reversed(slack.calls_to("chat.postMessage")):
        if call.ok and call.args.get("channel") == channel:
            return call.team_id
    return None
