"""Messages about sub-accounts (HighLevel locations): each is (fallback text, blocks)."""

from __future__ import annotations

from slack_sdk.models.blocks import Block, ContextBlock, MarkdownTextObject, SectionBlock

from bot.ui.thread_builder import escape_clipped

_NAME_MAX = 80


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=text, verbatim=True))


def access_lost_message(
    account: str, reason: str, *, reconnect_url: str | None, unsent: int
) -> tuple[str, list[Block]]:
    """A channel's sub-account lost its connection: what that means and how to reconnect."""
    name = escape_clipped(account, _NAME_MAX)
    if reconnect_url:
        how = (
            "An admin of the HighLevel sub-account can reconnect it here: "
            f"<{reconnect_url}|connect HighLevel>."
        )
    else:
        how = "Set a new Private Integration Token in `GHL_API_TOKEN` and restart the bridge."
    held = ""
    if unsent == 1:
        held = " 1 message waiting to go out was not sent; its thread says so."
    elif unsent > 1:
        held = f" {unsent} messages waiting to go out were not sent; their threads say so."
    text = (
        f"HighLevel sub-account {account} is disconnected ({reason}): nothing can be sent "
        f"from it or arrive from it until it is reconnected.{held} {how}"
    )
    blocks: list[Block] = [
        _section(f":warning: *HighLevel sub-account {name} is disconnected.*"),
        _section(
            "Nothing can be sent from it, and customer replies stop arriving, until it is "
            f"reconnected.{held}"
        ),
        _section(how),
        ContextBlock(elements=[MarkdownTextObject(text=f"Why: {escape_clipped(reason, 200)}")]),
    ]
    return text, blocks
