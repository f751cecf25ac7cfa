"""The demo's last part: two HighLevel sub-accounts, each routed to its own Slack channel, and
an access token that expires within seconds being refreshed while sends go on.

A bridge of its own (the Marketplace app of a two-location simulator whose tokens live
TOKEN_TTL seconds): both locations are installed as a browser would, `/highlevel link` ties
#sales to one and #plumbing to the other, a send in each channel reaches its own sub-account,
and a send after the first token's expiry goes out on a refreshed token.
"""

from __future__ import annotations

import asyncio
from functools import partial
from pathlib import Path
from typing import Any

from bot.demo._part import PartFailed, accepted_send, play_part, wait_until
from bot.demo.console import Console
from bot.sandbox.highlevel import HighLevelSimulator
from bot.sandbox.stack import AGENT_USER, SALES_CHANNEL, SandboxStack

STEP_SUB_ACCOUNTS = "Two sub-accounts in two channels, with a token refresh"
PLUMBING_CHANNEL = "C0PLUMBING"
TOKEN_TTL = 3


async def play_sub_accounts(database: Path, out: Console, *, step_seconds: float) -> str | None:
    """Run the part; None when it all happened, else why not (already printed)."""
    sim = HighLevelSimulator(locations=2, token_ttl=TOKEN_TTL)
    stack = SandboxStack(
        database,
        highlevel=sim,
        oauth=True,
        settings_overrides={"admin_slack_users": AGENT_USER, "slack_post_rate": 20},
    )
    return await play_part(STEP_SUB_ACCOUNTS, stack, _script, out, step_seconds=step_seconds)


async def _script(stack: SandboxStack, out: Console, step_seconds: float) -> str:
    sim = stack.highlevel
    stack.slack.add_channel(PLUMBING_CHANNEL, "plumbing")
    first, second = sim.location_ids[:2]
    for location_id in (first, second):
        page = await stack.install(location=location_id)
        if page.status != 200:
            raise PartFailed(f"the install of {location_id} answered {page.status}")
    for channel, location_id in ((SALES_CHANNEL, first), (PLUMBING_CHANNEL, second)):
        result = await stack.driver.slash_command(
            "/highlevel", f"link {location_id}", user_id=AGENT_USER, channel_id=channel
        )
        if result.status != 200:
            raise PartFailed(f"/highlevel link answered {result.status}")
    lines: list[str] = []
    targets = (
        (SALES_CHANNEL, first, sim.contacts_of(first)[0]),
        (PLUMBING_CHANNEL, second, sim.contacts_of(second)[0]),
    )
    for channel, location_id, contact in targets:
        text = f"Hello from {sim.location_name(location_id)}"
        await _send(stack, channel, f"{contact.phone} {text}")
        record = await wait_until(
            partial(accepted_send, stack, text), step_seconds, f"“{text}” not sent"
        )
        lines.append(
            f"#{stack.slack.channel(channel).name} → {sim.location_name(location_id)}: "  # type: ignore[union-attr]
            f"{contact.first_name} {contact.last_name} got “{text}” with "
            f"{sim.location_name(_token_location(stack, record) or '?')}'s token"
        )
    # Let the first token run into its refresh margin: tokens live TOKEN_TTL s here.
    token_before = _bearer(_accepted_or_fail(stack, targets[0]))
    await asyncio.sleep(TOKEN_TTL)
    text = "Still here after the token expired"
    await _send(stack, SALES_CHANNEL, f"{targets[0][2].phone} {text}")
    record = await wait_until(
        lambda: accepted_send(stack, text), step_seconds, "the send after expiry failed"
    )
    counters = sim.oauth.counters
    if _bearer(record) == token_before or counters.refreshes < 1:
        raise PartFailed("no token refresh happened")
    if counters.refresh_token_reuses:
        raise PartFailed(f"{counters.refresh_token_reuses} refresh tokens were reused")
    lines.append(
        f"a {TOKEN_TTL} s token was refreshed before the next send ({counters.refreshes} "
        "refreshes, each refresh token used once)"
    )
    for line in lines:
        out.line(out.dim(f"    {line}"))
    return "both channels reached their own sub-account; the token was refreshed"


async def _send(stack: SandboxStack, channel: str, text: str) -> None:
    result = await stack.driver.slash_command(
        "/sendsms", text, user_id=AGENT_USER, channel_id=channel
    )
    if result.status != 200:
        raise PartFailed(f"/sendsms answered {result.status}")


def _accepted_or_fail(stack: SandboxStack, target: tuple[str, str, Any]) -> Any:
    text = f"Hello from {stack.highlevel.location_name(target[1])}"
    record = accepted_send(stack, text)
    if record is None:
        raise PartFailed(f"“{text}” not sent")
    return record


def _bearer(record: Any) -> str:
    for name, value in record.headers.items():
        if name.lower() == "authorization":
            return str(value).removeprefix("Bearer ")
    return ""


def _token_location(stack: SandboxStack, record: Any) -> str | None:
    info = stack.highlevel.token_info(_bearer(record))
    return info.location_id if info is not None else None
