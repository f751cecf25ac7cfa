"""The composer modal: a `Draft` rendered as Block Kit, and read back from `view.state.values`.

Every input's block_id and action_id are its `ComposeField` value, so a re-rendered view
(views.update after the channel changes) keeps what the person typed: Slack preserves an
input's state when its block_id and action_id stay the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    DateTimePickerElement,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    StaticSelectElement,
)
from slack_sdk.models.blocks.basic_components import DispatchActionConfig
from slack_sdk.models.views import View

from bot.compose import (
    CHANNEL_LABELS,
    COMPOSER_CHANNELS,
    MAX_SUBJECT_CHARACTERS,
    PHONE_CHANNELS,
    ComposeContext,
    ComposeField,
    ContactCard,
    Draft,
    FieldErrors,
)
from bot.compose.finish import Preview, QuietChoice
from bot.files import (
    channel_takes_files,
)
from bot.highlevel import MessageChannel
from bot.sms import MAX_SMS_CHARACTERS, measure
from bot.ui.compose_files_builder import file_blocks
from bot.ui.compose_sections import (
    PREVIEW_NOTE_BLOCK,
    appointment_block,
    email_address_blocks,
    new_contact_blocks,
    preview_blocks,
    quiet_hours_block,
    recipient_block,
    reply_mode_block,
    template_block,
    to_number_block,
)
from bot.ui.compose_state import block_id_of, encode_context, field_of_block, fit_context
from bot.ui.thread_builder import clip, escape_clipped

COMPOSE_CALLBACK_ID: Final = "compose"

# Slack's limits (docs.slack.dev reference/views/modal-views, reference/block-kit).
TITLE_MAX: Final = 24
ERROR_MESSAGE_MAX: Final = 150
HINT_MAX: Final = 2000

# Blocks that are not inputs; their ids must never collide with a ComposeField value.
TO_BLOCK: Final = "compose_to"
CHANNEL_NOTE_BLOCK: Final = "compose_channel_note"
EMAIL_THREAD_BLOCK: Final = "compose_email_thread"

CHANNEL_NOTE: Final = (
    "Channels this contact can't receive are left out "
    "(no phone number or email address, or Do Not Disturb is on)."
)
NO_CHANNEL_NOTE: Final = (
    "⚠ This contact can't receive any of these channels "
    "(no phone number or email address, or Do Not Disturb is on)."
)
EMAIL_MESSAGE_HINT: Final = "Plain text; add HTML below if you need formatting."
SCHEDULE_HINT: Final = "Leave empty to send now."

# What a moved error says it is about (see `field_errors`).
_FIELD_NAMES: Final = {
    ComposeField.RECIPIENT: "To",
    ComposeField.CHANNEL: "Channel",
    ComposeField.MESSAGE: "Message",
    ComposeField.SUBJECT: "Subject",
    ComposeField.CC: "CC",
    ComposeField.BCC: "BCC",
    ComposeField.HTML: "HTML",
    ComposeField.SCHEDULE: "Send later",
    ComposeField.FROM_NUMBER: "Send from",
    ComposeField.SUB_ACCOUNT: "Sub-account",
    ComposeField.FILES: "Files",
    ComposeField.MESSAGE_FILES: "Files from the message",
    ComposeField.FIRST_NAME: "First name",
    ComposeField.LAST_NAME: "Last name",
    ComposeField.TEMPLATE: "Template",
    ComposeField.EMAIL_FROM: "From address",
    ComposeField.EMAIL_TO: "To address",
    ComposeField.TO_NUMBER: "Send to number",
    ComposeField.APPOINTMENT: "About appointment",
    ComposeField.REPLY_MODE: "Answer",
    ComposeField.QUIET_HOURS: "Quiet hours",
}
# Where an error goes when its own block is not in the view, before the message block.
_SECOND_HOMES: Final = {ComposeField.FILES: ComposeField.MESSAGE_FILES}
# A static select offers at most 100 options (docs.slack.dev reference/block-kit/block-elements).
SELECT_OPTIONS_MAX: Final = 100
OPTION_TEXT_MAX: Final = 75
SUB_ACCOUNT_HINT: Final = (
    "Several HighLevel sub-accounts are connected and this channel is not linked to one. "
    "An admin can link it with /highlevel link."
)


@dataclass(frozen=True, slots=True)
class SubAccountOption:
    """A sub-account the composer offers: its location id and the name people know."""

    location_id: str
    label: str


# ---------------------------------------------------------------- the view


def _offered(context: ComposeContext) -> tuple[MessageChannel, ...]:
    return COMPOSER_CHANNELS if context.available is None else context.available


def _label(channel: MessageChannel) -> str:
    return CHANNEL_LABELS.get(channel, channel.value)


def _text_input(
    field: ComposeField,
    label: str,
    initial: str,
    *,
    optional: bool,
    placeholder: str | None = None,
    hint: str | None = None,
    multiline: bool = False,
    max_length: int | None = None,
    dispatch_on: str | None = None,
    revision: int = 0,
) -> InputBlock:
    element = PlainTextInputElement(
        action_id=field.value,
        placeholder=placeholder,
        initial_value=initial or None,
        multiline=multiline or None,
        max_length=max_length,  # Slack refuses a max_length above 3000
        dispatch_action_config=(
            DispatchActionConfig(trigger_actions_on=[dispatch_on]) if dispatch_on else None
        ),
    )
    return InputBlock(
        block_id=block_id_of(field, revision),
        label=label,
        element=element,
        hint=clip(hint, HINT_MAX) if hint else None,
        optional=optional,
        dispatch_action=True if dispatch_on else None,
    )


def message_hint(channel: MessageChannel, message: str) -> str | None:
    """The line under the message box: its SMS length, or what an email body is."""
    if channel is MessageChannel.EMAIL:
        return EMAIL_MESSAGE_HINT
    if channel in PHONE_CHANNELS:
        length = measure(message)
        plural = "" if length.segments == 1 else "s"
        hint = (
            f"{length.characters:,} characters · {length.segments} segment{plural} "
            f"({length.encoding})."
        )
        if channel is not MessageChannel.SMS:
            return hint
        if length.too_long:
            return (
                f"⚠ Too long for SMS: {length.characters:,} characters, the most is "
                f"{MAX_SMS_CHARACTERS:,}. Shorten it or send it by email."
            )
        return f"{hint} Up to {MAX_SMS_CHARACTERS:,} characters."
    return f"{len(message):,} characters." if message else None


def _title(context: ComposeContext) -> str:
    if context.reply is None:
        return "Send a message"
    name = context.reply.contact_label.strip() or "a contact"
    return clip(f"Reply to {name}", TITLE_MAX)


def _context_line(block_id: str, text: str) -> ContextBlock:
    return ContextBlock(block_id=block_id, elements=[MarkdownTextObject(text=text, verbatim=True)])


def _recipient_blocks(draft: Draft, context: ComposeContext) -> list[Block]:
    if context.reply is not None:
        name = escape_clipped(context.reply.contact_label.strip() or context.reply.contact_id, 200)
        return [_context_line(TO_BLOCK, f"To: *{name}*")]
    card = context.contact
    label = None
    if card is not None and draft.recipient in {card.id, card.phone, card.email}:
        label = recipient_label(card)
    blocks: list[Block] = [recipient_block(draft, context, label)]
    if context.new_contact:
        blocks += new_contact_blocks(draft)
    return blocks


def recipient_label(card: ContactCard) -> str:
    """A contact as the recipient search shows it: name · phone or email."""
    name = card.name or " ".join(p for p in (card.first_name, card.last_name) if p)
    reach = card.phone or card.email
    return " · ".join(part for part in (name, reach) if part) or card.id


def _channel_blocks(
    context: ComposeContext, offered: tuple[MessageChannel, ...], chosen: MessageChannel
) -> list[Block]:
    options = {ch: Option(value=ch.value, text=_label(ch)) for ch in offered}
    select = StaticSelectElement(
        action_id=ComposeField.CHANNEL.value,
        placeholder="Choose a channel",
        options=list(options.values()),
        initial_option=options[chosen],
    )
    blocks: list[Block] = [
        InputBlock(
            block_id=ComposeField.CHANNEL.value,
            label="Send by",
            element=select,
            dispatch_action=True,  # the app re-renders the Email-only / phone-only fields
        )
    ]
    if context.available is not None:
        if not context.available:
            blocks.append(_context_line(CHANNEL_NOTE_BLOCK, NO_CHANNEL_NOTE))
        elif any(ch not in context.available for ch in COMPOSER_CHANNELS):
            blocks.append(_context_line(CHANNEL_NOTE_BLOCK, CHANNEL_NOTE))
    return blocks


def _sub_account_block(draft: Draft, choices: Sequence[SubAccountOption]) -> InputBlock:
    options = {
        choice.location_id: Option(
            value=choice.location_id, text=clip(choice.label or choice.location_id, OPTION_TEXT_MAX)
        )
        for choice in choices[:SELECT_OPTIONS_MAX]
    }
    return InputBlock(
        block_id=ComposeField.SUB_ACCOUNT.value,
        label="Sub-account",
        element=StaticSelectElement(
            action_id=ComposeField.SUB_ACCOUNT.value,
            placeholder="Choose the sub-account to send from",
            options=list(options.values()),
            initial_option=options.get(draft.location_id),
        ),
        hint=SUB_ACCOUNT_HINT,
        # Slack will not submit the composer without a choice; the app re-checks anyway.
        optional=False,
        dispatch_action=True,  # the app looks the recipient up in the chosen sub-account
    )


def _email_blocks(
    draft: Draft, context: ComposeContext, default_from: str | None = None
) -> list[Block]:
    reply = context.reply
    blocks: list[Block] = [
        _text_input(
            ComposeField.SUBJECT,
            "Subject",
            draft.subject,
            optional=False,
            max_length=MAX_SUBJECT_CHARACTERS,
            revision=context.revision,
        ),
        _text_input(
            ComposeField.CC,
            "CC",
            draft.cc,
            optional=True,
            placeholder="comma-separated addresses",
            revision=context.revision,  # reply or reply all sets it
        ),
        _text_input(
            ComposeField.BCC,
            "BCC",
            draft.bcc,
            optional=True,
            placeholder="comma-separated addresses",
        ),
        _text_input(
            ComposeField.HTML,
            "HTML body",
            draft.html,
            optional=True,
            placeholder="<p>Hello…</p>",
            hint="Sent as the email's formatted body; the message above is its plain-text version.",
            multiline=True,
            revision=context.revision,
        ),
        *email_address_blocks(draft, context, default_from),
    ]
    if reply is not None and reply.email_reply_mode is not None:
        blocks.append(reply_mode_block(draft, reply))
        blocks.append(_context_line(EMAIL_THREAD_BLOCK, "Replies in the customer's email thread."))
    return blocks


def _schedule_block(draft: Draft, *, now: float, tz_hint: str | None) -> InputBlock:
    hint = SCHEDULE_HINT
    if draft.schedule_at is not None and draft.schedule_at <= now:
        hint = "That time has passed: pick a later one, or clear it to send now."
    if tz_hint:
        hint = f"{hint} {tz_hint.strip()}"
    return InputBlock(
        block_id=ComposeField.SCHEDULE.value,
        label="Send later",
        element=DateTimePickerElement(
            action_id=ComposeField.SCHEDULE.value, initial_date_time=draft.schedule_at
        ),
        hint=clip(hint, HINT_MAX),
        optional=True,
    )


def compose_view(
    draft: Draft,
    context: ComposeContext,
    *,
    now: float,
    tz_hint: str | None = None,
    sub_accounts: Sequence[SubAccountOption] = (),
    preview: Preview | None = None,
    preview_note: str | None = None,
    quiet: QuietChoice | None = None,
    default_from: str | None = None,
) -> View:
    """The composer modal for `draft`, opened (or re-rendered) in `context`.

    `sub_accounts`: the ones to choose from, when the channel does not decide (several
    connected, channel not linked); a reply never offers them (its thread decides).
    `preview`: the message as it will be sent, when merge fields or a signature change it
    (`preview_note`: why it can't be shown yet, or what to check in it);
    `quiet`: the send falls in the contact's quiet hours (the person chooses when);
    `default_from`: the sub-account's default From address (`/highlevel from`), if it has one.
    """
    context = fit_context(context)  # what private_metadata can carry is what is shown
    offered = _offered(context) or (draft.channel,)  # a select needs at least one option
    channel = draft.channel if draft.channel in offered else offered[0]
    is_email = channel is MessageChannel.EMAIL

    choose_account = bool(sub_accounts) and context.reply is None and context.thread_ts is None
    blocks: list[Block] = [
        *([_sub_account_block(draft, sub_accounts)] if choose_account else []),
        *_recipient_blocks(draft, context),
        *_channel_blocks(context, offered, channel),
        template_block(context),
        _text_input(
            ComposeField.MESSAGE,
            "Message",
            draft.message,
            # An email may carry its body in HTML alone, a send its files alone.
            optional=is_email or channel_takes_files(channel),
            multiline=True,
            hint=message_hint(channel, preview.message if preview else draft.message),
            dispatch_on="on_character_entered",  # the app refreshes the length hint
            revision=context.revision,
        ),
    ]
    if is_email:
        blocks += _email_blocks(draft, context, default_from)
    blocks += file_blocks(draft, context, channel)
    if channel in PHONE_CHANNELS:
        blocks.append(
            _text_input(
                ComposeField.FROM_NUMBER,
                "Send from",
                draft.from_number,
                optional=True,
                placeholder="+1 …, leave empty for the location's default number",
            )
        )
        blocks.append(to_number_block(draft, context))
    appointment = appointment_block(draft, context)
    if appointment is not None:
        blocks.append(appointment)
    blocks.append(_schedule_block(draft, now=now, tz_hint=tz_hint))
    if quiet is not None:
        blocks.append(quiet_hours_block(quiet, draft))
    if preview is not None:
        blocks += preview_blocks(preview, channel)
    if preview_note:
        blocks.append(_context_line(PREVIEW_NOTE_BLOCK, escape_clipped(preview_note, 2900)))

    return View(
        type="modal",
        callback_id=COMPOSE_CALLBACK_ID,
        title=_title(context),
        submit="Schedule" if draft.schedule_at is not None else "Send",
        close="Cancel",
        notify_on_close=False,
        private_metadata=encode_context(context),
        blocks=blocks,
    )


# ---------------------------------------------------------------- errors


def _fit(parts: list[str], limit: int) -> str:
    """`parts` joined in at most `limit` characters, each clipped to a fair share if needed."""
    joined = " ".join(parts)
    if len(joined) <= limit:
        return joined
    share = (limit - (len(parts) - 1)) // len(parts)
    return " ".join(clip(part, share) for part in parts)


def field_errors(
    errors: FieldErrors, view_blocks_present: Iterable[str] | None = None
) -> dict[str, str]:
    """`errors` for `response_action: "errors"`: block_id → message (at most 150 characters).

    An error for a block the view does not have (the recipient, in a reply) is shown on the
    message block, prefixed with what it is about, so it is never lost.
    """
    # A revised input's block_id carries its revision (see `block_id_of`).
    blocks = (
        {}
        if view_blocks_present is None
        else {field_of_block(b): b for b in view_blocks_present if isinstance(b, str)}
    )
    present = None if view_blocks_present is None else set(blocks)

    def block(field: ComposeField) -> str:
        return blocks.get(field.value, field.value)

    home = ComposeField.MESSAGE.value
    if present is not None and home not in present:
        home = next((f.value for f in ComposeField if f.value in present), home)
    home = blocks.get(home, home)
    own: dict[str, list[str]] = {}
    moved: dict[str, list[str]] = {}
    for field, message in errors.errors.items():
        second = _SECOND_HOMES.get(field)
        if present is None or field.value in present:
            own.setdefault(block(field), []).append(message)
        elif second is not None and second.value in present:
            own.setdefault(block(second), []).append(message)
        else:
            moved.setdefault(home, []).append(f"{_FIELD_NAMES[field]}: {message}")
    return {
        block: _fit(own.get(block, []) + moved.get(block, []), ERROR_MESSAGE_MAX)
        for block in {**own, **moved}
    }
