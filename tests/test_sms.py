"""SMS segment counting: GSM-7 160/153, UCS-2 70/67."""

from __future__ import annotations

import pytest

from bot.sms import MAX_SMS_CHARACTERS, measure


@pytest.mark.parametrize(
    ("text", "encoding", "segments"),
    [
        ("", "GSM-7", 0),
        ("a" * 160, "GSM-7", 1),
        ("a" * 161, "GSM-7", 2),
        ("a" * 306, "GSM-7", 2),
        ("a" * 307, "GSM-7", 3),
        ("€" * 80, "GSM-7", 1),  # extension characters cost two septets
        ("€" * 81, "GSM-7", 2),
        ("é" * 70, "GSM-7", 1),  # é is in the GSM basic set
        ("ć" * 70, "UCS-2", 1),
        ("ć" * 71, "UCS-2", 2),
        ("😀" * 35, "UCS-2", 1),  # an emoji is two UTF-16 units
        ("😀" * 36, "UCS-2", 2),
    ],
)
def test_segments(text: str, encoding: str, segments: int) -> None:
    length = measure(text)
    assert (length.encoding, length.segments) == (encoding, segments)


def test_hard_limit_and_description() -> None:
    assert not measure("a" * MAX_SMS_CHARACTERS).too_long
    assert measure("a" * (MAX_SMS_CHARACTERS + 1)).too_long
    assert measure("hello").describe() == "5 characters · 1 segment (GSM-7)"
