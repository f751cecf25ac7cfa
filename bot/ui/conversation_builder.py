"""The conversation controls on a thread root: "Earlier messages" and the actions menu.

Both carry the thread's id; the handlers (handlers/history.py, handlers/conversation_actions.py)
look the thread up again, so a stale or forged value finds nothing and says so.
"""

from __future__ import annotations

from typing import Final

from slack_sdk.models.blocks import ButtonElement, InteractiveElement, Option, OverflowMenuElement

EARLIER_ACTION: Final = "earlier_messages"  # value: str(thread_id)
CONVERSATION_MENU_ACTION: Final = "conversation_menu"  # option values: "<verb>:<thread_id>"

# The menu's verbs, in the order shown (Slack's overflow menu holds at most five options).
MENU_VERBS: Final = (
    ("read", "Mark read"),
    ("unread", "Mark unread"),
    ("star", "Star"),
    ("unstar", "Unstar"),
    ("assign", "Assign…"),
)


def conversation_controls(thread_id: int, *, earlier: bool = True) -> list[InteractiveElement]:
    """The root's "Earlier messages" button (unless `earlier` is False: a contact created by
    this very send has none) and conversation menu, for the thread `thread_id`."""
    options = [Option(text=label, value=f"{verb}:{thread_id}") for verb, label in MENU_VERBS]
    menu = OverflowMenuElement(action_id=CONVERSATION_MENU_ACTION, options=options)
    if not earlier:
        return [menu]
    return [
        ButtonElement(text="Earlier messages", action_id=EARLIER_ACTION, value=str(thread_id)),
        menu,
    ]


def menu_choice(value: str) -> tuple[str, int] | None:
    """The verb and thread id of a menu option's value, or None when it is not one of ours."""
    verb, _, thread = value.partition(":")
    if verb not in {v for v, _ in MENU_VERBS} or not thread.isdigit():
        return None
    return verb, int(thread)
