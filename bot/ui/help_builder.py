"""The `/sendsms help` message."""

from __future__ import annotations

from slack_sdk.models.blocks import Block, ContextBlock, MarkdownTextObject, SectionBlock

USAGE_LINES = (
    "*`/sendsms +1 415 555 0100 Running 10 min late`* sends a text at once.",
    # mrkdwn reads <...> as a link or mention even in code: the brackets are escaped.
    "*`/sendsms`* or *`/sendsms &lt;recipient&gt;`* opens the composer "
    "(SMS, Email, WhatsApp and more; schedule, CC/BCC for email).",
    "*`/sendemail [recipient]`* opens the composer in Email mode.",
    "*`/sendsms help`* shows this message.",
)

RECIPIENT_HINT = (
    "A recipient is a phone number in any common format (`+1 (415) 555-0100`, `415.555.0100`), "
    "an email address, or a HighLevel contact id."
)


def usage_text(command: str = "/sendsms") -> str:
    """Plain-text fallback of the usage message (notifications, screen readers)."""
    return f"How to use {command}: " + " ".join(
        line.replace("*", "").replace("`", "").replace("&lt;", "<").replace("&gt;", ">")
        for line in USAGE_LINES
    )


def usage_blocks() -> list[Block]:
    """The usage message as Block Kit."""
    return [
        SectionBlock(text=MarkdownTextObject(text="\n".join(USAGE_LINES))),
        ContextBlock(elements=[MarkdownTextObject(text=RECIPIENT_HINT)]),
    ]
