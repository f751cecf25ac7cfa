"""The Assign modal (a conversation's contact to a HighLevel user), its outcome line in the
thread, the conversation menu's answers, and the reactions a thread root shows its
conversation's state with.

Pure functions: they build slack_sdk model objects (and text) from plain values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextObject,
    SectionBlock,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from bot.ui.thread_builder import escape_clipped

ASSIGN_CALLBACK: Final = "assign_conversation"  # private_metadata: assign_metadata()
ASSIGN_BLOCK: Final = "assignee"
ASSIGN_SELECT: Final = "assignee_select"  # option values: HighLevel user ids
# Slack's static select holds at most 100 options.
MAX_ASSIGNEES: Final = 100
_LABEL_MAX = 75  # an option's text

# The reactions a thread root shows its conversation's state with. None is among the
# delivery-status reactions of the bridge's own posts (white_check_mark, eyes, x).
WAITING_REACTION: Final = "hourglass_flowing_sand"  # a customer message is not answered yet
UNREAD_REACTION: Final = "large_blue_circle"  # HighLevel counts unread messages
STARRED_REACTION: Final = "star"  # the conversation is starred in HighLevel
MARK_REACTIONS: Final = (WAITING_REACTION, UNREAD_REACTION, STARRED_REACTION)


def marks_shown(*, waiting: bool, unread: bool, starred: bool) -> frozenset[str]:
    """The reactions the root shows for this state (the others of MARK_REACTIONS it does not)."""
    shown = {WAITING_REACTION: waiting, UNREAD_REACTION: unread, STARRED_REACTION: starred}
    return frozenset(name for name, on in shown.items() if on)


@dataclass(frozen=True, slots=True)
class Assignee:
    """A HighLevel user a contact can be assigned to."""

    user_id: str
    label: str


def _option(assignee: Assignee) -> Option:
    label = assignee.label.strip() or assignee.user_id
    if len(label) > _LABEL_MAX:
        label = label[: _LABEL_MAX - 1] + "…"
    return Option(text=label, value=assignee.user_id)


def assign_metadata(thread_id: int, channel_id: str) -> str:
    """The modal's private_metadata: the thread, and the channel the menu was used in."""
    return f"{thread_id}:{channel_id}"


def read_assign_metadata(metadata: str) -> tuple[int, str] | None:
    """The thread id and channel of `assign_metadata`; None when it is not one."""
    thread, _, channel = metadata.partition(":")
    return (int(thread), channel) if thread.isdigit() and channel else None


def assign_view(
    metadata: str,
    contact_label: str,
    assignees: Sequence[Assignee],
    default: str | None,
) -> View:
    """The modal: pick who the contact is assigned to; `default` (a user id) preselected."""
    options = [_option(a) for a in assignees[:MAX_ASSIGNEES]]
    initial = next((o for o in options if o.value == default), None)
    select = StaticSelectElement(
        action_id=ASSIGN_SELECT,
        placeholder="Choose a HighLevel user",
        options=options,
        initial_option=initial,
    )
    blocks: list[Block] = [
        SectionBlock(
            text=MarkdownTextObject(
                text=f"Assign *{escape_clipped(contact_label, 150)}* in HighLevel to:"
            )
        ),
        InputBlock(block_id=ASSIGN_BLOCK, label="HighLevel user", element=select),
    ]
    if default is not None and initial is not None:
        blocks.append(
            ContextBlock(
                elements=[MarkdownTextObject(text="Preselected: the user with your email address.")]
            )
        )
    return View(
        type="modal",
        callback_id=ASSIGN_CALLBACK,
        private_metadata=metadata,
        title=PlainTextObject(text="Assign conversation"),
        submit=PlainTextObject(text="Assign"),
        close=PlainTextObject(text="Cancel"),
        blocks=blocks,
    )


def assign_loading_view(metadata: str) -> View:
    """Shown at once (the click's trigger lasts 3 s) while HighLevel's users are read."""
    return View(
        type="modal",
        callback_id=ASSIGN_CALLBACK,
        private_metadata=metadata,
        title=PlainTextObject(text="Assign conversation"),
        close=PlainTextObject(text="Cancel"),
        blocks=[SectionBlock(text=MarkdownTextObject(text="Reading the sub-account's users…"))],
    )


def assign_problem_view(title: str, detail: str) -> View:
    """The modal, when there is nobody to assign to or HighLevel did not answer."""
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(text=f"✗ *{escape_clipped(title, 300)}*"))
    ]
    if detail.strip():
        blocks.append(SectionBlock(text=MarkdownTextObject(text=escape_clipped(detail, 2900))))
    return View(
        type="modal",
        callback_id=ASSIGN_CALLBACK,
        title=PlainTextObject(text="Assign conversation"),
        close=PlainTextObject(text="Close"),
        blocks=blocks,
    )


def assigned_line(assignee_label: str, slack_user_id: str) -> str:
    """The thread's line once the contact is assigned."""
    return f"Assigned to *{escape_clipped(assignee_label, 150)}* by <@{slack_user_id}>"


# What each menu verb did, for the clicker's confirmation.
DONE_TEXT: Final = {
    "read": "Marked read in HighLevel.",
    "unread": "Marked unread in HighLevel.",
    "star": "Starred in HighLevel.",
    "unstar": "Unstarred in HighLevel.",
}


def done_notice(text: str) -> tuple[str, list[Block]]:
    """A short confirmation only the clicker sees."""
    return f"✓ {text}", [SectionBlock(text=MarkdownTextObject(text=f"✓ {text}"))]
