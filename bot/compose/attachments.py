"""Which of a draft's Slack files can go with a send, said in one field error."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from bot.compose.labels import CHANNEL_LABELS
from bot.files import (
    ALLOWED_EXTENSIONS,
    MAX_FILES_PER_SEND,
    SlackFileRef,
    channel_takes_files,
    file_problem,
    upload_limit_bytes,
)
from bot.files.rules import extension_of, size_text
from bot.highlevel import MessageChannel

__all__ = ["FILE_EXTENSION_KEPT", "FILE_NAME_IN_ERRORS", "files_problem", "short_file_name"]

# A file's name in a field error, shortened (its extension kept) so the limit still shows.
FILE_NAME_IN_ERRORS = 40
FILE_EXTENSION_KEPT = 10  # a longer "extension" is part of the name, not a type


def short_file_name(name: str, limit: int) -> str:
    """`name` in at most `limit` characters, keeping its extension (what HighLevel checks)."""
    if len(name) <= limit:
        return name
    stem, dot, extension = name.rpartition(".")
    if dot and stem and len(extension) <= FILE_EXTENSION_KEPT:
        room = limit - len(extension) - 1
        if room >= 2:
            return stem[: room - 1] + "…" + "." + extension
    return name[: max(limit - 1, 0)] + "…"


def _names(files: Sequence[SlackFileRef], *, with_size: bool = False) -> str:
    shown = []
    for file in files:
        name = short_file_name(file.name, FILE_NAME_IN_ERRORS)
        shown.append(f"{name} ({size_text(file.size)})" if with_size else name)
    return ", ".join(shown)


def files_problem(files: Sequence[SlackFileRef], channel: MessageChannel) -> str | None:
    """Why these files can't go with a send on `channel`, naming each refused file and the
    limit or type, in one paragraph whose most useful part comes first (Slack shows 150
    characters of a field error); None when they all can."""
    if not files:
        return None
    label = CHANNEL_LABELS.get(channel, channel.value)
    parts: list[str] = []
    if len(files) > MAX_FILES_PER_SEND:
        extra = len(files) - MAX_FILES_PER_SEND
        parts.append(
            f"At most {MAX_FILES_PER_SEND} files go with one message; this one has "
            f"{len(files)}: remove {extra}."
        )
    shortened = [replace(f, name=short_file_name(f.name, FILE_NAME_IN_ERRORS)) for f in files]
    refused = [
        (file, problem)
        for file, short in zip(files, shortened, strict=True)
        if (problem := file_problem(short, channel, label)) is not None
    ]
    if len(refused) == 1:
        parts.append(refused[0][1])
    elif refused and not channel_takes_files(channel):
        parts.append(
            f"{label} messages can't carry files: remove {_names([f for f, _ in refused])}, "
            "or choose another channel."
        )
    elif refused:
        wrong_type = [f for f, _ in refused if extension_of(f.name) not in ALLOWED_EXTENSIONS]
        too_big = [f for f, _ in refused if f not in wrong_type]
        if too_big:
            limit = size_text(upload_limit_bytes(channel))
            parts.append(f"Over {label}'s {limit} limit: {_names(too_big, with_size=True)}.")
        if wrong_type:
            parts.append(f"HighLevel doesn't take the type of {_names(wrong_type)}.")
    return " ".join(parts) or None
