"""The Slack posts for messages that reach a conversation from outside Slack: customer replies,
and messages sent from HighLevel itself (its app, a workflow, a campaign).

Everything that came from HighLevel — the customer's text, names, addresses, subjects, file
names, links — is escaped for mrkdwn, so `<!channel>`, `<@U…>` or `<https://evil|x>` shows as
text. Attachment links are written only for plain http(s) URLs that cannot break out of the
link markup (`attachment_links`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Final

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.compose import CHANNEL_LABELS
from bot.ui.attachment_links import _attachment_blocks
from bot.ui.conversation_builder import conversation_controls
from bot.ui.thread_builder import (
    MESSAGE_TEXT_MAX,
    PREVIEW_CHARACTERS,
    REPLY_ACTION,
    SECTION_TEXT_MAX,
    PostStatus,
    account_line,
    account_prefix,
    clip,
    escape_clipped,
    escape_mrkdwn,
)

_LATEST_TIMESTAMP: Final = 253_402_300_799  # 9999-12-31 23:59:59 UTC

# HighLevel's channel names other than `MessageChannel` values, keyed as `_channel_key` spells
# them: webhook `messageType` ("CALL", "VoiceMail", "Live Chat") and the message API's TYPE_* enum.
_EXTRA_CHANNEL_LABELS: Final = {
    "CALL": "Call",
    "VOICEMAIL": "Voicemail",
    "IVR_CALL": "IVR call",
    "CAMPAIGN_CALL": "Campaign call",
    "FACEBOOK": "Facebook",
    "INSTAGRAM": "Instagram",
    "WEBCHAT": "Web chat",
    "CUSTOM_SMS": "SMS",
    "CUSTOM_PROVIDER_SMS": "SMS",
    "CUSTOM_EMAIL": "Email",
    "CUSTOM_PROVIDER_EMAIL": "Email",
    "INTERNAL_COMMENT": "Internal comment",
    "INTERNAL_COMMENTS": "Internal comment",
    "SMS_REACTION": "SMS reaction",
}
_CHANNEL_LABELS_BY_KEY: Final = {
    **{channel.value.upper(): label for channel, label in CHANNEL_LABELS.items()},
    **_EXTRA_CHANNEL_LABELS,
}
_EMAIL_KEYS: Final = frozenset({"EMAIL", "CUSTOM_EMAIL", "CUSTOM_PROVIDER_EMAIL"})
_CALL_KEYS: Final = frozenset({"CALL", "VOICEMAIL", "IVR_CALL", "CAMPAIGN_CALL"})

# OutboundMessage `source`: who or what sent a message from HighLevel.
_SOURCES: Final = {
    "app": "by a HighLevel user",
    "workflow": "by a workflow",
    "campaign": "by a campaign",
    "bulk_actions": "by a bulk action",
    "api": "via the API",
}

# HighLevel message statuses (GetMessageResponseDto, call webhooks) as a short line; the ones
# our own posts also show read as they do there.
_STATUS_LINES: Final = {
    "pending": "⏳ Pending",
    "queued": "⏳ Queued",
    "scheduled": "🕒 Scheduled",
    "sent": "✓ Sent",
    "delivered": "✓✓ Delivered",
    "read": "Read",
    "opened": "Opened",
    "clicked": "Clicked",
    "connected": "Connected",
    "completed": "Completed",
    "voicemail": "Went to voicemail",
    "failed": "✗ Failed",
    "undelivered": "✗ Not delivered",
    "opt_out": "✗ Contact has opted out",
}

_REACTIONS: Final = {
    PostStatus.DELIVERED.value: "white_check_mark",
    PostStatus.READ.value: "eyes",
    PostStatus.FAILED.value: "x",
    "undelivered": "x",
}


@dataclass(frozen=True, slots=True)
class InboundPost:
    """One message that reached a conversation outside Slack, as its Slack post shows it."""

    contact_label: str
    contact_address: str | None
    channel: str  # HighLevel's messageType / type string: "SMS", "Email", "TYPE_SMS", "CALL", …
    body: str
    direction: str  # "inbound" | "outbound"
    attachments: tuple[str, ...] = ()
    subject: str | None = None
    email_from: str | None = None
    email_to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    source: str | None = None  # outbound: "app", "workflow", "api", "bulk_actions", "campaign"
    highlevel_user: str | None = None
    sent_at: float | None = None  # UTC epoch seconds
    status: str | None = None
    thread_id: int | None = None
    # The HighLevel sub-account's name, shown on a thread root when several are connected.
    account: str | None = None


# ---------------------------------------------------------------- labels


def _channel_key(channel: str) -> str:
    key = "_".join(channel.strip().upper().split())
    return key.removeprefix("TYPE_")


def message_type_label(channel: str) -> str:
    """A friendly name for HighLevel's channel string ("TYPE_SMS" → "SMS"), not yet escaped;
    an unknown one is returned as it came."""
    return _CHANNEL_LABELS_BY_KEY.get(_channel_key(channel), channel.strip() or "message")


def _is_email(post: InboundPost) -> bool:
    return _channel_key(post.channel) in _EMAIL_KEYS


def _is_call(post: InboundPost) -> bool:
    return _channel_key(post.channel) in _CALL_KEYS


def _is_outbound(post: InboundPost) -> bool:
    return post.direction.strip().lower() == "outbound"


def _channel(post: InboundPost) -> str:
    return escape_clipped(message_type_label(post.channel), 60)


def _name(post: InboundPost) -> str:
    return escape_clipped(post.contact_label.strip() or "Unknown contact", 150)


def _address(post: InboundPost) -> str | None:
    address = (post.contact_address or "").strip()
    if address and address != post.contact_label.strip():
        return escape_clipped(address, 320)
    return None


def _sender(post: InboundPost) -> str:
    """Who or what sent an outbound message from HighLevel, as words ("by a workflow")."""
    source = (post.source or "").strip().lower()
    user = (post.highlevel_user or "").strip()
    if user and source in ("", "app"):
        return f"by {escape_clipped(user, 100)}"
    if source in _SOURCES:
        return _SOURCES[source]
    if source:
        return f"({escape_clipped((post.source or '').strip(), 60)})"
    return ""


def _status_line(status: str | None) -> str | None:
    raw = (status or "").strip()
    if not raw:
        return None
    return _STATUS_LINES.get(raw.lower(), escape_clipped(raw, 100))


def status_reaction(status: str) -> str | None:
    """The emoji reaction that marks a delivery status on our own post; None for the others."""
    return _REACTIONS.get(status.strip().lower())


# ---------------------------------------------------------------- time


def _valid_timestamp(sent_at: float | None) -> int | None:
    if sent_at is None or not math.isfinite(sent_at) or not 0 <= sent_at <= _LATEST_TIMESTAMP:
        return None
    return int(sent_at)


def _date_markup(timestamp: int) -> str:
    # Slack shows the date in each reader's own time zone; the fallback is UTC.
    fallback = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{timestamp}^{{date_short_pretty}} {{time}}|{fallback}>"


# ---------------------------------------------------------------- body


class _HtmlText(HTMLParser):
    """The readable text of an HTML email: tags dropped, blocks on their own lines."""

    _SKIPPED: Final = frozenset({"head", "script", "style", "title"})
    _BREAKS: Final = frozenset(
        {"br", "p", "div", "li", "tr", "table", "ul", "ol", "blockquote", "hr"}
        | {f"h{level}" for level in range(1, 7)}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIPPED:
            self._skipping += 1
        elif tag in self._BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIPPED:
            self._skipping = max(self._skipping - 1, 0)
        elif tag in self._BREAKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


# Well-known HTML tags only.
_HTML_TAG = re.compile(
    r"</?(?:html|body|head|div|p|br|span|table|tbody|tr|td|th|a|b|i|u|strong|em|font|img|ul|ol"
    r"|li|h[1-6]|blockquote|style|meta|center|hr)\b[^<>]*>",
    re.IGNORECASE,
)


def _html_to_text(html: str) -> str:
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _looks_like_html(body: str) -> bool:
    # HTML emails start and end with a tag; a plain-text one may still say "a<b and c>d".
    return body.startswith("<") and body.endswith(">") and _HTML_TAG.search(body) is not None


def _body_text(post: InboundPost) -> str:
    """The body as a reader should see it: an HTML email as its text."""
    body = post.body.replace("\r\n", "\n").strip()
    if _is_email(post) and _looks_like_html(body):
        return _html_to_text(body)
    return body


def _body_block(post: InboundPost, body: str) -> SectionBlock | None:
    if not body:
        if post.attachments:
            return None  # the attachments are the message
        empty = "(no text)"
        if _is_call(post):
            empty = "(a call — no text; details are in HighLevel)"
        elif _channel_key(post.channel) == "WHATSAPP":
            # WhatsApp media arrives with an empty body and no attachments (NOTES.md, HLD#299).
            empty = "(no text — a photo, voice note or file may be in HighLevel)"
        return SectionBlock(text=MarkdownTextObject(text=f"_{empty}_", verbatim=True))
    note = f"…\n_(shortened here; the full message, {len(body):,} characters, is in HighLevel)_"
    text = escape_clipped(body, SECTION_TEXT_MAX, note=note)
    return SectionBlock(text=MarkdownTextObject(text=text, verbatim=True))


# ---------------------------------------------------------------- assembly


def _email_lines(post: InboundPost) -> list[str]:
    # With the first line's name (150), address (320), channel (60) and sender (100) these
    # budgets keep the header section under Slack's 3000 characters.
    if not _is_email(post):
        return []
    lines: list[str] = []
    if post.subject and post.subject.strip():
        lines.append(f"*Subject:* {escape_clipped(post.subject.strip(), 300)}")
    if post.email_from and post.email_from.strip():
        lines.append(f"*From:* {escape_clipped(post.email_from.strip(), 320)}")
    if post.email_to:
        lines.append(f"*To:* {escape_clipped(', '.join(post.email_to), 700)}")
    if post.cc:
        lines.append(f"*CC:* {escape_clipped(', '.join(post.cc), 700)}")
    return lines


def _context_line(post: InboundPost, *, outbound: bool) -> str | None:
    parts: list[str] = []
    timestamp = _valid_timestamp(post.sent_at)
    if timestamp is not None:
        verb = "Sent" if outbound else "Received"
        parts.append(f"{verb} {_date_markup(timestamp)}")
    # A customer's own message has no status worth showing, except a call's (voicemail…).
    if outbound or _is_call(post):
        status = _status_line(post.status)
        if status:
            parts.append(status)
    return " · ".join(parts) or None


def _sent_from_highlevel(post: InboundPost) -> str:
    sender = _sender(post)
    return f"↗ *Sent from HighLevel* {sender}".rstrip()


def _blocks(post: InboundPost, header: str, *, outbound: bool, with_reply: bool) -> list[Block]:
    body = _body_text(post)
    header_text = "\n".join([header, *_email_lines(post)])
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text=header_text, verbatim=True))]
    body_block = _body_block(post, body)
    if body_block is not None:
        blocks.append(body_block)
    blocks += _attachment_blocks(post.attachments)
    context = _context_line(post, outbound=outbound)
    if context:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=context, verbatim=True)]))
    if with_reply and post.thread_id is not None:
        button = ButtonElement(text="Reply", action_id=REPLY_ACTION, value=str(post.thread_id))
        blocks.append(ActionsBlock(elements=[button, *conversation_controls(post.thread_id)]))
    return blocks


def _preview(post: InboundPost) -> str:
    """At most ~150 characters of the body for notifications, plus an attachment count."""
    flat = " ".join(_body_text(post).split())
    count = len(post.attachments)
    files = f"({count} attachment{'s' if count != 1 else ''})" if count else ""
    if not flat:
        return files or "(no text)"
    preview = escape_mrkdwn(clip(flat, PREVIEW_CHARACTERS))
    return f"{preview} {files}".rstrip()


def _plain(text: str) -> str:
    """Fallback text without the mrkdwn bold the blocks use."""
    return clip(text.replace("*", ""), MESSAGE_TEXT_MAX)


def inbound_reply(post: InboundPost) -> tuple[str, list[Block]]:
    """A customer's message inside its conversation's thread: fallback text and blocks.

    An outbound post is shown as `mirrored_outbound` shows it, so a message sent from HighLevel
    is never presented as the customer's."""
    if _is_outbound(post):
        return mirrored_outbound(post)
    header = f"*{_name(post)}* via {_channel(post)}"
    text = f"{_name(post)} via {_channel(post)}: {_preview(post)}"
    return clip(text, MESSAGE_TEXT_MAX), _blocks(post, header, outbound=False, with_reply=False)


def inbound_root(post: InboundPost) -> tuple[str, list[Block]]:
    """The root of a new thread for a conversation Slack has not seen yet (in the inbox channel):
    who, the first message and, when the thread is known, a Reply button."""
    address = _address(post)
    who = f"*{_name(post)}*" + (f" ({address})" if address else "")
    if _is_outbound(post):
        header = f"New conversation with {who} via {_channel(post)}\n{_sent_from_highlevel(post)}"
        fallback = f"New conversation with {_name(post)} via {_channel(post)}, sent from HighLevel"
    else:
        header = f"New conversation from {who} via {_channel(post)}"
        fallback = f"New conversation from {_name(post)} via {_channel(post)}"
    account = account_line(post.account)
    if account:
        header = f"{header}\n{account}"
    text = f"{account_prefix(post.account)}{fallback}: {_preview(post)}"
    blocks = _blocks(post, header, outbound=_is_outbound(post), with_reply=True)
    return clip(text, MESSAGE_TEXT_MAX), blocks


def mirrored_outbound(post: InboundPost) -> tuple[str, list[Block]]:
    """A message sent outside Slack (HighLevel's app, a workflow, a campaign), mirrored into the
    conversation's thread and marked as such."""
    header = f"{_sent_from_highlevel(post)} · {_channel(post)} to *{_name(post)}*"
    status = _status_line(post.status)
    text = f"{_plain(header)}: {_preview(post)}" + (f" ({status})" if status else "")
    return clip(text, MESSAGE_TEXT_MAX), _blocks(post, header, outbound=True, with_reply=False)


# ---------------------------------------------------------------- notices


def shortcut_outside_thread_notice() -> tuple[str, list[Block]]:
    """Ephemeral: "Reply via HighLevel" was used on a message outside a conversation's thread."""
    start = escape_mrkdwn("/sendsms <number> <message>")
    text = (
        "“Reply via HighLevel” works only in a thread that belongs to a HighLevel conversation, "
        "and this message isn't in one. Start a conversation with /sendsms <number> <message>, "
        "or /sendsms to open the composer."
    )
    blocks: list[Block] = [
        SectionBlock(
            text=MarkdownTextObject(
                text="*This message isn't in a HighLevel conversation's thread.*\n"
                "“Reply via HighLevel” works on messages in a thread this app keeps for a "
                "HighLevel conversation.",
                verbatim=True,
            )
        ),
        SectionBlock(
            text=MarkdownTextObject(
                text=f"To start one, send the first message with `{start}`, or type `/sendsms` "
                "to open the composer. The customer's replies then arrive in that thread, "
                "and its first post has a *Reply* button.",
                verbatim=True,
            )
        ),
    ]
    return escape_mrkdwn(text), blocks
