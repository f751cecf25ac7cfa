"""The composer's state that round-trips through Slack: its context in `private_metadata`
(`encode_context` / `decode_context`) and the draft in a submitted view's state (`read_draft`).
Pure functions, like the builder (`compose_builder`) whose views they read."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from bot.compose import (
    Choice,
    ComposeContext,
    ComposeField,
    ContactCard,
    Draft,
    ReplyContext,
    short_file_name,
)
from bot.files import MAX_FILES_PER_SEND, SlackFileRef
from bot.highlevel import EmailReplyMode, MessageChannel
from bot.ui.thread_builder import clip

PRIVATE_METADATA_MAX: Final = 3000
# Option values of the reply-mode and quiet-hours radio buttons.
REPLY_ONLY: Final = "reply"
REPLY_ALL: Final = "reply_all"
SEND_ANYWAY: Final = "send_anyway"
SCHEDULE_PREFIX: Final = "schedule:"
# The option a search answers with when HighLevel is slow or nothing matches: not a choice.
KEEP_TYPING: Final = "__keep_typing__"
CONTACT_LABEL_MAX: Final = 80  # in private_metadata; the rest of a long name is not needed
CARD_FIELD_MAX: Final = 100  # each of a contact card's fields, in private_metadata
CHOICE_LABEL_MAX: Final = 75  # Slack's option text limit
APPOINTMENTS_MAX: Final = 10
# A message file's name in private_metadata: shortened step by step (extension kept) until the
# context fits; then files are left out from the end, and the composer says how many.
MESSAGE_FILE_NAME_STEPS: Final = (80, 40, 20)
MIMETYPE_MAX: Final = 100
# A message file is offered as a checkbox whose value is its id (Slack: at most 150 characters).
FILE_ID_MAX: Final = 150
# File objects Slack shows for what can't be fetched: a deleted file, a link to an external
# service, a file hidden by a free workspace's limit.
_UNFETCHABLE_MODES: Final = frozenset({"tombstone", "external", "hidden_by_limit"})


# ---------------------------------------------------------------- private_metadata


def _packed_files(context: ComposeContext) -> dict[str, Any]:
    if not context.message_files and not context.message_files_left_out:
        return {}
    data: dict[str, Any] = {
        "f": [[f.id, f.name, f.mimetype, f.size] for f in context.message_files]
    }
    if context.message_files_left_out:
        data["fx"] = context.message_files_left_out
    return data


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _encoded_length(context: ComposeContext) -> int:
    return len(_json(_context_data(context)))


def fit_context(context: ComposeContext) -> ComposeContext:
    """`context` with its message files made to fit private_metadata: at most ten, ids a
    checkbox can carry, names shortened (extension kept), and, if still too long, fewer files,
    counted in `message_files_left_out` so the composer can say so."""
    if not context.message_files:
        return context
    usable = [f for f in context.message_files if f.id and len(f.id) <= FILE_ID_MAX]
    kept = usable[:MAX_FILES_PER_SEND]
    left_out = context.message_files_left_out + len(context.message_files) - len(kept)
    trimmed = [dataclasses.replace(f, mimetype=f.mimetype[:MIMETYPE_MAX]) for f in kept]
    fitted = context
    for limit in MESSAGE_FILE_NAME_STEPS:
        files = tuple(dataclasses.replace(f, name=short_file_name(f.name, limit)) for f in trimmed)
        fitted = dataclasses.replace(context, message_files=files, message_files_left_out=left_out)
        if _encoded_length(fitted) <= PRIVATE_METADATA_MAX:
            return fitted
    files = fitted.message_files
    while files and _encoded_length(fitted) > PRIVATE_METADATA_MAX:
        files = files[:-1]
        left_out += 1
        fitted = dataclasses.replace(fitted, message_files=files, message_files_left_out=left_out)
    return fitted


def encode_context(context: ComposeContext) -> str:
    """`context` as compact JSON for private_metadata (at most 3000 characters); message
    files that do not fit are left out (see `fit_context`)."""
    text = _json(_context_data(fit_context(context)))
    if len(text) > PRIVATE_METADATA_MAX:
        # Only absurd ids get here; cutting them would point the send at the wrong thread.
        raise ValueError(
            f"compose context is {len(text)} characters; Slack keeps {PRIVATE_METADATA_MAX}"
        )
    return text


def _context_data(context: ComposeContext) -> dict[str, Any]:
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
            ("rc", reply.reply_all_cc or None),
        ):
            if value is not None:
                packed[key] = value
        data["r"] = packed
    data.update(_packed_files(context))
    data.update(_packed_extras(context))
    return data


def _packed_extras(context: ComposeContext) -> dict[str, Any]:
    data: dict[str, Any] = {}
    card = context.contact
    if card is not None:
        data["ct"] = [
            card.id,
            *(
                clip(value, CARD_FIELD_MAX)
                for value in (
                    card.first_name,
                    card.last_name,
                    card.name,
                    card.email,
                    card.phone,
                    card.company_name,
                    card.timezone,
                )
            ),
        ]
    if context.new_contact:
        data["n"] = 1
    if context.appointments:
        data["ap"] = [
            [a.id, clip(a.label, CHOICE_LABEL_MAX)] for a in context.appointments[:APPOINTMENTS_MAX]
        ]
    if context.template is not None:
        data["tp"] = [context.template.id, clip(context.template.label, CHOICE_LABEL_MAX)]
    for key, value in (("v", context.revision or None),):
        if value is not None:
            data[key] = value
    return data


def _strings(value: Any, length: int, what: str) -> list[str]:
    if not (
        isinstance(value, list)
        and len(value) == length
        and all(isinstance(item, str) for item in value)
    ):
        raise ValueError(f"compose context {what} is not {length} strings")
    return value


def _unpacked_extras(data: dict[str, Any]) -> dict[str, Any]:
    extras: dict[str, Any] = {}
    card = _take(data, "ct", list)
    if card is not None:
        fields = _strings(card, 8, "contact")
        extras["contact"] = ContactCard(*fields)
    extras["new_contact"] = bool(_take(data, "n", int))
    appointments = _take(data, "ap", list)
    if appointments is not None:
        extras["appointments"] = tuple(
            Choice(*_strings(item, 2, "appointment")) for item in appointments
        )
    template = _take(data, "tp", list)
    if template is not None:
        extras["template"] = Choice(*_strings(template, 2, "template"))
    revision = _take(data, "v", int) or 0
    if revision < 0:
        raise ValueError("compose context 'v' is negative")
    extras["revision"] = revision
    extras["custom_provider_id"] = _take(data, "cp", str) or ""
    return extras


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
    files = _unpacked_files(_take(data, "f", list))
    left_out = _take(data, "fx", int) or 0
    if left_out < 0:
        raise ValueError("compose context 'fx' is negative")
    extras = _unpacked_extras(data)
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
            reply_all_cc=_take(packed, "rc", str) or "",
        )
        _no_leftovers(packed)
    return ComposeContext(
        channel_id=channel_id,
        thread_ts=thread_ts,
        reply=reply,
        available=available,
        message_files=files,
        message_files_left_out=left_out,
        **extras,
    )


def _unpacked_files(packed: list[Any] | None) -> tuple[SlackFileRef, ...]:
    if packed is None:
        return ()
    files: list[SlackFileRef] = []
    for item in packed:
        if not (isinstance(item, list) and len(item) == 4):
            raise ValueError("compose context file is not [id, name, mimetype, size]")
        file_id, name, mimetype, size = item
        if not (
            isinstance(file_id, str)
            and file_id
            and isinstance(name, str)
            and isinstance(mimetype, str)
            and isinstance(size, int)
            and not isinstance(size, bool)
            and size >= 0
        ):
            raise ValueError("compose context file has a bad field")
        files.append(SlackFileRef(id=file_id, name=name, mimetype=mimetype, size=size))
    return tuple(files)


# ---------------------------------------------------------------- Slack file objects


def file_ref(obj: Any) -> SlackFileRef | None:
    """A Slack file object (a message's `files`, a file_input's state) as a `SlackFileRef`;
    None for what can't be sent: not a file object, or deleted, external or hidden."""
    if not isinstance(obj, Mapping):
        return None
    file_id = obj.get("id")
    if not isinstance(file_id, str) or not file_id:
        return None
    if obj.get("mode") in _UNFETCHABLE_MODES or obj.get("is_external") is True:
        return None
    name = next(
        (v for v in (obj.get("name"), obj.get("title")) if isinstance(v, str) and v.strip()),
        file_id,
    )
    mimetype = obj.get("mimetype")
    size = obj.get("size")
    return SlackFileRef(
        id=file_id,
        name=name,
        mimetype=mimetype if isinstance(mimetype, str) else "",
        size=size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else 0,
    )


def file_refs(objects: Any) -> tuple[SlackFileRef, ...]:
    """The sendable files among Slack file objects, in order, each once."""
    if not isinstance(objects, list):
        return ()
    return _unique(ref for obj in objects if (ref := file_ref(obj)) is not None)


def _unique(files: Iterable[SlackFileRef]) -> tuple[SlackFileRef, ...]:
    seen: set[str] = set()
    kept: list[SlackFileRef] = []
    for file in files:
        if file.id not in seen:
            seen.add(file.id)
            kept.append(file)
    return tuple(kept)


# ---------------------------------------------------------------- reading a submission


REVISION_MARK: Final = "~"


def block_id_of(field: ComposeField, revision: int = 0) -> str:
    """The block_id of `field`'s input: renamed by a revision so that Slack shows the new
    initial value (a template's text) instead of keeping what the input held."""
    return f"{field.value}{REVISION_MARK}{revision}" if revision else field.value


def field_of_block(block_id: str) -> str:
    """The field a block_id belongs to (its revision dropped)."""
    return block_id.split(REVISION_MARK, 1)[0]


def _entry(
    state_values: Mapping[str, Mapping[str, Mapping[str, Any]]], field: ComposeField
) -> Mapping[str, Any] | None:
    block = state_values.get(field.value)
    if block is None:
        block = next((v for k, v in state_values.items() if field_of_block(k) == field.value), None)
    entry = block.get(field.value) if isinstance(block, Mapping) else None
    return entry if isinstance(entry, Mapping) else None


def _selected(
    state_values: Mapping[str, Mapping[str, Mapping[str, Any]]], field: ComposeField
) -> str | None:
    """The value of the option chosen in a select or radio input; None when the block is
    not in the view, "" when nothing is chosen."""
    entry = _entry(state_values, field)
    if entry is None:
        return None
    selected = entry.get("selected_option")
    value = selected.get("value") if isinstance(selected, Mapping) else None
    return value if isinstance(value, str) else ""


def _files(
    state_values: Mapping[str, Mapping[str, Mapping[str, Any]]],
    base: Draft,
    message_files: Sequence[SlackFileRef],
) -> tuple[SlackFileRef, ...]:
    """The message files still checked, then the files picked, each once (more than ten are
    kept: `check_draft` says so)."""
    from_message = {f.id for f in message_files}
    kept = list(message_files)
    entry = _entry(state_values, ComposeField.MESSAGE_FILES)
    if entry is not None:
        selected = entry.get("selected_options")
        ids = {
            o.get("value")
            for o in (selected if isinstance(selected, list) else [])
            if isinstance(o, Mapping)
        }
        kept = [f for f in message_files if f.id in ids]
    entry = _entry(state_values, ComposeField.FILES)
    if entry is not None:
        picked = list(file_refs(entry.get("files")))
    else:
        picked = [f for f in base.files if f.id not in from_message]
    return _unique([*kept, *picked])


def read_draft(
    state_values: Mapping[str, Mapping[str, Mapping[str, Any]]],
    *,
    fallback: Draft | None = None,
    message_files: Sequence[SlackFileRef] = (),
) -> Draft:
    """The `Draft` in a submitted (or re-rendered) composer's `view.state.values`.

    A block missing from the view (Email fields for an SMS, the recipient in a reply) keeps
    `fallback`'s value; a block that is there but empty reads as empty. `message_files` are
    the context's (`ComposeContext.message_files`): those still checked come first in
    `Draft.files`, then the files picked in the file input.
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

    location_id = _selected(state_values, ComposeField.SUB_ACCOUNT)
    # The recipient is a search (an external_select) whose option values are recipients; a
    # plain text input (older views) carries the text itself.
    recipient_entry = _entry(state_values, ComposeField.RECIPIENT)
    if recipient_entry is not None and "selected_option" in recipient_entry:
        recipient = _selected(state_values, ComposeField.RECIPIENT) or ""
        recipient = "" if recipient == KEEP_TYPING else recipient
    else:
        recipient = text(ComposeField.RECIPIENT, base.recipient)
    reply_mode = _selected(state_values, ComposeField.REPLY_MODE)
    reply_all = (
        base.reply_all
        if reply_mode is None
        else {REPLY_ALL: True, REPLY_ONLY: False}.get(reply_mode)
    )
    quiet = _selected(state_values, ComposeField.QUIET_HOURS)
    send_anyway = base.send_anyway if quiet is None else quiet == SEND_ANYWAY
    if quiet and quiet.startswith(SCHEDULE_PREFIX) and schedule_at is None:
        moment = quiet.removeprefix(SCHEDULE_PREFIX)
        schedule_at = int(moment) if moment.isdigit() else None

    return Draft(
        recipient=recipient,
        channel=channel,
        message=text(ComposeField.MESSAGE, base.message),
        subject=text(ComposeField.SUBJECT, base.subject),
        cc=text(ComposeField.CC, base.cc),
        bcc=text(ComposeField.BCC, base.bcc),
        html=text(ComposeField.HTML, base.html),
        from_number=text(ComposeField.FROM_NUMBER, base.from_number),
        schedule_at=schedule_at,
        location_id=base.location_id if location_id is None else location_id,
        files=_files(state_values, base, message_files),
        first_name=text(ComposeField.FIRST_NAME, base.first_name),
        last_name=text(ComposeField.LAST_NAME, base.last_name),
        template_id=_or(_selected(state_values, ComposeField.TEMPLATE), base.template_id).replace(
            KEEP_TYPING, ""
        ),
        send_anyway=send_anyway,
        email_from=text(ComposeField.EMAIL_FROM, base.email_from),
        email_to=text(ComposeField.EMAIL_TO, base.email_to),
        to_number=text(ComposeField.TO_NUMBER, base.to_number),
        appointment_id=_or(_selected(state_values, ComposeField.APPOINTMENT), base.appointment_id),
        reply_all=reply_all,
    )


def _or(value: str | None, default: str) -> str:
    return default if value is None else value
