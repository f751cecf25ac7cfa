"""The composer's blocks that need a known contact or a lookup: the recipient search, a new
contact's name, templates, the seed's delivery fields (From/To address, To number, the
appointment), reply or reply all, the preview of what is sent, and the quiet-hours choice.
Pure functions, used by `compose_builder.compose_view`."""

from __future__ import annotations

from typing import Final

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    ExternalDataSelectElement,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    RadioButtonsElement,
    SectionBlock,
    StaticSelectElement,
)

from bot.compose import ComposeContext, ComposeField, Draft, ReplyContext
from bot.compose.finish import Preview, QuietChoice
from bot.highlevel import EmailReplyMode, MessageChannel
from bot.ui.compose_state import (
    REPLY_ALL,
    REPLY_ONLY,
    SCHEDULE_PREFIX,
    SEND_ANYWAY,
)
from bot.ui.thread_builder import clip, escape_clipped

OPTION_TEXT_MAX: Final = 75
SECTION_TEXT_MAX: Final = 3000
PREVIEW_BLOCK: Final = "compose_preview"
PREVIEW_NOTE_BLOCK: Final = "compose_preview_note"
PREVIEW_WARNING_BLOCK: Final = "compose_preview_warning"
RECIPIENT_PLACEHOLDER: Final = "Name, phone, email or company"
RECIPIENT_HINT: Final = (
    "Type to search the sub-account's contacts, or a new phone number or email address."
)
TEMPLATE_HINT: Final = "Fills the message (and an email's subject and HTML); edit it freely."


def _option(value: str, text: str, description: str | None = None) -> Option:
    return Option(
        value=value,
        text=clip(text, OPTION_TEXT_MAX),
        description=clip(description, OPTION_TEXT_MAX) if description else None,
    )


def recipient_block(draft: Draft, context: ComposeContext, label: str | None) -> InputBlock:
    """The recipient as a search over the sub-account's contacts (`options` listener)."""
    initial = _option(draft.recipient, label or draft.recipient) if draft.recipient else None
    return InputBlock(
        block_id=ComposeField.RECIPIENT.value,
        label="To",
        element=ExternalDataSelectElement(
            action_id=ComposeField.RECIPIENT.value,
            placeholder=RECIPIENT_PLACEHOLDER,
            initial_option=initial,
            min_query_length=1,
        ),
        hint=RECIPIENT_HINT,
        optional=False,
        dispatch_action=True,  # the app narrows the channels to what the contact can receive
    )


def new_contact_blocks(draft: Draft) -> list[Block]:
    """A new contact's first and last name (optional; HighLevel keeps them on the contact)."""
    return [
        InputBlock(
            block_id=field.value,
            label=label,
            element=PlainTextInputElement(
                action_id=field.value, initial_value=value or None, max_length=100
            ),
            optional=True,
            hint=hint,
        )
        for field, label, value, hint in (
            (
                ComposeField.FIRST_NAME,
                "New contact's first name",
                draft.first_name,
                "This number or address is new to HighLevel; a name makes it findable.",
            ),
            (ComposeField.LAST_NAME, "Last name", draft.last_name, None),
        )
    ]


def template_block(context: ComposeContext) -> InputBlock:
    """HighLevel's templates of the sub-account, searched as the person types."""
    chosen = context.template
    return InputBlock(
        block_id=ComposeField.TEMPLATE.value,
        label="Template",
        element=ExternalDataSelectElement(
            action_id=ComposeField.TEMPLATE.value,
            placeholder="Start from a HighLevel template",
            initial_option=_option(chosen.id, chosen.label) if chosen is not None else None,
            min_query_length=0,
        ),
        hint=TEMPLATE_HINT,
        optional=True,
        dispatch_action=True,  # the app fills the message from it
    )


def _text(
    field: ComposeField, label: str, value: str, placeholder: str, hint: str | None = None
) -> InputBlock:
    return InputBlock(
        block_id=field.value,
        label=label,
        element=PlainTextInputElement(
            action_id=field.value, initial_value=value or None, placeholder=placeholder
        ),
        hint=hint,
        optional=True,
    )


def email_address_blocks(
    draft: Draft, context: ComposeContext, default_from: str | None = None
) -> list[Block]:
    """From and To addresses of an email (the seed's emailFrom and emailTo); `default_from`:
    the sub-account's default From address (`/highlevel from`), named in the placeholder."""
    primary = context.contact.email if context.contact is not None else ""
    return [
        _text(
            ComposeField.EMAIL_FROM,
            "From address",
            draft.email_from,
            f"{clip(default_from, 100)}, the sub-account's default sender"
            if default_from
            else "the sub-account's default sender",
            "HighLevel sends only from a verified sender of the sub-account.",
        ),
        _text(
            ComposeField.EMAIL_TO,
            "To address",
            draft.email_to,
            clip(primary, 150) if primary else "the contact's primary address",
            "Another address of this contact, if not the primary one.",
        ),
    ]


def to_number_block(draft: Draft, context: ComposeContext) -> InputBlock:
    """A To number other than the contact's primary (the seed's toNumber)."""
    primary = context.contact.phone if context.contact is not None else ""
    return _text(
        ComposeField.TO_NUMBER,
        "Send to number",
        draft.to_number,
        f"{primary}, the contact's primary number" if primary else "the contact's primary number",
        "Another number of this contact, if not the primary one.",
    )


def appointment_block(draft: Draft, context: ComposeContext) -> InputBlock | None:
    """ "About appointment": the contact's upcoming appointments (the seed's appointmentId)."""
    if not context.appointments:
        return None
    options = {a.id: _option(a.id, a.label) for a in context.appointments}
    return InputBlock(
        block_id=ComposeField.APPOINTMENT.value,
        label="About appointment",
        element=StaticSelectElement(
            action_id=ComposeField.APPOINTMENT.value,
            placeholder="None",
            options=list(options.values()),
            initial_option=options.get(draft.appointment_id),
        ),
        optional=True,
    )


def reply_mode_block(draft: Draft, reply: ReplyContext) -> InputBlock:
    """Reply or reply all, in an email reply; reply all shows the CC it implies."""
    reply_all = (
        draft.reply_all
        if draft.reply_all is not None
        else reply.email_reply_mode is EmailReplyMode.REPLY_ALL
    )
    others = reply.reply_all_cc or "nobody else"
    options = {
        REPLY_ONLY: _option(REPLY_ONLY, "Reply", "to the customer only"),
        REPLY_ALL: _option(REPLY_ALL, "Reply all", f"also to {others}"),
    }
    return InputBlock(
        block_id=ComposeField.REPLY_MODE.value,
        label="Answer",
        element=RadioButtonsElement(
            action_id=ComposeField.REPLY_MODE.value,
            options=list(options.values()),
            initial_option=options[REPLY_ALL if reply_all else REPLY_ONLY],
        ),
        dispatch_action=True,  # the app sets the CC to what the choice implies
    )


def preview_blocks(preview: Preview, channel: MessageChannel) -> list[Block]:
    """The message exactly as it will be sent (merge fields filled, signature added)."""
    heading = "*Preview* (what the customer receives)"
    if preview.subject:
        heading += f"\n*Subject:* {escape_clipped(preview.subject, 300)}"
    body = escape_clipped(preview.message, SECTION_TEXT_MAX - len(heading) - 10) or "_(empty)_"
    quoted = "\n".join(f">{line}" for line in body.splitlines()) or ">"
    blocks: list[Block] = [
        SectionBlock(
            block_id=PREVIEW_BLOCK,
            text=MarkdownTextObject(text=clip(f"{heading}\n{quoted}", SECTION_TEXT_MAX)),
        )
    ]
    if preview.empty_fields:
        names = ", ".join(f"{{{{{name}}}}}" for name in preview.empty_fields)
        blocks.append(
            ContextBlock(
                block_id=PREVIEW_WARNING_BLOCK,
                elements=[
                    MarkdownTextObject(
                        text=clip(f"⚠ This contact has no value for {names}: left empty.", 3000),
                        verbatim=True,
                    )
                ],
            )
        )
    return blocks


def quiet_hours_block(quiet: QuietChoice, draft: Draft) -> InputBlock:
    """Inside the contact's quiet hours: schedule for when they end, or send now anyway."""
    options = {
        "schedule": _option(
            f"{SCHEDULE_PREFIX}{quiet.until}",
            f"Schedule for {quiet.until_text}",
            "when the quiet hours end",
        ),
        "now": _option(SEND_ANYWAY, "Send now anyway", "noted in the audit trail"),
    }
    initial = options["now"] if draft.send_anyway else None
    return InputBlock(
        block_id=ComposeField.QUIET_HOURS.value,
        label="Quiet hours",
        element=RadioButtonsElement(
            action_id=ComposeField.QUIET_HOURS.value,
            options=list(options.values()),
            initial_option=initial,
        ),
        hint=clip(
            f"It is {quiet.now_text} for {quiet.who}, inside the quiet hours "
            f"({quiet.window_text}). Choose when to send.",
            2000,
        ),
        optional=False,
    )
