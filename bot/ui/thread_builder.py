"""The Slack posts that show each send in its conversation's thread, with status and buttons.

Everything a person or a customer typed is escaped for mrkdwn, so `<!channel>`, `<@U…>` or
`<https://evil|x>` in a message shows as text and can neither ping anyone nor hide a link.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    ImageBlock,
    InteractiveElement,
    MarkdownTextObject,
    SectionBlock,
)

from bot.compose import CHANNEL_LABELS
from bot.files import SlackFileRef
from bot.highlevel import MessageChannel
from bot.ui.conversation_builder import conversation_controls

REPLY_ACTION: Final = "reply"  # value: str(thread_id)
CANCEL_ACTION: Final = "cancel_scheduled"  # value: str(outbox_id)
RESEND_ACTION: Final = "resend"  # value: str(outbox_id)
RETRY_ACTION: Final = "retry"  # value: str(outbox_id)

# Slack's limits (docs.slack.dev reference/block-kit/blocks, reference/methods/chat.postMessage).
SECTION_TEXT_MAX: Final = 3000
MESSAGE_TEXT_MAX: Final = 40_000
# How much of the body a notification (the fallback `text`) may show.
PREVIEW_CHARACTERS: Final = 150
# A send's files: the first few images as thumbnails (Slack shows a `slack_file` image only
# for png, jpg, jpeg and gif: docs.slack.dev slack-file-object), every name on one line.
MAX_THUMBNAILS: Final = 3
THUMBNAIL_MIMETYPES: Final = frozenset({"image/png", "image/jpeg", "image/jpg", "image/gif"})
FILE_NAME_SHOWN: Final = 80
FILES_LINE_MAX: Final = 2000
ALT_TEXT_MAX: Final = 2000

_ESCAPES: Final = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")


class PostStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    UNKNOWN = "unknown"
    SCHEDULED = "scheduled"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class SendPost:
    """One send as its Slack post shows it."""

    outbox_id: int
    sender_user_id: str
    channel: MessageChannel
    contact_label: str
    contact_address: str | None
    text: str
    status: PostStatus
    subject: str | None = None
    error: str | None = None
    scheduled_at: int | None = None  # UTC epoch seconds
    cc: tuple[str, ...] = ()
    thread_id: int | None = None
    created_contact: bool = False
    # The HighLevel sub-account's name, shown on a thread root when several are connected.
    account: str | None = None
    # Slack files sent with the message (their names are shown; images as thumbnails).
    files: tuple[SlackFileRef, ...] = ()
    # HighLevel's own words on the send (its answer's `msg`), shown after the status.
    note: str | None = None


# ---------------------------------------------------------------- text helpers (shared in bot.ui)


def escape_mrkdwn(text: str) -> str:
    """`text` shown literally in mrkdwn: no mentions, links or dates can be smuggled in."""
    return "".join(_ESCAPES.get(ch, ch) for ch in text)


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, ending in "…" when cut."""
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)] + "…"


def escape_clipped(text: str, limit: int, *, note: str = "…") -> str:
    """`text` escaped for mrkdwn and at most `limit` characters long, never cutting an entity
    (`&amp;`) in half; when cut, `note` (already mrkdwn) ends it."""
    escaped = escape_mrkdwn(text)
    if len(escaped) <= limit:
        return escaped
    budget = max(limit - len(note), 0)
    kept: list[str] = []
    used = 0
    for ch in text:
        piece = _ESCAPES.get(ch, ch)
        if used + len(piece) > budget:
            break
        kept.append(piece)
        used += len(piece)
    return "".join(kept) + note


def mention(user_id: str) -> str:
    """`<@U…>` for a well-formed Slack user id; anything else is shown as escaped text."""
    if _USER_ID.fullmatch(user_id):
        return f"<@{user_id}>"
    return escape_clipped(user_id, 40)


def channel_label(channel: MessageChannel) -> str:
    return CHANNEL_LABELS.get(channel, channel.value)


# ---------------------------------------------------------------- status


def _utc_text(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


def status_line(post: SendPost) -> str:
    """The post's status as one mrkdwn line."""
    status = post.status
    if status in (PostStatus.QUEUED, PostStatus.SENDING):
        return "⏳ Sending…"
    if status is PostStatus.SENT:
        return "✓ Sent"
    if status is PostStatus.DELIVERED:
        return "✓✓ Delivered"
    if status is PostStatus.READ:
        return "Read"
    if status is PostStatus.FAILED:
        reason = (post.error or "").strip() or "HighLevel gave no reason"
        return f"✗ Not sent: {escape_clipped(reason, 1000)}"
    if status is PostStatus.UNKNOWN:
        return (
            "⚠ May not have been sent — HighLevel did not confirm it. "
            "Check the conversation in HighLevel before resending."
        )
    if status is PostStatus.SCHEDULED:
        if post.scheduled_at is None:
            return "🕒 Scheduled"
        when = post.scheduled_at
        # Slack shows the date in each reader's own time zone; the fallback is UTC.
        return (
            f"🕒 Scheduled for <!date^{when}^{{date_short_pretty}} at {{time}}|{_utc_text(when)}>"
        )
    return "Cancelled — not sent"


def _status_plain(post: SendPost) -> str:
    """The status for the fallback text (notifications): no date markup."""
    if post.status is PostStatus.SCHEDULED and post.scheduled_at is not None:
        return f"Scheduled for {_utc_text(post.scheduled_at)}"
    if post.status is PostStatus.FAILED:
        reason = (post.error or "").strip() or "HighLevel gave no reason"
        return f"Not sent: {escape_clipped(reason, 300)}"
    if post.status is PostStatus.UNKNOWN:
        return "May not have been sent — check HighLevel before resending"
    return status_line(post)


def _status_buttons(post: SendPost) -> list[ButtonElement]:
    outbox = str(post.outbox_id)
    if post.status is PostStatus.FAILED:
        return [ButtonElement(text="Retry", action_id=RETRY_ACTION, value=outbox, style="primary")]
    if post.status is PostStatus.UNKNOWN:
        confirm = ConfirmObject(
            title="Resend this message?",
            text="Resend this message? If the first one did arrive, the customer gets it twice.",
            confirm="Resend",
            deny="Don't resend",
            style="danger",
        )
        return [
            ButtonElement(text="Resend", action_id=RESEND_ACTION, value=outbox, confirm=confirm)
        ]
    if post.status is PostStatus.SCHEDULED:
        confirm = ConfirmObject(
            title="Cancel this message?",
            text="The scheduled message will not be sent.",
            confirm="Cancel message",
            deny="Keep it",
            style="danger",
        )
        return [
            ButtonElement(
                text="Cancel",
                action_id=CANCEL_ACTION,
                value=outbox,
                style="danger",
                confirm=confirm,
            )
        ]
    return []


# ---------------------------------------------------------------- posts

# The states in which HighLevel has answered the send (its `msg` is worth showing).
_ANSWERED: Final = frozenset(
    {PostStatus.SENT, PostStatus.DELIVERED, PostStatus.READ, PostStatus.SCHEDULED}
)


def _body_block(post: SendPost) -> SectionBlock:
    body = post.text.strip()
    if not body:
        empty = (
            "(HTML only — no plain-text body)"
            if post.channel is MessageChannel.EMAIL
            else "(no text)"
        )
        return SectionBlock(text=MarkdownTextObject(text=f"_{empty}_", verbatim=True))
    note = f"…\n_(shortened here; the full message is {len(body):,} characters)_"
    text = escape_clipped(body, SECTION_TEXT_MAX, note=note)
    return SectionBlock(text=MarkdownTextObject(text=text, verbatim=True))


def thumbnail_files(files: tuple[SlackFileRef, ...]) -> tuple[SlackFileRef, ...]:
    """The files a post shows as images: the first few png/jpg/gif ones."""
    return tuple(f for f in files if f.mimetype.lower() in THUMBNAIL_MIMETYPES)[:MAX_THUMBNAILS]


def files_line(files: tuple[SlackFileRef, ...]) -> str:
    """`📎 invoice.pdf · photo1.jpg`: every file's name, escaped, on one mrkdwn line."""
    names = [escape_clipped(f.name, FILE_NAME_SHOWN) for f in files]
    line = "📎 " + " · ".join(names)
    if len(line) <= FILES_LINE_MAX:
        return line
    shown: list[str] = []
    for index, name in enumerate(names):
        rest = f" · and {len(names) - index} more"
        if len("📎 " + " · ".join([*shown, name])) + len(rest) > FILES_LINE_MAX:
            return "📎 " + " · ".join(shown) + rest
        shown.append(name)
    return line


def _file_blocks(post: SendPost, *, thumbnails: bool) -> list[Block]:
    if not post.files:
        return []
    blocks: list[Block] = []
    if thumbnails:
        blocks += [
            ImageBlock(slack_file={"id": f.id}, alt_text=clip(f.name, ALT_TEXT_MAX))
            for f in thumbnail_files(post.files)
        ]
    line = MarkdownTextObject(text=files_line(post.files), verbatim=True)
    blocks.append(ContextBlock(elements=[line]))
    return blocks


def _content_preview(post: SendPost) -> str:
    """The body's start and, when there are files, `📎 name` or `📎 3 files`."""
    files = post.files
    attached = ""
    if len(files) == 1:
        attached = f"📎 {escape_clipped(files[0].name, FILE_NAME_SHOWN)}"
    elif files:
        attached = f"📎 {len(files)} files"
    return " ".join(part for part in (_preview(post.text), attached) if part)


def _email_lines(post: SendPost) -> list[str]:
    lines: list[str] = []
    if post.subject:
        lines.append(f"*Subject:* {escape_clipped(post.subject, 300)}")
    if post.cc:
        lines.append(f"*CC:* {escape_clipped(', '.join(post.cc), 1000)}")
    return lines


def _contact(post: SendPost) -> str:
    name = f"*{escape_clipped(post.contact_label, 150)}*"
    address = (post.contact_address or "").strip()
    if address and address != post.contact_label:
        return f"{name} · {escape_clipped(address, 320)}"
    return name


def account_line(account: str | None) -> str | None:
    """The line naming a thread's sub-account (mrkdwn), when there is one to name."""
    name = (account or "").strip()
    return f"HighLevel sub-account: *{escape_clipped(name, 80)}*" if name else None


def account_prefix(account: str | None) -> str:
    """The fallback text's mention of the sub-account: "[Name] ", or nothing."""
    name = (account or "").strip()
    return f"[{escape_clipped(name, 80)}] " if name else ""


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    return escape_mrkdwn(clip(flat, PREVIEW_CHARACTERS))


def _blocks(post: SendPost, header: str, *, with_reply: bool, thumbnails: bool) -> list[Block]:
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text=header, verbatim=True))]
    if post.text.strip() or not post.files:  # files alone need no "(no text)"
        blocks.append(_body_block(post))
    blocks += _file_blocks(post, thumbnails=thumbnails)
    status = status_line(post)
    note = (post.note or "").strip()
    if note and post.status in _ANSWERED:
        status += f" · HighLevel: {escape_clipped(note, 300)}"
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=status, verbatim=True)]))
    if post.created_contact:
        blocks.append(
            ContextBlock(elements=[MarkdownTextObject(text="New contact created in HighLevel")])
        )
    buttons: list[InteractiveElement] = []
    if with_reply and post.thread_id is not None:
        buttons.append(
            ButtonElement(text="Reply", action_id=REPLY_ACTION, value=str(post.thread_id))
        )
    buttons += _status_buttons(post)
    if with_reply and post.thread_id is not None:  # the root: the conversation's controls
        buttons += conversation_controls(post.thread_id, earlier=not post.created_contact)
    if buttons:
        blocks.append(ActionsBlock(elements=buttons))
    return blocks


def root_message(post: SendPost, *, thumbnails: bool = True) -> tuple[str, list[Block]]:
    """The thread root, posted by the first send to a conversation: fallback text and blocks.

    `thumbnails=False` leaves out the images (their names still show): for a post Slack
    refuses because an image file is gone or can't be read.
    """
    label = channel_label(post.channel)
    sender = mention(post.sender_user_id)
    account = account_line(post.account)
    header = "\n".join(
        [
            f"*{label}* from {sender} to {_contact(post)}",
            *([account] if account else []),
            *_email_lines(post),
        ]
    )
    contact = escape_clipped(post.contact_label, 150)
    text = (
        f"{account_prefix(post.account)}{label} from {sender} to {contact}: "
        f"{_content_preview(post)} ({_status_plain(post)})"
    )
    blocks = _blocks(post, header, with_reply=True, thumbnails=thumbnails)
    return clip(text, MESSAGE_TEXT_MAX), blocks


def reply_message(post: SendPost, *, thumbnails: bool = True) -> tuple[str, list[Block]]:
    """A later send inside the thread: fallback text and blocks (`thumbnails`: see
    `root_message`)."""
    label = channel_label(post.channel)
    sender = mention(post.sender_user_id)
    header = "\n".join([f"*{label}* from {sender}", *_email_lines(post)])
    text = f"{label} from {sender}: {_content_preview(post)} ({_status_plain(post)})"
    blocks = _blocks(post, header, with_reply=False, thumbnails=thumbnails)
    return clip(text, MESSAGE_TEXT_MAX), blocks
