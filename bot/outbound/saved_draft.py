"""A draft as a compose intent saves it (JSON), and back: what a restart needs to run it again."""

from __future__ import annotations

from typing import Any

from bot.compose import Draft
from bot.files import SlackFileRef
from bot.highlevel import MessageChannel


def encode_draft(draft: Draft) -> dict[str, Any]:
    return {
        "recipient": draft.recipient,
        "channel": draft.channel.value,
        "message": draft.message,
        "subject": draft.subject,
        "cc": draft.cc,
        "bcc": draft.bcc,
        "html": draft.html,
        "from_number": draft.from_number,
        "schedule_at": draft.schedule_at,
        "location_id": draft.location_id,
        "files": [file.to_json() for file in draft.files],
    }


def decode_draft(data: Any) -> Draft:
    """The inverse of `encode_draft`; TypeError, KeyError or ValueError for anything else."""
    if not isinstance(data, dict):
        raise TypeError("a saved draft is not an object")
    schedule_at = data.get("schedule_at")
    if schedule_at is not None and not isinstance(schedule_at, int):
        raise TypeError("a saved schedule is not a number")
    files = data.get("files") or []
    if not isinstance(files, list) or not all(isinstance(item, dict) for item in files):
        raise TypeError("saved files are not a list of objects")
    return Draft(
        recipient=text_field(data.get("recipient", "")),
        channel=MessageChannel(data.get("channel", MessageChannel.SMS.value)),
        message=text_field(data.get("message", "")),
        subject=text_field(data.get("subject", "")),
        cc=text_field(data.get("cc", "")),
        bcc=text_field(data.get("bcc", "")),
        html=text_field(data.get("html", "")),
        from_number=text_field(data.get("from_number", "")),
        schedule_at=schedule_at,
        location_id=text_field(data.get("location_id", "")),
        files=tuple(SlackFileRef.from_json(item) for item in files),
    )


def text_field(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {type(value).__name__}")
    return value


def optional_text(value: Any) -> str | None:
    return None if value is None else text_field(value)
