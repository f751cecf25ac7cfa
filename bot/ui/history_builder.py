"""Earlier messages in a thread: the post of one message from HighLevel's history, and the
notices the person who clicked "Earlier messages" gets.

A history post is the post a live message would have had (`inbound_reply`: the customer's, or
marked as sent from HighLevel), under a context line that marks it as history with its date
and who sent it. Everything from HighLevel is escaped as `bot.ui.inbound_builder` escapes it.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

from slack_sdk.models.blocks import Block, ContextBlock, MarkdownTextObject, SectionBlock

from bot.ui.inbound_builder import InboundPost, inbound_reply, message_type_label
from bot.ui.notice_builder import error_notice
from bot.ui.thread_builder import MESSAGE_TEXT_MAX, clip, escape_clipped

HISTORY_MARK: Final = "🕘 Earlier message"
_LATEST_TIMESTAMP: Final = 253_402_300_799  # 9999-12-31 23:59:59 UTC


class HistoryProblem(StrEnum):
    """Why a click on "Earlier messages" showed nothing (more)."""

    UNKNOWN_THREAD = "unknown_thread"  # the button names no thread of this workspace
    DISCONNECTED = "disconnected"  # the sub-account is not connected (any more)
    REFUSED = "refused"  # HighLevel refused the bridge's token or the request
    NO_CONVERSATION = "no_conversation"  # HighLevel has no conversation for the contact
    RATE_LIMITED = "rate_limited"  # HighLevel's rate limit
    HIGHLEVEL_FAILED = "highlevel_failed"  # 5xx
    UNREACHABLE = "unreachable"  # no answer from HighLevel
    SLACK_FAILED = "slack_failed"  # Slack refused a post into the thread
    DATABASE = "database"  # the bridge's own database failed
    UNAVAILABLE = "unavailable"  # this bridge was built without history


def _date(sent_at: float | None) -> str | None:
    if sent_at is None or not math.isfinite(sent_at) or not 0 <= sent_at <= _LATEST_TIMESTAMP:
        return None
    stamp = int(sent_at)
    # Slack shows the date in each reader's own time zone; the fallback is UTC.
    fallback = datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{stamp}^{{date_short_pretty}} {{time}}|{fallback}>"


def _who(post: InboundPost) -> str:
    channel = escape_clipped(message_type_label(post.channel), 60)
    if post.direction.strip().lower() == "outbound":
        status = (post.status or "").strip()
        shown = f" · {escape_clipped(status.replace('_', ' ').capitalize(), 60)}" if status else ""
        return f"sent to the customer via {channel}{shown}"
    return f"from the customer via {channel}"


def history_post(post: InboundPost) -> tuple[str, list[Block]]:
    """One message of the conversation's history, posted into its thread: fallback text and
    blocks. The history mark comes first; the message's own date line is left out (the mark
    carries the date)."""
    text, blocks = inbound_reply(replace(post, thread_id=None))
    date = _date(post.sent_at)
    mark = " · ".join(part for part in (f"*{HISTORY_MARK}*", date, _who(post)) if part)
    body = [block for block in blocks if not isinstance(block, ContextBlock)]
    context = ContextBlock(elements=[MarkdownTextObject(text=mark, verbatim=True)])
    return clip(f"{HISTORY_MARK}: {text}", MESSAGE_TEXT_MAX), [context, *body]


def _notice(text: str, detail: str | None = None) -> tuple[str, list[Block]]:
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text=text, verbatim=True))]
    if detail:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=detail, verbatim=True)]))
    return text.replace("*", ""), blocks


def no_earlier_notice() -> tuple[str, list[Block]]:
    """Everything HighLevel has of the conversation is in the thread already."""
    return _notice(
        "No earlier messages in HighLevel",
        "Every earlier message of this conversation is already in the thread.",
    )


def nothing_new_yet_notice(looked_at: int) -> tuple[str, list[Block]]:
    """One click looked through `looked_at` messages and all were in the thread already."""
    return _notice(
        "No earlier messages found yet",
        f"The {looked_at:,} messages looked at are all in this thread already. Click "
        "*Earlier messages* again to look further back.",
    )


def history_busy_notice() -> tuple[str, list[Block]]:
    """Another click is posting earlier messages into this thread right now."""
    return _notice(
        "Earlier messages are being added to this thread already",
        "Wait for them to appear, then click *Earlier messages* again for more.",
    )


def history_problem_notice(
    problem: HistoryProblem,
    *,
    retry_after: float | None = None,
    detail: str | None = None,
    posted: int = 0,
) -> tuple[str, list[Block]]:
    """Why the earlier messages could not be shown (or not all of them), in words: never an
    exception's trace. `detail`: the other side's own words (HighLevel's message, Slack's
    error code); `posted`: how many were posted before it went wrong."""
    titles = {
        HistoryProblem.UNKNOWN_THREAD: (
            "Couldn't load earlier messages",
            "This button is not linked to a conversation the bridge knows.",
        ),
        HistoryProblem.DISCONNECTED: (
            "Couldn't load earlier messages: this HighLevel sub-account is disconnected",
            "Ask an admin to connect it again (`/highlevel connect`), then try again.",
        ),
        HistoryProblem.REFUSED: (
            "Couldn't load earlier messages: HighLevel refused the request",
            "The bridge may lack the `conversations/message.readonly` scope, or its access "
            "was revoked. `/highlevel status` shows the sub-account's connection.",
        ),
        HistoryProblem.NO_CONVERSATION: (
            "No earlier messages in HighLevel",
            "HighLevel has no conversation with this contact yet.",
        ),
        HistoryProblem.RATE_LIMITED: (
            "Couldn't load earlier messages: HighLevel's rate limit was reached",
            "Try again "
            + (
                f"in about {max(1, math.ceil(retry_after))} seconds."
                if retry_after
                else "in a minute."
            ),
        ),
        HistoryProblem.HIGHLEVEL_FAILED: (
            "Couldn't load earlier messages: HighLevel had an error",
            "Try again in a minute.",
        ),
        HistoryProblem.UNREACHABLE: (
            "Couldn't load earlier messages: HighLevel did not answer",
            "Try again in a minute.",
        ),
        HistoryProblem.SLACK_FAILED: (
            "Couldn't post the earlier messages into this thread",
            "Try again in a minute.",
        ),
        HistoryProblem.DATABASE: (
            "Couldn't load earlier messages: the bridge's database did not answer",
            "Try again in a minute.",
        ),
        HistoryProblem.UNAVAILABLE: (
            "Earlier messages are not available on this bridge",
            "Open the conversation in HighLevel to read them.",
        ),
    }
    title, advice = titles[problem]
    if posted:
        advice = f"{posted:,} were posted before that. {advice}"
    words = f"{advice}\n{detail.strip()}" if detail and detail.strip() else advice
    return error_notice(title, words)
