"""The composer's file inputs: the files of the message a reply was opened from (checkboxes)
and the file input, with what the chosen channel takes."""

from __future__ import annotations

from typing import Final

from slack_sdk.models.blocks import (
    Block,
    CheckboxesElement,
    ContextBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
)
from slack_sdk.models.blocks.block_elements import FileInputElement  # not re-exported

from bot.compose import CHANNEL_LABELS, ComposeContext, ComposeField, Draft, short_file_name
from bot.files import (
    ALLOWED_EXTENSIONS,
    MAX_FILES_PER_SEND,
    SlackFileRef,
    channel_takes_files,
    upload_limit_bytes,
)
from bot.files.rules import extension_of, size_text
from bot.highlevel import MessageChannel
from bot.ui.thread_builder import clip

HINT_MAX: Final = 2000
OPTION_TEXT_MAX: Final = 75
MESSAGE_FILES_NOTE_BLOCK: Final = "compose_message_files_note"
MESSAGE_FILES_LABEL: Final = "Attached from the message"
FILES_LABEL: Final = "Attach files"
FILE_TYPES_TEXT: Final = ", ".join(e.upper() for e in ALLOWED_EXTENSIONS)


def _label(channel: MessageChannel) -> str:
    return CHANNEL_LABELS.get(channel, channel.value)


def _context_line(block_id: str, text: str) -> ContextBlock:
    return ContextBlock(block_id=block_id, elements=[MarkdownTextObject(text=text, verbatim=True)])


def files_hint(channel: MessageChannel) -> str:
    """The line under the file input: what the chosen channel takes."""
    label = _label(channel)
    if not channel_takes_files(channel):
        return f"⚠ {label} messages can't carry files: remove them, or choose another channel."
    limit = size_text(upload_limit_bytes(channel))
    return (
        f"Up to {MAX_FILES_PER_SEND} files in all, each up to {limit} for {label}: "
        f"{FILE_TYPES_TEXT}."
    )


def _file_option(file: SlackFileRef) -> Option:
    kind = extension_of(file.name).upper()
    about = " · ".join(part for part in (kind, size_text(file.size) if file.size else "") if part)
    return Option(
        value=file.id,
        text=short_file_name(file.name, OPTION_TEXT_MAX),
        description=clip(about, OPTION_TEXT_MAX) if about else None,
    )


def file_blocks(draft: Draft, context: ComposeContext, channel: MessageChannel) -> list[Block]:
    """The message's files (checkboxes; a file_input cannot be prefilled) and the file input.

    The file input is left out for a channel that can't carry files, unless files are
    already picked in it: the block stays (same ids), so Slack keeps them through the
    re-render, and its hint and the submit check say what to do.
    """
    takes = channel_takes_files(channel)
    chosen = {f.id for f in draft.files}
    from_message = {f.id for f in context.message_files}
    blocks: list[Block] = []
    if context.message_files:
        options = [_file_option(f) for f in context.message_files]
        initial = [o for f, o in zip(context.message_files, options, strict=True) if f.id in chosen]
        hint = "Checked files go with the message." if takes else files_hint(channel)
        blocks.append(
            InputBlock(
                block_id=ComposeField.MESSAGE_FILES.value,
                label=MESSAGE_FILES_LABEL,
                element=CheckboxesElement(
                    action_id=ComposeField.MESSAGE_FILES.value,
                    options=options,
                    initial_options=initial or None,  # Slack refuses an empty list
                ),
                hint=hint,
                optional=True,
            )
        )
    if context.message_files_left_out:
        count = context.message_files_left_out
        files = "file" if count == 1 else "files"
        blocks.append(
            _context_line(
                MESSAGE_FILES_NOTE_BLOCK,
                f"⚠ {count} more {files} on that message can't be carried over here; "
                "download and attach them below if they should go too.",
            )
        )
    picked = any(f not in from_message for f in chosen)
    if takes or picked:
        blocks.append(
            InputBlock(
                block_id=ComposeField.FILES.value,
                label=FILES_LABEL,
                element=FileInputElement(
                    action_id=ComposeField.FILES.value,
                    filetypes=list(ALLOWED_EXTENSIONS),
                    max_files=MAX_FILES_PER_SEND,
                ),
                hint=clip(files_hint(channel), HINT_MAX),
                optional=True,
            )
        )
    return blocks
