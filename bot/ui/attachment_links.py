"""Attachment links in Slack posts: a plain http(s) URL is linked under its file name; any
other URL is shown as text in a code span, so no part of it becomes a link or markup."""

from __future__ import annotations

import re
import unicodedata
from typing import Final
from urllib.parse import SplitResult, unquote, urlsplit

from slack_sdk.models.blocks import Block, MarkdownTextObject, SectionBlock

from bot.ui.thread_builder import SECTION_TEXT_MAX, escape_clipped, escape_mrkdwn

# At most this many attachments are listed; the rest are counted ("and 3 more in HighLevel").
ATTACHMENTS_SHOWN: Final = 10
# Longer URLs are shown, not linked: a link must fit one section with its neighbours.
_LINK_URL_MAX: Final = 2000
FILE_LABEL_MAX: Final = 100
# A linkable URL is printable ASCII without the characters that end or split Slack's `<url|label>`.
_LINKABLE_URL = re.compile(r"[!-~]+")
_LINK_BREAKERS = re.compile(r"[<>|]")


def _file_label(parts: SplitResult) -> str:
    """The URL's last path segment, readable and unable to spoof or break the link."""
    name = unquote(parts.path.rstrip("/").rsplit("/", 1)[-1])
    # Control and format characters (newlines, right-to-left overrides) could disguise the name.
    name = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf"))
    name = " ".join(name.split()).replace("|", "¦")  # "|" would end Slack's link label
    name = name or parts.hostname or "attachment"
    return escape_clipped(name, FILE_LABEL_MAX)


def web_link(url: str) -> SplitResult | None:
    """The parts of `url` when it is a plain http(s) URL that can be linked safely."""
    candidate = url.strip()
    if (
        len(candidate) <= _LINK_URL_MAX
        and _LINKABLE_URL.fullmatch(candidate)
        and not _LINK_BREAKERS.search(candidate)
    ):
        try:
            parts = urlsplit(candidate)
        except ValueError:  # e.g. a malformed IPv6 host
            return None
        if parts.scheme.lower() in ("http", "https") and parts.hostname:
            return parts
    return None


def as_code(url: str) -> str:
    """A URL shown as typed, in a code span, so Slack turns no part of it into a link. A
    backtick or line break would end the code span early."""
    shown = escape_clipped(" ".join(url.strip().replace("`", "'").split()), 300)
    return f"`{shown}`"


def _attachment_line(url: str) -> str:
    """`<url|file name>` for a plain http(s) URL; anything else as text, not linked."""
    candidate = url.strip()
    parts = web_link(candidate)
    if parts is not None:
        return f"• <{escape_mrkdwn(candidate)}|{_file_label(parts)}>"
    if not candidate:
        return "• _(an empty link)_"
    return f"• {as_code(candidate)} _(not a web link, so not linked)_"


def _attachment_blocks(attachments: tuple[str, ...]) -> list[Block]:
    if not attachments:
        return []
    lines = [_attachment_line(url) for url in attachments[:ATTACHMENTS_SHOWN]]
    hidden = len(attachments) - ATTACHMENTS_SHOWN
    if hidden > 0:
        lines.append(f"_…and {hidden:,} more in HighLevel_")
    heading = "*Attachment:*" if len(attachments) == 1 else f"*Attachments ({len(attachments)}):*"
    # Each line is far below the section limit; pack them into as few sections as fit.
    chunks: list[str] = [heading]
    for line in lines:
        if len(chunks[-1]) + 1 + len(line) > SECTION_TEXT_MAX:
            chunks.append(line)
        else:
            chunks[-1] += "\n" + line
    return [SectionBlock(text=MarkdownTextObject(text=chunk, verbatim=True)) for chunk in chunks]
