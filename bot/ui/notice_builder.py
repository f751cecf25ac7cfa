"""Short ephemeral notices for the person who asked for a send: each is (fallback text, blocks)."""

from __future__ import annotations

import re

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot.highlevel import MessageChannel
from bot.ui.thread_builder import channel_label, clip, escape_clipped, mention

_CHANNEL_ID = re.compile(r"[CG][A-Z0-9]{2,}")


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=text, verbatim=True))


def not_in_channel_notice(
    channel_id: str, *, bot_user_id: str | None = None
) -> tuple[str, list[Block]]:
    """The bot is not a member of `channel_id`, so it cannot keep the conversation there."""
    where = f"<#{channel_id}>" if _CHANNEL_ID.fullmatch(channel_id) else "this conversation"
    app = mention(bot_user_id) if bot_user_id else "this app"
    invite = (
        f"type `/invite` and pick {app}" if bot_user_id else "type `/invite @` and this app's name"
    )
    text = (
        f"I'm not in {where}, so nothing was sent. Add me first — {invite} in the channel, "
        "or open the channel details → Integrations → Add apps — then try again."
    )
    blocks: list[Block] = [
        _section(f"*I'm not in {where}, so nothing was sent.*"),
        _section(
            f"I keep each customer conversation in a thread here, so {app} must be in the "
            f"channel first. To add it, {invite} in the channel, or open the channel details → "
            "*Integrations* → *Add apps*. Then try again."
        ),
    ]
    return text, blocks


def denied_notice() -> tuple[str, list[Block]]:
    """The person, or the channel, is not allowed to send."""
    text = (
        "You can't send messages from this workspace or channel, so nothing was sent. "
        "Ask an admin to add you to ALLOWED_SLACK_USERS or this channel to ALLOWED_SLACK_CHANNELS."
    )
    blocks: list[Block] = [
        _section("*You can't send messages from here, so nothing was sent.*"),
        ContextBlock(
            elements=[
                MarkdownTextObject(
                    text="Ask an admin of this app to add you to `ALLOWED_SLACK_USERS`, "
                    "or this channel to `ALLOWED_SLACK_CHANNELS`."
                )
            ]
        ),
    ]
    return text, blocks


def error_notice(title: str, detail: str) -> tuple[str, list[Block]]:
    """A failure in a sentence (`title`) and, below it, the other side's own words (`detail`)."""
    heading = escape_clipped(title.strip() or "Something went wrong", 300)
    blocks: list[Block] = [_section(f"✗ *{heading}*")]
    detail = detail.strip()
    if detail:
        blocks.append(_section(escape_clipped(detail, 2900)))
    text = f"✗ {heading}" + (f": {escape_clipped(detail, 500)}" if detail else "")
    return text, blocks


def queued_notice(
    contact_label: str, channel: MessageChannel, created_contact: bool
) -> tuple[str, list[Block]]:
    """The send is on its way (and, perhaps, a contact was created for it)."""
    name = escape_clipped(contact_label, 150)
    sending = f"Sending {channel_label(channel)} to {name}…"
    blocks: list[Block] = [_section(f"⏳ Sending {channel_label(channel)} to *{name}*…")]
    text = sending
    if created_contact:
        created = f"Created contact {name} in HighLevel."
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=created, verbatim=True)]))
        text = f"{created} {sending}"
    return text, blocks


def notice_view(title: str, text: str) -> View:
    """A modal that only says `text` (in place of a form the person may not use)."""
    return View(
        type="modal",
        title=PlainTextObject(text=clip(title, 24)),
        close=PlainTextObject(text="Close"),
        blocks=[_section(escape_clipped(text, 2900))],
    )
