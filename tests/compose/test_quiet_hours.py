"""Quiet hours: parsed from the setting, read in the contact's zone, ending at the right instant."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from bot.compose.quiet_hours import QuietHours, contact_zone, format_local

NIGHT = QuietHours.parse("21:00-08:00")
NEW_YORK = ZoneInfo("America/New_York")


@pytest.mark.parametrize("text", ["21:00", "21:00-21:00", "9pm-8am", "25:00-08:00", ""])
def test_bad_windows_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"quiet hours"):
        QuietHours.parse(text)


def test_single_digit_hours_are_read() -> None:
    assert str(QuietHours.parse("9:00 - 7:30")) == "09:00-07:30"


def test_a_window_across_midnight_holds_late_evening_and_early_morning() -> None:
    late = datetime(2026, 12, 1, 23, 0, tzinfo=NEW_YORK)
    until = NIGHT.quiet_until(late, NEW_YORK)
    assert until == datetime(2026, 12, 2, 8, 0, tzinfo=NEW_YORK)
    early = datetime(2026, 12, 2, 6, 30, tzinfo=NEW_YORK)
    assert NIGHT.quiet_until(early, NEW_YORK) == datetime(2026, 12, 2, 8, 0, tzinfo=NEW_YORK)


def test_outside_the_window_is_not_quiet() -> None:
    assert NIGHT.quiet_until(datetime(2026, 12, 1, 8, 0, tzinfo=NEW_YORK), NEW_YORK) is None
    assert NIGHT.quiet_until(datetime(2026, 12, 1, 20, 59, tzinfo=NEW_YORK), NEW_YORK) is None


def test_the_contact_zone_decides_not_the_server_zone() -> None:
    # 03:00 UTC is 22:00 in New York (quiet) and 03:00 in London... also quiet; 13:00 UTC is
    # 08:00 in New York (not quiet) and 13:00 in London.
    moment = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    assert NIGHT.quiet_until(moment, NEW_YORK) == datetime(2026, 12, 1, 8, 0, tzinfo=NEW_YORK)
    day = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
    assert NIGHT.quiet_until(day, NEW_YORK) is None
    assert NIGHT.quiet_until(day, ZoneInfo("Asia/Tokyo")) is not None  # 00:00 in Tokyo


def test_a_daytime_window_works_too() -> None:
    lunch = QuietHours.parse("12:00-13:00")
    assert lunch.quiet_until(datetime(2026, 12, 1, 12, 30, tzinfo=UTC), UTC) == datetime(
        2026, 12, 1, 13, 0, tzinfo=UTC
    )
    assert lunch.quiet_until(datetime(2026, 12, 1, 13, 0, tzinfo=UTC), UTC) is None


def test_the_zone_falls_back_from_contact_to_sub_account_to_setting() -> None:
    assert contact_zone("America/New_York", "Europe/Paris", "UTC") == NEW_YORK
    assert contact_zone(None, "Europe/Paris", "UTC") == ZoneInfo("Europe/Paris")
    assert contact_zone("Not/AZone", "", "Asia/Tokyo") == ZoneInfo("Asia/Tokyo")
    assert contact_zone(None, None, "nonsense") == UTC


def test_local_times_are_said_with_their_zone() -> None:
    assert format_local(datetime(2026, 12, 2, 8, 0, tzinfo=NEW_YORK)) == "08:00 EST"
    assert format_local(datetime(2026, 12, 2, 8, 0, tzinfo=ZoneInfo("Etc/GMT+5"))) == (
        "08:00 UTC-05"
    )
