"""Quick send's questions back to the person: the send falls in the contact's quiet hours
(schedule it, or send now anyway), or a name matches several contacts (pick one)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Final

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.compose.finish import QuietChoice
from bot.highlevel import Contact
from bot.ui.thread_builder import clip, escape_clipped

QUIET_SCHEDULE_ACTION: Final = "quiet_hours_schedule"
QUIET_SEND_ANYWAY_ACTION: Final = "quiet_hours_send_anyway"
PICK_CONTACT_ACTION: Final = "quick_send_pick_contact"
BUTTON_VALUE_MAX: Final = 2000
BUTTON_TEXT_MAX: Final = 75
PICK_CHOICES_MAX: Final = 5  # an actions block holds 25 elements; a person reads five


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=text, verbatim=True))


def quiet_hours_notice(choice: QuietChoice, intent_key: str) -> tuple[str, list[Block]]:
    """The send was held: it is quiet hours where the contact is. Two buttons decide."""
    who = escape_clipped(choice.who, 150)
    text = (
        f"Not sent yet: it is {choice.now_text} for {choice.who}, inside the quiet hours "
        f"({choice.window_text}). Schedule it for {choice.until_text}, or send it now anyway."
    )
    blocks: list[Block] = [
        _section(
            f"⏸ *Not sent yet:* it is {choice.now_text} for *{who}*, inside the quiet hours "
            f"({choice.window_text})."
        ),
        ActionsBlock(
            elements=[
                ButtonElement(
                    text=clip(f"Schedule for {choice.until_text}", BUTTON_TEXT_MAX),
                    action_id=QUIET_SCHEDULE_ACTION,
                    value=json.dumps({"k": intent_key, "at": choice.until}),
                    style="primary",
                ),
                ButtonElement(
                    text="Send now anyway",
                    action_id=QUIET_SEND_ANYWAY_ACTION,
                    value=json.dumps({"k": intent_key}),
                ),
            ]
        ),
        ContextBlock(
            elements=[
                MarkdownTextObject(
                    text="Sending now anyway is noted in the bridge's audit trail.",
                    verbatim=True,
                )
            ]
        ),
    ]
    return text, blocks


def _reach(contact: Contact) -> str:
    return contact.phone or contact.email or contact.id


def contact_choices_notice(
    name: str, contacts: Sequence[Contact], intent_key: str
) -> tuple[str, list[Block]]:
    """Several contacts have this name: pick the one meant (nothing is sent until then)."""
    shown = list(contacts[:PICK_CHOICES_MAX])
    label = escape_clipped(name, 150)
    text = f"Several contacts are named {name}; pick one (nothing was sent yet)."
    buttons = [
        ButtonElement(
            text=clip(_reach(contact), BUTTON_TEXT_MAX),
            action_id=f"{PICK_CONTACT_ACTION}_{index}",
            value=json.dumps({"k": intent_key, "c": contact.id}),
        )
        for index, contact in enumerate(shown)
    ]
    blocks: list[Block] = [
        _section(f"*Several contacts are named {label}.* Which one? Nothing was sent yet."),
        ActionsBlock(elements=list(buttons)),
    ]
    if len(contacts) > len(shown):
        more = len(contacts) - len(shown)
        blocks.append(
            ContextBlock(
                elements=[
                    MarkdownTextObject(
                        text=f"{more} more not shown: use the number or email instead.",
                        verbatim=True,
                    )
                ]
            )
        )
    return text, blocks
