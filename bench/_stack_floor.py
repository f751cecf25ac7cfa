"""The stack's floor: what the bare parts of a send and of an inbound message cost in CPU.

A send is at least a Bolt ack of the command, a HighLevel request, the Slack calls that show it
and the echo webhook accepted; an inbound message at least a webhook accepted and a Slack post.
Each part is measured alone in a process of its own, in this run: the bare Bolt app of the ack
phase, the floor server of the inbound phase, and `bench.client_floor` for the calls. Their sum,
with the bridge's own counts of calls per send, is set beside the bridge's CPU per message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench._config import CPU_PER_INBOUND_MAX_MS, CPU_PER_SEND_MAX_MS
from bench._procs import run_client_floor
from bench._report import Report, reported
from bench._sandbox import Sandbox

FLOOR_CHANNELS = 40  # enough that no channel meets Slack's per-channel pace
FLOOR_CALLS = 200


async def stack_floor_phase(sandbox: Sandbox, report: Report, say: Callable[[str], None]) -> None:
    """Bare client calls against this column's simulators; the sums beside the bridge's CPU."""
    column, data = sandbox.column, report.of(sandbox.column)
    channels = [f"C0FLOOR{i:03d}" for i in range(FLOOR_CHANNELS)]
    for channel in channels:
        sandbox.slack.add_channel(channel, channel.lower())
    # The sends of the floor client must not come back as echo webhooks to the bridges.
    webhook_url, sandbox.highlevel.webhook_url = sandbox.highlevel.webhook_url, None
    try:
        calls = await run_client_floor(
            {
                "FLOOR_HIGHLEVEL_URL": sandbox.highlevel.base_url,
                "FLOOR_HIGHLEVEL_TOKEN": sandbox.highlevel.token,
                "FLOOR_HIGHLEVEL_CONTACT": sandbox.send_contacts[0].id,
                "FLOOR_SLACK_URL": sandbox.slack.api_url,
                "FLOOR_SLACK_TOKEN": sandbox.slack.bot_token,
                "FLOOR_SLACK_CHANNELS": ",".join(channels),
                "FLOOR_CALLS": str(FLOOR_CALLS),
            },
            workdir=sandbox.workdir,
            cpus=sandbox.placement.server if sandbox.placement else None,
        )
    finally:
        sandbox.highlevel.webhook_url = webhook_url
    bolt = float(data["ack"]["bolt_cpu_ms_per_ack"])
    webhook = float(data["inbound"]["floor_cpu_ms_per_webhook"])
    per_send: dict[str, Any] = data["outbound"]["calls_per_send"]
    send_parts = {
        "bolt_ack": bolt,
        "highlevel": calls["highlevel_send_ms"] * per_send["highlevel"],
        "slack_posts": calls["slack_post_ms"] * per_send["slack_posts"],
        "slack_other": calls["slack_update_ms"] * per_send["slack_other"],
        "echo_webhook": webhook * per_send["webhooks"],
    }
    inbound_parts = {"webhook": webhook, "slack_post": calls["slack_post_ms"]}
    send_floor, inbound_floor = sum(send_parts.values()), sum(inbound_parts.values())
    floor: dict[str, Any] = {
        "cpu_ms_per_call": calls,
        "send_parts_ms": send_parts,
        "send_ms": send_floor,
        "inbound_parts_ms": inbound_parts,
        "inbound_ms": inbound_floor,
    }
    data["stack_floor"] = floor
    say(
        f"{column.title} stack floor: {send_floor:.2f} ms per send, "
        f"{inbound_floor:.2f} ms per inbound message"
    )
    report.add(
        column,
        "the stack's floor per send: Bolt ack + HighLevel + Slack + echo webhook",
        f"(target {CPU_PER_SEND_MAX_MS:.1f} ms)",
        reported(
            f"{send_floor:.2f} ms = {bolt:.2f} + {send_parts['highlevel']:.2f}"
            f" + {send_parts['slack_posts'] + send_parts['slack_other']:.2f}"
            f" + {send_parts['echo_webhook']:.2f}"
        ),
    )
    report.add(
        column,
        "the stack's floor per inbound message: webhook + Slack post",
        f"(target {CPU_PER_INBOUND_MAX_MS:.1f} ms)",
        reported(f"{inbound_floor:.2f} ms = {webhook:.2f} + {inbound_parts['slack_post']:.2f}"),
    )
