"""Recipient parsing as people type recipients in `/sendsms`."""

from __future__ import annotations

import pytest

from bot.recipients import (
    Recipient,
    RecipientError,
    RecipientKind,
    normalise_email_list,
    parse_recipient,
    split_recipient,
)

PHONE = Recipient(RecipientKind.PHONE, "+14155550100")


@pytest.mark.parametrize(
    "text",
    ["+1 (415) 555-0100", "415.555.0100", "(415) 555-0100", "4155550100", "+1 415 555 0100"],
)
def test_common_phone_formats_normalise_to_e164(text: str) -> None:
    assert parse_recipient(text, "US") == PHONE


def test_default_region_applies_to_numbers_without_plus() -> None:
    assert parse_recipient("07911 123456", "GB").value == "+447911123456"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("+1 (415) 555-0100 Running late", "Running late"),
        ("415.555.0100   Running 10 min late", "Running 10 min late"),
        ("+1 415 555 0100 2 mins out", "2 mins out"),
        ("+1 415 555 0100", ""),
    ],
)
def test_split_takes_the_number_with_spaces_and_leaves_the_message(text: str, message: str) -> None:
    assert split_recipient(text, "US") == (PHONE, message)


def test_split_email_and_contact_id() -> None:
    assert split_recipient("Ada@Example.COM hi", "US") == (
        Recipient(RecipientKind.EMAIL, "Ada@example.com"),
        "hi",
    )
    assert split_recipient("abc123def456ghi789jk on my way", "US") == (
        Recipient(RecipientKind.CONTACT_ID, "abc123def456ghi789jk"),
        "on my way",
    )


@pytest.mark.parametrize(
    ("text", "is_id"),
    [
        ("wlPbXBtGIdtqhfiNrlye", True),  # no digit: a sandbox id that once failed a send
        ("ve9EPM428h8vShlRW1KT", True),
        ("abc123def456ghi789jk", True),
        ("ABC123DEF456GHI789JK", True),
        ("Internationalization", False),  # a long word, typed as a name
        ("internationalization", False),
        ("INTERNATIONALIZATION", False),
        ("wlPbXBtGIdtqhf", False),  # too short for an id
    ],
)
def test_a_contact_id_needs_no_digit_but_a_long_word_is_not_one(text: str, is_id: bool) -> None:
    try:
        kind = parse_recipient(text, "US").kind
    except RecipientError:
        kind = None
    assert (kind is RecipientKind.CONTACT_ID) is is_id


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "Add a recipient"),
        ("Hello there", "not a phone number, an email address"),
        ("555-0100 hi", "not a valid phone number"),
        ("ada@ hi", "not a valid email address"),
    ],
)
def test_bad_recipients_say_why(text: str, needle: str) -> None:
    with pytest.raises(RecipientError, match=needle):
        split_recipient(text, "US")


def test_letters_are_never_read_as_vanity_digits() -> None:
    # phonenumbers maps letters to keypad digits; "Running" must not extend the number.
    recipient, message = split_recipient("+1 415 555 0100 Running", "US")
    assert recipient == PHONE
    assert message == "Running"


def test_email_lists() -> None:
    assert normalise_email_list("a@example.com, b@example.org; c@example.net") == [
        "a@example.com",
        "b@example.org",
        "c@example.net",
    ]
    assert normalise_email_list("  ") == []
    with pytest.raises(RecipientError, match="not-an-email"):
        normalise_email_list("a@example.com, not-an-email")
