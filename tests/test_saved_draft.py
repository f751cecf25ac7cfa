"""A compose intent's saved draft round-trips whole, files included, and refuses anything else."""

from __future__ import annotations

import pytest

from bot.compose import Draft
from bot.files import SlackFileRef
from bot.highlevel import MessageChannel
from bot.outbound.saved_draft import decode_draft, encode_draft


def test_a_draft_with_files_comes_back_the_same() -> None:
    draft = Draft(
        recipient="+14155550100",
        channel=MessageChannel.WHATSAPP,
        message="The quote and the photos",
        schedule_at=1_900_000_000,
        location_id="loc-1",
        files=(
            SlackFileRef("F1", "quote.pdf", "application/pdf", 12_000),
            SlackFileRef("F2", "kitchen.jpg", "image/jpeg", 240_000),
        ),
        first_name="Ada",
        last_name="Lovelace",
        template_id="tpl-1",
        send_anyway=True,
        email_from="desk@example.com",
        email_to="ada@work.example",
        to_number="+14155550199",
        appointment_id="apt-1",
        reply_all=False,
        finished=True,
        conversation_provider_id="prov-1",
    )
    assert decode_draft(encode_draft(draft)) == draft


def test_a_draft_saved_before_files_reads_as_none() -> None:
    saved = encode_draft(Draft(message="hi"))
    del saved["files"]
    assert decode_draft(saved).files == ()


@pytest.mark.parametrize("files", ["F1", [["F1"]], [{"name": "a.pdf"}]])
def test_files_that_are_not_what_was_saved_are_refused(files: object) -> None:
    saved = encode_draft(Draft(message="hi")) | {"files": files}
    with pytest.raises((TypeError, KeyError, ValueError)):
        decode_draft(saved)
