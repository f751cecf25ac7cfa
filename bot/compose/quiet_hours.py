"""Quiet hours: the daily window (`QUIET_HOURS=21:00-08:00`) in which customers are not texted,
read in the contact's time zone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@dataclass(frozen=True, slots=True)
class QuietHours:
    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> QuietHours:
        """`21:00-08:00` (24-hour clock; a window may cross midnight); ValueError otherwise."""
        parts = text.replace(" ", "").split("-")
        if len(parts) != 2:
            raise ValueError(f"quiet hours must look like 21:00-08:00, not {text!r}")
        try:
            start, end = (time.fromisoformat(_padded(part)) for part in parts)
        except ValueError:
            raise ValueError(f"quiet hours must look like 21:00-08:00, not {text!r}") from None
        if start == end:
            raise ValueError("quiet hours must start and end at different times")
        return cls(start=start.replace(second=0), end=end.replace(second=0))

    def is_quiet(self, local: time) -> bool:
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def quiet_until(self, now: datetime, zone: tzinfo) -> datetime | None:
        """When the window holding `now` ends, in `zone`; None when `now` is not quiet there."""
        local = now.astimezone(zone)
        if not self.is_quiet(local.time().replace(tzinfo=None)):
            return None
        day = local.date()
        if local.time().replace(tzinfo=None) >= self.end:
            day += timedelta(days=1)
        wall = datetime.combine(day, self.end)
        # Through UTC, so a wall time that a DST change skips still lands on a real instant.
        return wall.replace(tzinfo=zone).astimezone(UTC).astimezone(zone)

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


def _padded(part: str) -> str:
    hours, _, minutes = part.partition(":")
    return f"{hours.zfill(2)}:{minutes or '00'}"


def zone_named(name: str | None) -> ZoneInfo | None:
    """The IANA zone `name`, None when it is empty or not a zone."""
    if not name:
        return None
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        return None


def contact_zone(contact_tz: str | None, location_tz: str | None, default: str) -> tzinfo:
    """The contact's zone, else the sub-account's, else `default`, else UTC."""
    for name in (contact_tz, location_tz, default):
        zone = zone_named(name)
        if zone is not None:
            return zone
    return UTC


def format_local(moment: datetime) -> str:
    """`08:00 EST`; a zone without an abbreviation shows its offset (`08:00 UTC-05`)."""
    label = moment.strftime("%Z")
    if not label or label[0] in "+-":
        offset = moment.strftime("%z")
        label = f"UTC{offset[:3]}" + (f":{offset[3:]}" if offset[3:] not in ("", "00") else "")
    return f"{moment:%H:%M} {label}"


__all__ = ["QuietHours", "contact_zone", "format_local", "zone_named"]
