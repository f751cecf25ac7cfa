"""Thread posts: who sent what to whom, status and buttons, escaped, within Slack's limits."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from bot.highlevel import MessageChannel
from bot.ui.conversation_builder import CONVERSATION_MENU_ACTION, EARLIER_ACTION
from bot.ui.thread_builder import (
    CANCEL_ACTION,
    REPLY_ACTION,
    RESEND_ACTION,
    RETRY_ACTION,
    PostStatus,
    SendPost,
    escape_clipped,
    escape_mrkdwn,
    reply_message,
    root_message,
)
from tests.ui._slack_checks import (
    assert_message_accepted,
    broken_entities,
    foreign_markup,
    mrkdwn_texts,
    root_controls,
)

INJECTIONS = "<!channel> <@U0EVE> <https://evil.example|click> & <!here>"

SMS = SendPost(
    outbox_id=41,
    sender_user_id="U0ALICE",
    channel=MessageChannel.SMS,
    contact_label="Ada Lovelace",
    contact_address="+14155550100",
    text="Running 10 min late",
    status=PostStatus.SENT,
    thread_id=7,
)
EMAIL = dataclasses.replace(
    SMS,
    channel=MessageChannel.EMAIL,
    contact_address="ada@example.com",
    text="Your invoice is attached.",
    subject="Invoice #12",
    cc=("bob@example.com", "carol@example.com"),
)
MAY_2024 = 1714573800  # 2024-05-01 14:30 UTC


def _buttons(payload: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        element["action_id"]: element
        for block in payload
        if block["type"] == "actions"
        for element in block["elements"]
    }


def _all_text(text: str, payload: list[dict[str, Any]]) -> str:
    return "\n".join([text, *mrkdwn_texts(payload)])


def test_root_message_shows_sender_channel_contact_text_status_and_reply() -> None:
    text, blocks = root_message(SMS)

    payload = assert_message_accepted(text, blocks)
    shown = _all_text(text, payload)
    assert "<@U0ALICE>" in payload[0]["text"]["text"]
    assert "SMS" in payload[0]["text"]["text"]
    assert "Ada Lovelace" in payload[0]["text"]["text"]
    assert "+14155550100" in payload[0]["text"]["text"]
    assert payload[1]["text"]["text"] == "Running 10 min late"
    assert "✓ Sent" in shown
    assert _buttons(payload) == {
        REPLY_ACTION: {
            "type": "button",
            "action_id": REPLY_ACTION,
            "value": "7",
            "text": {"type": "plain_text", "text": "Reply", "emoji": True},
        },
        # The conversation's controls: only on the root (replies have none).
        **root_controls(7),
    }
    assert "Running 10 min late" in text and "Ada Lovelace" in text


def test_root_message_without_a_known_thread_has_no_reply_button() -> None:
    _, blocks = root_message(dataclasses.replace(SMS, thread_id=None))

    assert REPLY_ACTION not in _buttons([b.to_dict() for b in blocks])


def test_email_root_shows_subject_and_cc() -> None:
    text, blocks = root_message(EMAIL)

    header = assert_message_accepted(text, blocks)[0]["text"]["text"]
    assert "*Email* from <@U0ALICE>" in header
    assert "ada@example.com" in header
    assert "*Subject:* Invoice #12" in header
    assert "*CC:* bob@example.com, carol@example.com" in header


def test_reply_message_has_sender_channel_text_status_and_no_reply_button() -> None:
    text, blocks = reply_message(dataclasses.replace(SMS, status=PostStatus.DELIVERED))

    payload = assert_message_accepted(text, blocks)
    assert payload[0]["text"]["text"] == "*SMS* from <@U0ALICE>"
    assert payload[1]["text"]["text"] == "Running 10 min late"
    assert "✓✓ Delivered" in mrkdwn_texts(payload)
    assert _buttons(payload) == {}


@pytest.mark.parametrize(
    ("status", "line", "action"),
    [
        (PostStatus.QUEUED, "⏳ Sending…", None),
        (PostStatus.SENDING, "⏳ Sending…", None),
        (PostStatus.SENT, "✓ Sent", None),
        (PostStatus.DELIVERED, "✓✓ Delivered", None),
        (PostStatus.READ, "Read", None),
        (PostStatus.FAILED, "✗ Not sent: Contact has opted out", RETRY_ACTION),
        (
            PostStatus.UNKNOWN,
            "⚠ May not have been sent — HighLevel did not confirm it. "
            "Check the conversation in HighLevel before resending.",
            RESEND_ACTION,
        ),
        (
            PostStatus.SCHEDULED,
            "🕒 Scheduled for <!date^1714573800^{date_short_pretty} at {time}"
            "|2024-05-01 14:30 UTC>",
            CANCEL_ACTION,
        ),
        (PostStatus.CANCELLED, "Cancelled — not sent", None),
    ],
)
@pytest.mark.parametrize("build", [root_message, reply_message])
def test_status_lines_and_buttons(
    build: Any, status: PostStatus, line: str, action: str | None
) -> None:
    post = dataclasses.replace(
        SMS, status=status, error="Contact has opted out", scheduled_at=MAY_2024, thread_id=None
    )

    text, blocks = build(post)

    payload = assert_message_accepted(text, blocks)
    status_block = next(b for b in payload if b["type"] == "context")
    assert status_block["elements"][0]["text"] == line
    buttons = _buttons(payload)
    assert list(buttons) == ([action] if action else [])
    if action:
        assert buttons[action]["value"] == "41"


def _root_buttons(post: SendPost) -> dict[str, dict[str, Any]]:
    text, blocks = root_message(post)
    return _buttons(assert_message_accepted(text, blocks))


def test_resend_and_cancel_ask_first() -> None:
    resend = _root_buttons(dataclasses.replace(SMS, status=PostStatus.UNKNOWN))[RESEND_ACTION]
    scheduled = dataclasses.replace(SMS, status=PostStatus.SCHEDULED, scheduled_at=MAY_2024)
    cancel = _root_buttons(scheduled)[CANCEL_ACTION]

    assert resend["confirm"]["text"]["text"] == (
        "Resend this message? If the first one did arrive, the customer gets it twice."
    )
    assert cancel["confirm"]["text"]["text"] == "The scheduled message will not be sent."
    assert cancel["text"]["text"] == "Cancel"
    assert (
        "confirm"
        not in _root_buttons(dataclasses.replace(SMS, status=PostStatus.FAILED))[RETRY_ACTION]
    )


def test_a_failure_without_a_reason_still_says_it_was_not_sent() -> None:
    _, blocks = reply_message(dataclasses.replace(SMS, status=PostStatus.FAILED, error=None))

    assert any(t.startswith("✗ Not sent: ") for t in mrkdwn_texts([b.to_dict() for b in blocks]))


def test_created_contact_adds_a_note() -> None:
    _, plain = root_message(SMS)
    _, created = root_message(dataclasses.replace(SMS, created_contact=True))

    def notes(blocks: Any) -> list[str]:
        return mrkdwn_texts([b.to_dict() for b in blocks])

    assert "New contact created in HighLevel" in notes(created)
    assert "New contact created in HighLevel" not in notes(plain)


def test_a_contact_created_by_the_send_has_no_earlier_messages_to_offer() -> None:
    _, plain = root_message(SMS)
    _, created = root_message(dataclasses.replace(SMS, created_contact=True))

    assert EARLIER_ACTION in _buttons([b.to_dict() for b in plain])
    assert EARLIER_ACTION not in _buttons([b.to_dict() for b in created])
    assert CONVERSATION_MENU_ACTION in _buttons([b.to_dict() for b in created])


def test_everything_anyone_typed_is_escaped() -> None:
    post = dataclasses.replace(
        EMAIL,
        contact_label=f"Eve {INJECTIONS}",
        contact_address=f"eve@example.com {INJECTIONS}",
        text=f"Hi {INJECTIONS}",
        subject=f"Re {INJECTIONS}",
        cc=(INJECTIONS,),
        status=PostStatus.FAILED,
        error=f"Bad {INJECTIONS}",
    )

    for build in (root_message, reply_message):
        text, blocks = build(post)
        payload = assert_message_accepted(text, blocks)
        shown = _all_text(text, payload)
        assert foreign_markup(shown) == []
        assert "<!channel>" not in shown and "<@U0EVE>" not in shown
        assert "&lt;!channel&gt;" in payload[1]["text"]["text"]
        assert (
            "&lt;https://evil.example|click&gt; &amp; &lt;!here&gt;" in payload[1]["text"]["text"]
        )
        assert "<@U0ALICE>" in shown  # the builder's own mention survives


def test_a_malformed_sender_id_is_not_turned_into_markup() -> None:
    text, blocks = root_message(dataclasses.replace(SMS, sender_user_id="U1><!channel"))

    shown = _all_text(text, assert_message_accepted(text, blocks))
    assert foreign_markup(shown) == []
    assert "U1&gt;&lt;!channel" in shown


def test_a_huge_body_is_clipped_to_the_section_limit_without_breaking_entities() -> None:
    body = "<&>" * 4000  # 12,000 characters, 36,000 once escaped
    post = dataclasses.replace(EMAIL, text=body, contact_label="x" * 5000, cc=("a" * 5000,))

    for build in (root_message, reply_message):
        text, blocks = build(post)
        payload = assert_message_accepted(text, blocks)
        shown = payload[1]["text"]["text"]
        assert len(shown) <= 3000
        assert "12,000 characters" in shown
        assert broken_entities(shown) == []
        assert len(text) < 1000


def test_the_fallback_text_previews_at_most_about_150_characters_of_the_body() -> None:
    body = " ".join(f"word{i:04d}" for i in range(500))

    for build in (root_message, reply_message):
        text, blocks = build(dataclasses.replace(SMS, text=body))
        assert_message_accepted(text, blocks)
        assert body[:140] in text
        assert body[:160] not in text
        assert "word0499" not in text


def test_an_empty_email_body_still_renders() -> None:
    text, blocks = root_message(dataclasses.replace(EMAIL, text="  "))

    payload = assert_message_accepted(text, blocks)
    assert "HTML only" in payload[1]["text"]["text"]


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [("a<b>&c", "a&lt;b&gt;&amp;c"), ("<!channel>", "&lt;!channel&gt;"), ("plain", "plain")],
)
def test_escape_mrkdwn(raw: str, escaped: str) -> None:
    assert escape_mrkdwn(raw) == escaped


def test_escape_clipped_never_cuts_an_entity() -> None:
    for limit in range(1, 12):
        clipped = escape_clipped("a&&&&&&&&", limit)
        assert len(clipped) <= limit
        assert broken_entities(clipped) == []


def test_a_root_names_its_sub_account_when_given_one_and_replies_never() -> None:
    post = dataclasses.replace(SMS, account="Acme <Dental> & Co")
    text, blocks = root_message(post)
    shown = _all_text(text, assert_message_accepted(text, blocks))
    assert "HighLevel sub-account: *Acme &lt;Dental&gt; &amp; Co*" in shown
    assert text.startswith("[Acme &lt;Dental&gt; &amp; Co] ")
    assert foreign_markup(shown.replace(f"<@{SMS.sender_user_id}>", "")) == []
    plain_text, plain_blocks = root_message(SMS)
    assert "sub-account" not in _all_text(
        plain_text, assert_message_accepted(plain_text, plain_blocks)
    )
    reply_text, reply_blocks = reply_message(post)
    assert "sub-account" not in _all_text(
        reply_text, assert_message_accepted(reply_text, reply_blocks)
    )
