"""Composing a message: the draft a person types and its checks (`draft`), and what fills it
in before it goes: merge fields, the signature and quiet hours."""

from bot.compose.attachments import (
    FILE_EXTENSION_KEPT,
    FILE_NAME_IN_ERRORS,
    files_problem,
    short_file_name,
)
from bot.compose.draft import (
    MAX_MESSAGE_CHARACTERS,
    MAX_NAME_CHARACTERS,
    MAX_SCHEDULE_AHEAD_SECONDS,
    MAX_SUBJECT_CHARACTERS,
    CheckedDraft,
    Choice,
    ComposeContext,
    ComposeField,
    ContactCard,
    Draft,
    FieldErrors,
    ReplyContext,
    available_channels,
    check_draft,
    contact_address,
    contact_label,
    unreachable_reason,
)
from bot.compose.labels import CHANNEL_LABELS, COMPOSER_CHANNELS, DND_KEYS, PHONE_CHANNELS

__all__ = [
    "CHANNEL_LABELS",
    "COMPOSER_CHANNELS",
    "DND_KEYS",
    "FILE_EXTENSION_KEPT",
    "FILE_NAME_IN_ERRORS",
    "MAX_MESSAGE_CHARACTERS",
    "MAX_NAME_CHARACTERS",
    "MAX_SCHEDULE_AHEAD_SECONDS",
    "MAX_SUBJECT_CHARACTERS",
    "PHONE_CHANNELS",
    "CheckedDraft",
    "Choice",
    "ComposeContext",
    "ComposeField",
    "ContactCard",
    "Draft",
    "FieldErrors",
    "ReplyContext",
    "available_channels",
    "check_draft",
    "contact_address",
    "contact_label",
    "files_problem",
    "short_file_name",
    "unreachable_reason",
]
