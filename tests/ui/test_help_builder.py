"""The `/sendsms help` message: what Slack shows must be what was written."""

from __future__ import annotations

from bot.ui.help_builder import usage_blocks, usage_text


def test_angle_brackets_are_escaped_in_mrkdwn_and_plain_in_the_fallback() -> None:
    # Slack reads "<…>" in mrkdwn as a link or a mention, even inside backticks.
    texts = [block.to_dict() for block in usage_blocks()]
    shown = repr(texts)
    assert "<recipient>" not in shown
    assert "&lt;recipient&gt;" in shown
    assert "/sendsms <recipient>" in usage_text()
    assert "&lt;" not in usage_text()
