"""What a draft becomes before it goes: the preview (merge fields, signature) and the
quiet-hours choice."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.compose import ContactCard, Draft
from bot.compose.finish import (
    ContactNeededError,
    UnknownMergeFieldsError,
    changes_text,
    finished,
    preview,
    quiet_choice,
)
from bot.compose.quiet_hours import QuietHours
from bot.highlevel import MessageChannel

ADA = ContactCard(id="c1", first_name="Ada", last_name="Lovelace", timezone="Etc/GMT+5")
NIGHT = QuietHours.parse("21:00-08:00")
# 04:00 UTC is 23:00 at UTC-5.
LATE = datetime(2026, 12, 2, 4, 0, tzinfo=UTC).timestamp()
NOON = datetime(2026, 12, 2, 17, 0, tzinfo=UTC).timestamp()


def test_merge_fields_and_the_signature_make_the_preview() -> None:
    draft = Draft(channel=MessageChannel.SMS, message=" Hi {{contact.first_name}}, see you at 3 ")
    shown = preview(draft, contact=ADA, signature="— Grace, Acme")
    assert shown.message == "Hi Ada, see you at 3\n— Grace, Acme"
    assert shown.subject is None and shown.html is None
    sent = finished(draft, shown)
    assert sent.finished and sent.message == shown.message


def test_email_gets_the_signature_in_text_and_html_and_fields_in_the_subject() -> None:
    draft = Draft(
        channel=MessageChannel.EMAIL,
        subject="For {{contact.first_name}}",
        message="Hello",
        html="<p>Hello {{contact.last_name}}</p>",
    )
    shown = preview(draft, contact=ADA, signature="— Grace")
    assert shown.subject == "For Ada"
    assert shown.message == "Hello\n— Grace"
    assert shown.html == "<p>Hello Lovelace</p><p>— Grace</p>"


def test_an_unknown_field_is_refused_before_anything_else() -> None:
    draft = Draft(message="Hi {{contact.nickname}}")
    with pytest.raises(UnknownMergeFieldsError, match=r"\{\{contact\.nickname\}\}"):
        preview(draft, contact=ADA)


def test_fields_need_a_known_contact() -> None:
    with pytest.raises(ContactNeededError):
        preview(Draft(message="Hi {{contact.first_name}}"), contact=None)


def test_empty_values_are_reported_for_a_warning() -> None:
    shown = preview(Draft(message="Hi {{contact.company_name}}"), contact=ADA)
    assert shown.message == "Hi"
    assert shown.empty_fields == ("contact.company_name",)


def test_plain_text_without_signature_is_unchanged() -> None:
    draft = Draft(message="Running late")
    assert not changes_text(draft, "")
    assert changes_text(draft, "— Grace")
    assert not changes_text(Draft(channel=MessageChannel.FB, message="x"), "— Grace")


def test_a_text_at_23_00_contact_time_is_held_until_08_00_there() -> None:
    choice = quiet_choice(
        MessageChannel.SMS,
        None,
        quiet_hours=NIGHT,
        email_too=False,
        now=LATE,
        contact_tz=ADA.timezone,
        location_tz="Asia/Tokyo",
        default_tz="UTC",
        who="Ada Lovelace",
    )
    assert choice is not None
    assert choice.until == int(datetime(2026, 12, 2, 13, 0, tzinfo=UTC).timestamp())
    assert choice.until_text == "08:00 UTC-05"
    assert choice.now_text == "23:00 UTC-05"
    assert choice.window_text == "21:00 to 08:00"


@pytest.mark.parametrize(
    ("channel", "schedule_at", "email_too", "now"),
    [
        (MessageChannel.SMS, None, False, NOON),  # not quiet there
        (MessageChannel.EMAIL, None, False, LATE),  # email is exempt by default
        (MessageChannel.SMS, 1_900_000_000, False, LATE),  # already scheduled
    ],
)
def test_sends_that_may_go(
    channel: MessageChannel, schedule_at: int | None, email_too: bool, now: float
) -> None:
    choice = quiet_choice(
        channel,
        schedule_at,
        quiet_hours=NIGHT,
        email_too=email_too,
        now=now,
        contact_tz=ADA.timezone,
        location_tz="",
        default_tz="UTC",
        who="Ada",
    )
    assert choice is None


def test_email_is_held_too_when_asked() -> None:
    choice = quiet_choice(
        MessageChannel.EMAIL,
        None,
        quiet_hours=NIGHT,
        email_too=True,
        now=LATE,
        contact_tz="",
        location_tz="Etc/GMT+5",
        default_tz="UTC",
        who="Ada",
    )
    assert choice is not None and choice.until_text == "08:00 UTC-05"
