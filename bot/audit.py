"""`ghl-bridge audit`: the rows it prints, from the store's audit rows (pure: no I/O but the
stream it writes to).

One row per send: its id (the outbox's, which `resend_of` names), when, from which Slack
workspace, channel and person, from which sub-account to which contact on which channel,
HighLevel's message ids, the outcome and its history, whether quiet hours were overridden, and
which send it sends again. Never a message body, subject, phone number or email address: the
store's rows do not hold them.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, TextIO

from storage import AuditRow

COLUMNS: Final = (
    "id",
    "time",
    "workspace",
    "channel",
    "person",
    "sub_account",
    "contact",
    "channel_type",
    "highlevel_message_id",
    "outcome",
    "status_history",
    "quiet_hours_override",
    "resend_of",
    "scheduled_for",
)

FORMATS: Final = ("csv", "jsonl")

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class BadDate(ValueError):
    """A --since or --until that is neither a date nor an ISO time; its text is one line."""


def parse_when(text: str, *, end_of_day: bool = False) -> float:
    """Epoch seconds of `text`: a date (YYYY-MM-DD, midnight UTC at its start, or with
    `end_of_day` at its end: the next midnight) or an ISO time (UTC unless it names an
    offset). BadDate otherwise."""
    value = text.strip()
    try:
        if _DATE.fullmatch(value):
            day = date.fromisoformat(value)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return (start + timedelta(days=1) if end_of_day else start).timestamp()
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadDate(
            f"{text!r} is not a date (YYYY-MM-DD) or an ISO time (2026-11-01T09:30:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def iso_utc(epoch: float) -> str:
    """`2026-11-01T09:30:00Z` (to the second)."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def record(row: AuditRow) -> dict[str, str]:
    """The row as the CSV shows it: every column a string (lists joined, booleans
    `true`/`false`, no value empty)."""
    return {
        "id": str(row.outbox_id),
        "time": iso_utc(row.created_at),
        "workspace": row.team_id,
        "channel": row.channel_id,
        "person": row.slack_user_id,
        "sub_account": row.location_id,
        "contact": row.contact_id,
        "channel_type": row.message_type,
        "highlevel_message_id": " ".join(row.ghl_message_ids),
        "outcome": row.state.value,
        "status_history": "; ".join(f"{c.status}@{iso_utc(c.at)}" for c in row.history),
        "quiet_hours_override": "true" if row.quiet_hours_override else "false",
        "resend_of": "" if row.resend_of is None else str(row.resend_of),
        "scheduled_for": "" if row.scheduled_at is None else iso_utc(row.scheduled_at),
    }


def json_record(row: AuditRow) -> dict[str, Any]:
    """The row as a JSON line: the CSV's columns, with lists, booleans and nulls as such."""
    return {
        **record(row),
        "id": row.outbox_id,
        "highlevel_message_id": list(row.ghl_message_ids),
        "status_history": [{"status": c.status, "at": iso_utc(c.at)} for c in row.history],
        "quiet_hours_override": row.quiet_hours_override,
        "resend_of": row.resend_of,
        "scheduled_for": None if row.scheduled_at is None else iso_utc(row.scheduled_at),
    }


def write(rows: Iterable[AuditRow], out: TextIO, output_format: str = "csv") -> int:
    """Write the rows to `out` in `output_format` (csv with a header line, or jsonl);
    returns how many rows were written."""
    count = 0
    if output_format == "csv":
        writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(record(row))
            count += 1
    elif output_format == "jsonl":
        for row in rows:
            out.write(json.dumps(json_record(row), ensure_ascii=False) + "\n")
            count += 1
    else:
        raise ValueError(f"unknown format {output_format!r}; one of {', '.join(FORMATS)}")
    return count
