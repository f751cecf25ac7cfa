"""The driver's signing and view-state building, checked without a server."""

from __future__ import annotations

from typing import Any

import pytest

from bot.sandbox.slack import build_state_values, slack_signature

# The worked example in docs.slack.dev/authentication/verifying-requests-from-slack.
DOC_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
DOC_TIMESTAMP = 1531420618
DOC_BODY = (
    "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow"
    "&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner"
    "&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands"
    "%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    "&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
DOC_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"

BLOCKS: list[dict[str, Any]] = [
    {
        "type": "input",
        "block_id": "body",
        "label": {"type": "plain_text", "text": "Message"},
        "element": {"type": "plain_text_input", "action_id": "text"},
    },
    {
        "type": "input",
        "block_id": "channel",
        "optional": True,
        "label": {"type": "plain_text", "text": "Send by"},
        "element": {"type": "static_select", "action_id": "pick", "options": []},
    },
    {
        "type": "input",
        "block_id": "when",
        "optional": True,
        "label": {"type": "plain_text", "text": "When"},
        "element": {"type": "datepicker", "action_id": "date"},
    },
]


def test_signature_matches_slacks_worked_example() -> None:
    assert slack_signature(DOC_SECRET, DOC_TIMESTAMP, DOC_BODY) == DOC_SIGNATURE


def test_state_values_take_the_shape_of_each_element() -> None:
    state = build_state_values(
        BLOCKS, {"body": {"text": "Hi Jane"}, "channel": {"pick": "SMS"}, "when": {}}
    )

    assert state["values"]["body"]["text"] == {"type": "plain_text_input", "value": "Hi Jane"}
    assert state["values"]["channel"]["pick"]["selected_option"]["value"] == "SMS"
    # An optional input left empty is still there, empty, as Slack sends it.
    assert state["values"]["when"]["date"] == {"type": "datepicker", "selected_date": None}


def test_required_input_left_empty_blocks_a_submission_but_not_a_click() -> None:
    with pytest.raises(ValueError, match="required input body/text"):
        build_state_values(BLOCKS, {"channel": {"pick": "SMS"}})

    clicked = build_state_values(BLOCKS, {}, submitting=False)
    assert clicked["values"]["body"]["text"] == {"type": "plain_text_input", "value": None}


def test_answering_an_element_that_is_not_there_is_a_test_mistake() -> None:
    with pytest.raises(ValueError, match="no element body/txt"):
        build_state_values(BLOCKS, {"body": {"text": "x", "txt": "typo"}})
