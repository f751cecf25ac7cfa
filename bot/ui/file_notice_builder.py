"""The thread line for a customer's file that is not copied into Slack (too big, unreachable,
refused), and the caption of WhatsApp media that arrive late. Pure, like the inbound builder
whose escaping and link rules they share."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from slack_sdk.models.blocks import Block, MarkdownTextObject, SectionBlock

from bot.files.rules import size_text
from bot.ui.attachment_links import FILE_LABEL_MAX, as_code, web_link
from bot.ui.thread_builder import (
    MESSAGE_TEXT_MAX,
    SECTION_TEXT_MAX,
    clip,
    escape_clipped,
    escape_mrkdwn,
)


class FileIssue(StrEnum):
    """Why a customer's file is in the thread as a link rather than as a Slack file."""

    TOO_BIG = "too_big"
    NOT_WEB_LINK = "not_web_link"
    PRIVATE_ADDRESS = "private_address"
    HTTP_ERROR = "http_error"
    TIMED_OUT = "timed_out"
    UNREACHABLE = "unreachable"
    SLACK_REFUSED = "slack_refused"
    SLACK_UNCONFIRMED = "slack_unconfirmed"


@dataclass(frozen=True, slots=True)
class FileNotCopied:
    """A customer's file that was not copied into Slack, and what is known about why."""

    name: str  # as `bot.files.fetch.attachment_name` reads it from the URL
    url: str
    issue: FileIssue
    size: int | None = None  # bytes, when known (TOO_BIG)
    limit: int | None = None  # bytes (TOO_BIG)
    status: int | None = None  # the HTTP status of the download (HTTP_ERROR)
    slack_error: str | None = None  # Slack's error code (SLACK_REFUSED)


_OPEN_IN_HIGHLEVEL: Final = "open it in HighLevel"
# Slack errors that a person can act on, in plain words.
_SLACK_UPLOAD_ERRORS: Final = {
    "missing_scope": "the app may not upload files (it needs the files:write permission)",
    "not_in_channel": "the app is not in this channel",
    "is_archived": "the channel is archived",
    "file_upload_size_mismatch": "the file changed while it was uploaded",
    "upload_failed": "Slack did not take the file's bytes",
}


def file_not_copied(notice: FileNotCopied) -> tuple[str, list[Block]]:
    """The thread line for a customer's file that is not copied into Slack: its name, the
    reason in plain words, and the link to open it in HighLevel (only a plain http(s) URL is
    linked; anything else is shown as text)."""
    name = f"*{escape_clipped(notice.name, FILE_LABEL_MAX)}*"
    if web_link(notice.url) is not None:
        link = f"<{escape_mrkdwn(notice.url.strip())}|{_OPEN_IN_HIGHLEVEL}>"
    elif notice.url.strip():
        link = as_code(notice.url)
    else:
        link = "_(an empty link)_"
    issue = notice.issue
    if issue is FileIssue.TOO_BIG:
        limit = size_text(notice.limit) if notice.limit else "size"
        sized = f"{name} ({size_text(notice.size)})" if notice.size else name
        line = f"{sized} is over the {limit} limit for files copied into Slack: {link}"
    elif issue is FileIssue.NOT_WEB_LINK:
        line = f"{name} wasn't copied into Slack: its address is not a web link ({link})"
    elif issue is FileIssue.PRIVATE_ADDRESS:
        line = (
            f"{name} wasn't copied into Slack: its link points into a private network, "
            f"which the bridge never downloads from: {link}"
        )
    elif issue is FileIssue.SLACK_UNCONFIRMED:
        line = (
            f"Slack did not confirm that {name} was copied here; if it isn't in this thread, {link}"
        )
    else:
        line = f"{name} couldn't be copied into Slack: {_failure(notice)}: {link}"
    text = f"📎 {line}"
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text=text, verbatim=True))]
    return clip(text, MESSAGE_TEXT_MAX), blocks


def _failure(notice: FileNotCopied) -> str:
    if notice.issue is FileIssue.HTTP_ERROR:
        if notice.status is None:
            return "its download was redirected too many times"
        return f"its download failed (the server answered {notice.status})"
    if notice.issue is FileIssue.TIMED_OUT:
        return "its download took too long"
    if notice.issue is FileIssue.UNREACHABLE:
        return "its server couldn't be reached"
    code = (notice.slack_error or "").strip()
    words = _SLACK_UPLOAD_ERRORS.get(code)
    if words:
        return words
    return f"Slack refused it ({escape_clipped(code, 60)})" if code else "Slack refused it"


def late_media_caption(body: str) -> str | None:
    """The text that goes with late WhatsApp media (their caption), escaped; None if empty."""
    caption = body.replace("\r\n", "\n").strip()
    if not caption:
        return None
    return escape_clipped(caption, SECTION_TEXT_MAX)
