"""The demo's picture part: a photo from the composer reaches the customer by MMS, and the
customer's photo comes back into the thread as a Slack file.

A bridge of its own on the single-business settings: the agent picks a picture (a Slack file)
in `/sendsms`, the HighLevel simulator receives it as an attachment of the SMS (uploaded once),
then Ada answers with a photo of her own, which the bridge downloads and uploads into her
thread.
"""

from __future__ import annotations

import struct
import zlib
from functools import partial
from pathlib import Path
from typing import Any

from bot.demo._part import PartFailed, play_part, wait_until
from bot.demo.console import Console
from bot.sandbox.highlevel import ADA_LOVELACE_ID
from bot.sandbox.slack import SlackFile, SlackSimulator
from bot.sandbox.stack import AGENT_USER, SALES_CHANNEL, SandboxStack

STEP_PICTURES = "A picture each way"
SENT_TEXT = "Here is the table we kept for you."
REPLY_TEXT = "Lovely! This is us on the way."
SEND = ("POST", "/conversations/messages")


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A real PNG of one colour (what a phone would send, only smaller)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


async def play_pictures(database: Path, out: Console, *, step_seconds: float) -> str | None:
    """Run the part; None when it all happened, else why not (already printed)."""
    stack = SandboxStack(database, settings_overrides={"slack_post_rate": 20})
    return await play_part(STEP_PICTURES, stack, _script, out, step_seconds=step_seconds)


async def _script(stack: SandboxStack, out: Console, step_seconds: float) -> str:
    slack, highlevel = stack.slack, stack.highlevel
    table = png(64, 48, (200, 120, 40))
    picked = slack.add_file("table-for-two.png", table, user=AGENT_USER)
    result = await stack.driver.slash_command(
        "/sendsms", "+1 415 555 0100", user_id=AGENT_USER, channel_id=SALES_CHANNEL
    )
    if result.status != 200:
        raise PartFailed(f"/sendsms answered {result.status}")
    view = await wait_until(
        lambda: slack.open_views(AGENT_USER), step_seconds, "the composer did not open"
    )
    answer = await stack.driver.view_submission(
        view[-1].id,
        user_id=AGENT_USER,
        values={"message": {"message": SENT_TEXT}, "files": {"files": [picked.id]}},
    )
    errors = (answer.json or {}).get("errors") if isinstance(answer.json, dict) else None
    if answer.status != 200 or errors:
        raise PartFailed(f"the composer refused the picture: {errors or answer.status}")
    body = await wait_until(
        partial(_send_with_attachment, stack), step_seconds, "HighLevel got no picture"
    )
    served = {upload.url: upload.data for upload in highlevel.uploads.values()}
    if [served.get(url) for url in body["attachments"]] != [table]:
        raise PartFailed("the picture HighLevel received is not the one picked in Slack")
    await highlevel.drain_webhooks()
    selfie = png(48, 64, (40, 120, 200))
    await highlevel.customer_reply(
        ADA_LOVELACE_ID, "SMS", REPLY_TEXT, media=[("on-our-way.png", selfie, "image/png")]
    )
    shown = await wait_until(
        partial(_file_in_slack, slack, selfie),
        step_seconds,
        "Ada's photo did not arrive in her thread as a Slack file",
    )
    out.line(
        out.dim(f"    Slack → Ada: “{SENT_TEXT}” with table-for-two.png ({len(table)} bytes),")
    )
    out.line(out.dim("    uploaded to HighLevel once and sent as the SMS's attachment (MMS)"))
    out.line(out.dim(f"    Ada → Slack: “{REPLY_TEXT}” with {shown.name}, posted in her thread"))
    return "a photo sent by MMS, and the customer's photo shown in Slack"


def _send_with_attachment(stack: SandboxStack) -> dict[str, Any] | None:
    for record in stack.highlevel.requests_to(*SEND):
        body = record.body if isinstance(record.body, dict) else {}
        if record.status == 200 and body.get("attachments"):
            return body
    return None


def _file_in_slack(slack: SlackSimulator, data: bytes) -> SlackFile | None:
    for file in slack.files():
        if file.data == data and file.complete and file.shares:
            return file
    return None
