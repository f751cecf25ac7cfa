"""Checks every built view or message against Slack's limits: the simulator's validation
(Slack's documented limits and error wording) and slack_sdk's own model validators."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from bot.posting.wire import as_dicts
from bot.sandbox.slack._validation import (
    MESSAGE_BLOCKS_MAX,
    block_problems,
    message_text_problems,
    view_problems,
)
from bot.ui.conversation_builder import CONVERSATION_MENU_ACTION, EARLIER_ACTION

# Slack refuses a plain_text_input whose max_length is above 3000 (docs.slack.dev, plain-text
# input element: "between 1 and 3000"); the simulator does not check it, so it is checked here.
PLAIN_TEXT_MAX_LENGTH = 3000


def _walk(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        yield value
        for child in value.values():
            yield from _walk(child)
    elif isinstance(value, list):
        for child in value:
            yield from _walk(child)


def _extra_problems(payload: Any) -> list[str]:
    problems = []
    for node in _walk(payload):
        if node.get("type") == "plain_text_input":
            limit = node.get("max_length")
            if limit is not None and not 1 <= limit <= PLAIN_TEXT_MAX_LENGTH:
                problems.append(f"max_length {limit} of {node.get('action_id')}")
    return problems


def assert_view_accepted(view: View) -> dict[str, Any]:
    """The view's JSON, after proving Slack and slack_sdk would both take it."""
    view.validate_json()
    payload = view.to_dict()
    # as_dicts (what the bridge sends of a message) makes of any block what slack_sdk would;
    # views hold the most kinds of element.
    assert as_dicts(view.blocks) == payload["blocks"]
    assert view_problems(payload) == []
    assert _extra_problems(payload) == []
    return payload


def assert_message_accepted(text: str, blocks: Sequence[Block]) -> list[dict[str, Any]]:
    """The blocks' JSON, after proving chat.postMessage would take `text` and `blocks`."""
    for block in blocks:
        block.validate_json()
    payload = [block.to_dict() for block in blocks]
    assert as_dicts(blocks) == payload  # what the bridge sends is what slack_sdk would
    assert text.strip()
    assert message_text_problems(text) == []
    assert block_problems(payload, pointer="/blocks", max_blocks=MESSAGE_BLOCKS_MAX) == []
    return payload


def mrkdwn_texts(payload: Any) -> list[str]:
    """Every text a reader sees in a payload (text objects and their strings)."""
    return [
        str(node["text"])
        for node in _walk(payload)
        if node.get("type") in {"mrkdwn", "plain_text"} and isinstance(node.get("text"), str)
    ]


# mrkdwn markup the builders write on purpose: a user mention and a localised date.
_OWN_MARKUP = re.compile(r"<@U[A-Z0-9]+>|<!date\^\d+\^[^|<>]+\|[^<>]+>|<#C[A-Z0-9]+>")


def foreign_markup(text: str) -> list[str]:
    """Angle-bracket markup in `text` other than the builders' own (should be empty)."""
    rest = _OWN_MARKUP.sub("", text)
    return re.findall(r"[<>]", rest)


def broken_entities(text: str) -> list[str]:
    """Ampersands that do not start an entity the escaping wrote (a clipped `&amp;`)."""
    return re.findall(r"&(?!amp;|lt;|gt;)", text)


def root_controls(thread_id: int) -> dict[str, dict[str, Any]]:
    """A thread root's conversation controls as Slack receives them, by action id."""
    return {
        EARLIER_ACTION: {
            "type": "button",
            "action_id": EARLIER_ACTION,
            "value": str(thread_id),
            "text": {"type": "plain_text", "text": "Earlier messages", "emoji": True},
        },
        CONVERSATION_MENU_ACTION: {
            "type": "overflow",
            "action_id": CONVERSATION_MENU_ACTION,
            "options": [
                {
                    "text": {"type": "plain_text", "text": label, "emoji": True},
                    "value": f"{verb}:{thread_id}",
                }
                for verb, label in [
                    ("read", "Mark read"),
                    ("unread", "Mark unread"),
                    ("star", "Star"),
                    ("unstar", "Unstar"),
                    ("assign", "Assign…"),
                ]
            ],
        },
    }
