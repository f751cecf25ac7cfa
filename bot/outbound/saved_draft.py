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
        "first_name": draft.first_name,
        "last_name": draft.last_name,
        "template_id": draft.template_id,
        "send_anyway": draft.send_anyway,
        "email_from": draft.email_from,
        "email_to": draft.email_to,
        "to_number": draft.to_number,
        "appointment_id": draft.appointment_id,
        "reply_all": draft.reply_all,
        "finished": draft.finished,
        "conversation_provider_id": draft.conversation_provider_id,
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
        first_name=text_field(data.get("first_name", "")),
        last_name=text_field(data.get("last_name", "")),
        template_id=text_field(data.get("template_id", "")),
        send_anyway=data.get("send_anyway") is True,
        email_from=text_field(data.get("email_from", "")),
        email_to=text_field(data.get("email_to", "")),
        to_number=text_field(data.get("to_number", "")),
        appointment_id=text_field(data.get("appointment_id", "")),
        reply_all=_optional_bool(data.get("reply_all")),
        finished=data.get("finished") is True,
        conversation_provider_id=text_field(data.get("conversation_provider_id", "")),
    )


def text_field(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {type(value).__name__}")
    return value


def optional_text(value: Any) -> str | None:
    return None if value is None else text_field(value)


def _optional_bool(value: Any) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"expected true, false or null, got {type(value).__name__}")
    return value
