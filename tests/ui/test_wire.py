"""as_dicts: Block Kit objects as slack_sdk would send them, its validators included.

Every builder's output is also compared with slack_sdk's own `to_dict` in
`_slack_checks.assert_message_accepted` and `assert_view_accepted`; these are the cases no
builder makes.
"""

from __future__ import annotations

from typing import Any

import pytest
from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.basic_objects import JsonObject
from slack_sdk.models.blocks import (
    ActionsBlock,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    DividerBlock,
    MarkdownTextObject,
    Option,
    OptionGroup,
    PlainTextObject,
    RichTextBlock,
    RichTextElementParts,
    RichTextSectionElement,
    SectionBlock,
    StaticSelectElement,
)

from bot.posting.wire import as_dicts


def test_nested_objects_and_the_classes_that_convert_themselves() -> None:
    blocks: list[JsonObject | dict[str, Any]] = [
        SectionBlock(
            text=MarkdownTextObject(text="*Ada* via SMS", verbatim=True),
            accessory=StaticSelectElement(
                action_id="pick",
                placeholder="Pick",
                option_groups=[
                    OptionGroup(label="First", options=[Option(value="1", text="One")]),
                    OptionGroup(label="Second", options=[Option(value="2", text="Two")]),
                ],
            ),
        ),
        ActionsBlock(
            elements=[
                ButtonElement(
                    text="Resend",
                    action_id="resend",
                    value="7",
                    style="danger",
                    confirm=ConfirmObject(title="Resend?", text="It goes again.", confirm="Yes"),
                )
            ]
        ),
        ContextBlock(elements=[PlainTextObject(text="via SMS", emoji=False)]),
        DividerBlock(),
        {"type": "section", "text": {"type": "mrkdwn", "text": "already a dict"}},
    ]
    expected = [block if isinstance(block, dict) else block.to_dict() for block in blocks]
    assert as_dicts(blocks) == expected
    assert as_dicts(blocks) == expected  # the second time from what it learnt of each class


def test_an_empty_list_is_left_out_except_where_slack_takes_one() -> None:
    rich = RichTextBlock(
        elements=[
            RichTextSectionElement(elements=[]),
            RichTextSectionElement(elements=[RichTextElementParts.Text(text="hi")]),
        ]
    )
    section = SectionBlock(text="no fields", fields=[])
    sent = as_dicts([rich, section])
    assert sent == [rich.to_dict(), section.to_dict()]
    assert sent[0]["elements"][0] == {"type": "rich_text_section", "elements": []}
    assert "fields" not in sent[1]


@pytest.mark.parametrize(
    "block",
    [
        SectionBlock(text="x", block_id="b" * 256),  # block_id over 255
        SectionBlock(block_id="empty"),  # neither text nor fields
        ActionsBlock(elements=[ButtonElement(text="x" * 76, action_id="a")]),  # nested
    ],
    ids=["block_id too long", "section without text", "button text too long"],
)
def test_an_invalid_object_is_refused_as_slack_sdk_refuses_it(block: SectionBlock) -> None:
    with pytest.raises(SlackObjectFormationError) as by_sdk:
        block.to_dict()
    with pytest.raises(SlackObjectFormationError) as here:
        as_dicts([block])
    assert str(here.value) == str(by_sdk.value)
