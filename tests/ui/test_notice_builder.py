"""Ephemeral notices: what happened, what to do, nothing injectable, within Slack's limits."""

from __future__ import annotations

from slack_sdk.models.blocks import Block

from bot.highlevel import MessageChannel
from bot.ui.notice_builder import (
    denied_notice,
    error_notice,
    not_in_channel_notice,
    queued_notice,
)
from tests.ui._slack_checks import assert_message_accepted, foreign_markup, mrkdwn_texts

INJECTIONS = "<!channel> <@U0EVE> <https://evil.example|click> &"


def _shown(text: str, blocks: list[Block]) -> str:
    return "\n".join([text, *mrkdwn_texts(assert_message_accepted(text, blocks))])


def test_not_in_channel_explains_how_to_add_the_bot_and_that_nothing_was_sent() -> None:
    text, blocks = not_in_channel_notice("C0SALES")
    shown = _shown(text, blocks)

    assert "<#C0SALES>" in shown
    assert "nothing was sent" in shown
    assert "/invite" in shown
    assert "Add apps" in shown and "Integrations" in shown


def test_not_in_channel_names_the_bot_when_known_and_never_trusts_a_bad_channel_id() -> None:
    text, blocks = not_in_channel_notice("C0SALES>|<!channel", bot_user_id="U0BOT")
    shown = _shown(text, blocks)

    assert "<@U0BOT>" in shown
    assert foreign_markup(shown) == []
    assert "this conversation" in shown


def test_denied_names_the_settings_and_says_nothing_was_sent() -> None:
    text, blocks = denied_notice()
    shown = _shown(text, blocks)

    assert "ALLOWED_SLACK_USERS" in shown
    assert "ALLOWED_SLACK_CHANNELS" in shown
    assert "nothing was sent" in shown


def test_error_notice_shows_highlevels_own_words_escaped() -> None:
    text, blocks = error_notice("Couldn't send to +1 415 555 0100", f"Bad number {INJECTIONS}")
    shown = _shown(text, blocks)

    assert "Couldn't send to +1 415 555 0100" in shown
    assert "Bad number &lt;!channel&gt;" in shown
    assert foreign_markup(shown) == []


def test_error_notice_with_huge_or_empty_detail_stays_within_limits() -> None:
    huge_text, huge_blocks = error_notice("T" * 5000, "<" * 50_000)
    empty_text, empty_blocks = error_notice("Lookup failed", "  ")

    assert len(assert_message_accepted(huge_text, huge_blocks)) == 2
    assert len(assert_message_accepted(empty_text, empty_blocks)) == 1
    assert empty_text == "✗ Lookup failed"


def test_queued_notice() -> None:
    text, blocks = queued_notice("Ada Lovelace", MessageChannel.SMS, created_contact=False)
    shown = _shown(text, blocks)

    assert text == "Sending SMS to Ada Lovelace…"
    assert "Created contact" not in shown


def test_queued_notice_for_a_new_contact() -> None:
    text, blocks = queued_notice("+1 415 555 0100", MessageChannel.WHATSAPP, created_contact=True)
    shown = _shown(text, blocks)

    assert "Created contact +1 415 555 0100 in HighLevel" in shown
    assert "Sending WhatsApp to *+1 415 555 0100*…" in shown


def test_queued_notice_escapes_the_contact() -> None:
    text, blocks = queued_notice(INJECTIONS, MessageChannel.EMAIL, created_contact=True)

    assert foreign_markup(_shown(text, blocks)) == []
