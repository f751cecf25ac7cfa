"""The composer's state that round-trips through Slack: its context in `private_metadata`
(`encode_context` / `decode_context`) and the draft in a submitted view's state (`read_draft`).
Pure functions, like the builder (`compose_builder`) whose views they read."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from bot.compose import ComposeContext, ComposeField, Draft, ReplyContext
from bot.highlevel import EmailReplyMode, MessageChannel
from bot.ui.thread_builder import clip

PRIVATE_METADATA_MAX: Final = 3000
CONTACT_LABEL_MAX: Final = 80  # in private_metadata; the rest of a long name is not needed


# ---------------------------------------------------------------- private_metadata


def encode_context(context: ComposeContext) -> str:
    """`context` as compact JSON for private_metadata (at most 3000 characters)."""
    data: dict[str, Any] = {"c": context.channel_id}
    if context.thread_ts is not None:
        data["t"] = context.thread_ts
    if context.available is not None:
        data["a"] = [ch.value for ch in context.available]
    reply = context.reply
    if reply is not None:
        packed: dict[str, Any] = {
            "i": reply.thread_id,
            "k": reply.contact_id,
            "l": clip(reply.contact_label, CONTACT_LABEL_MAX),
        }
        for key, value in (
            ("e", reply.email_thread_id),
            ("m", reply.reply_message_id),
            ("x", reply.email_reply_mode.value if reply.email_reply_mode else None),
            ("o", reply.location_id or None),
        ):
            if value is not None:
                packed[key] = value
        data["r"] = packed
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    if len(text) > PRIVATE_METADATA_MAX:
        # Only absurd ids get here; cutting them would point the send at the wrong thread.
        raise ValueError(
            f"compose context is {len(text)} characters; Slack keeps {PRIVATE_METADATA_MAX}"
        )
    return text


def _take(data: dict[str, Any], key: str, kind: type, *, required: bool = False) -> Any:
    value = data.pop(key, None)
    if value is None:
        if required:
            raise ValueError(f"compose context lacks {key!r}")
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"compose context {key!r} is not a {kind.__name__}")
    return value


def _no_leftovers(data: dict[str, Any]) -> None:
    if data:
        raise ValueError(f"compose context has unknown keys {sorted(data)}")


def decode_context(text: str) -> ComposeContext:
    """The inverse of `encode_context`; ValueError for anything it did not produce."""
    if len(text) > PRIVATE_METADATA_MAX:
        raise ValueError("compose context is too long")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"compose context is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError("compose context is not an object")
    channel_id = _take(data, "c", str, required=True)
    if not channel_id:
        raise ValueError("compose context has an empty channel id")
    thread_ts = _take(data, "t", str)
    channels = _take(data, "a", list)
    available: tuple[MessageChannel, ...] | None = None
    if channels is not None:
        if not all(isinstance(ch, str) for ch in channels):
            raise ValueError("compose context channels are not strings")
        available = tuple(MessageChannel(ch) for ch in channels)  # ValueError when unknown
    packed = _take(data, "r", dict)
    _no_leftovers(data)
    reply: ReplyContext | None = None
    if packed is not None:
        packed = dict(packed)
        mode = _take(packed, "x", str)
        reply = ReplyContext(
            thread_id=_take(packed, "i", int, required=True),
            contact_id=_take(packed, "k", str, required=True),
            contact_label=_take(packed, "l", str, required=True),
            email_thread_id=_take(packed, "e", str),
            reply_message_id=_take(packed, "m", str),
            email_reply_mode=EmailReplyMode(mode) if mode is not None else None,
            location_id=_take(packed, "o", str) or "",
        )
        _no_leftovers(packed)
    return ComposeContext(
        channel_id=channel_id, thread_ts=thread_ts, reply=reply, available=available
    )


# ---------------------------------------------------------------- reading a submission


def _entry(
    state_values: Mapping[str, Mapping[str, Mapping[str, Any]]], field: ComposeField
) -> Mapping[str, Any] | None:
    block = state_values.get(field.value)
    entry = block.get(field.value) if isinstance(block, Mapping) else None
    return entry if isinstance(entry, Mapping) else None


def read_draft(
    state_values: Mapping[str, Mapping[str, Mapping[str, Any]]], *, fallback: Draft | None = None
) -> Draft:
    """The `Draft` in a submitted (or re-rendered) composer's `view.state.values`.

    A block missing from the view (Email fields for an SMS, the recipient in a reply) keeps
    `fallback`'s value; a block that is there but empty reads as empty.
    """
    base = fallback or Draft()

    def text(field: ComposeField, default: str) -> str:
        entry = _entry(state_values, field)
        if entry is None:
            return default
        value = entry.get("value")
        return value if isinstance(value, str) else ""

    channel = base.channel
    channel_entry = _entry(state_values, ComposeField.CHANNEL)
    if channel_entry is not None:
        selected = channel_entry.get("selected_option")
        value = selected.get("value") if isinstance(selected, Mapping) else None
        if value is not None:
            try:
                channel = MessageChannel(value)
            except ValueError:
                channel = MessageChannel.SMS

    schedule_at = base.schedule_at
    schedule_entry = _entry(state_values, ComposeField.SCHEDULE)
    if schedule_entry is not None:
        picked = schedule_entry.get("selected_date_time")
        if isinstance(picked, int | float) and not isinstance(picked, bool):
            schedule_at = int(picked)
        else:
            schedule_at = None  # cleared: send now

    location_id = base.location_id
    account_entry = _entry(state_values, ComposeField.SUB_ACCOUNT)
    if account_entry is not None:
        selected = account_entry.get("selected_option")
        value = selected.get("value") if isinstance(selected, Mapping) else None
        location_id = value if isinstance(value, str) else ""

    return Draft(
        recipient=text(ComposeField.RECIPIENT, base.recipient),
        channel=channel,
        message=text(ComposeField.MESSAGE, base.message),
        subject=text(ComposeField.SUBJECT, base.subject),
        cc=text(ComposeField.CC, base.cc),
        bcc=text(ComposeField.BCC, base.bcc),
        html=text(ComposeField.HTML, base.html),
        from_number=text(ComposeField.FROM_NUMBER, base.from_number),
        schedule_at=schedule_at,
        location_id=location_id,
    )
