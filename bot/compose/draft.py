"""A draft: what a person typed in the composer, its checks, and who can receive what."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from bot.compose.attachments import files_problem
from bot.compose.labels import CHANNEL_LABELS, COMPOSER_CHANNELS, DND_KEYS, PHONE_CHANNELS
from bot.files import SlackFileRef, channel_takes_files
from bot.highlevel import Contact, EmailReplyMode, MessageChannel
from bot.recipients import (
    Recipient,
    RecipientError,
    normalise_email_list,
    parse_recipient,
)
from bot.sms import MAX_SMS_CHARACTERS, measure

MAX_MESSAGE_CHARACTERS = 10_000
MAX_SUBJECT_CHARACTERS = 250
MAX_NAME_CHARACTERS = 100
# A send scheduled further ahead than this is a slip (or a date in milliseconds).
MAX_SCHEDULE_AHEAD_SECONDS = 366 * 86_400


class ComposeField(enum.StrEnum):
    """The composer's inputs; each is also its block_id and action_id in the modal."""

    RECIPIENT = "recipient"
    CHANNEL = "channel"
    MESSAGE = "message"
    SUBJECT = "subject"
    CC = "cc"
    BCC = "bcc"
    HTML = "html"
    SCHEDULE = "schedule"
    FROM_NUMBER = "from_number"
    SUB_ACCOUNT = "sub_account"
    # A file_input: files the person picks for this send.
    FILES = "files"
    # Checkboxes: the files of the Slack message "Reply via HighLevel" was used on.
    MESSAGE_FILES = "message_files"
    # A new contact's name, asked when the recipient is a number or address HighLevel lacks.
    FIRST_NAME = "first_name"
    LAST_NAME = "last_name"
    # A HighLevel template of the sub-account (an external_select).
    TEMPLATE = "template"
    # The seed's fields a person may set: From/To address, To number, the appointment.
    EMAIL_FROM = "email_from"
    EMAIL_TO = "email_to"
    TO_NUMBER = "to_number"
    APPOINTMENT = "appointment"
    # Reply or reply all, in an email reply.
    REPLY_MODE = "reply_mode"
    # Inside the contact's quiet hours: schedule for when they end, or send now anyway.
    QUIET_HOURS = "quiet_hours"


@dataclass(frozen=True, slots=True)
class Draft:
    """What a person typed, or what the composer is prefilled with; not yet checked."""

    recipient: str = ""
    channel: MessageChannel = MessageChannel.SMS
    message: str = ""
    subject: str = ""
    cc: str = ""
    bcc: str = ""
    html: str = ""
    from_number: str = ""
    schedule_at: int | None = None  # UTC epoch seconds
    # The HighLevel sub-account (location) to send from; "" lets the channel decide.
    location_id: str = ""
    # Slack files to send with the message, in the order picked.
    files: tuple[SlackFileRef, ...] = ()
    # A new contact's name (the recipient is a number or address HighLevel does not know).
    first_name: str = ""
    last_name: str = ""
    # The HighLevel template the message came from ("" none); sent as templateId when unchanged.
    template_id: str = ""
    # The person chose to send inside the contact's quiet hours (kept in the audit trail).
    send_anyway: bool = False
    # Seed fields a person may set: From/To address (email), To number (SMS, WhatsApp), the
    # appointment the message is about, and reply or reply all (email replies; None: as opened).
    email_from: str = ""
    email_to: str = ""
    to_number: str = ""
    appointment_id: str = ""
    reply_all: bool | None = None
    # Merge fields are filled and the signature added (what the composer's preview showed).
    finished: bool = False
    # The custom provider a Custom send goes through (the contact's conversation's).
    conversation_provider_id: str = ""


@dataclass(frozen=True, slots=True)
class ContactCard:
    """What the composer keeps of a known contact: enough to fill merge fields and to place
    them in a time zone without asking HighLevel again on every keystroke."""

    id: str
    first_name: str = ""
    last_name: str = ""
    name: str = ""
    email: str = ""
    phone: str = ""
    company_name: str = ""
    timezone: str = ""

    @classmethod
    def of(cls, contact: Contact) -> ContactCard:
        return cls(
            id=contact.id,
            first_name=contact.first_name or "",
            last_name=contact.last_name or "",
            name=contact.name or "",
            email=contact.email or "",
            phone=contact.phone or "",
            company_name=contact.company_name or "",
            timezone=contact.timezone or "",
        )

    def as_contact(self) -> Contact:
        return Contact(
            id=self.id,
            first_name=self.first_name or None,
            last_name=self.last_name or None,
            name=self.name or None,
            email=self.email or None,
            phone=self.phone or None,
            company_name=self.company_name or None,
            timezone=self.timezone or None,
        )


@dataclass(frozen=True, slots=True)
class Choice:
    """An option the composer offers that it had to look up (an appointment): id and label."""

    id: str
    label: str


@dataclass(frozen=True, slots=True)
class ReplyContext:
    """A reply into an existing thread: who, and for email which mailbox thread it joins."""

    thread_id: int
    contact_id: str
    contact_label: str
    email_thread_id: str | None = None
    reply_message_id: str | None = None
    email_reply_mode: EmailReplyMode | None = None
    # The thread's sub-account; "" in what was saved before sub-accounts were kept here.
    location_id: str = ""
    # The CC a reply all implies (the answered email's other recipients), "" when none.
    reply_all_cc: str = ""


@dataclass(frozen=True, slots=True)
class ComposeContext:
    """Where the composer was opened; travels in the modal's private_metadata."""

    channel_id: str
    thread_ts: str | None = None
    reply: ReplyContext | None = None
    # Channels the contact can receive, when the contact is known; None offers them all.
    available: tuple[MessageChannel, ...] | None = None
    # The files of the Slack message the composer was opened from ("Reply via HighLevel"),
    # offered as checkboxes (a file_input cannot be prefilled); names may be shortened to fit
    # private_metadata (the extension is kept).
    message_files: tuple[SlackFileRef, ...] = ()
    # How many more files that message had than private_metadata could carry (shown as a note).
    message_files_left_out: int = 0
    # The recipient once looked up: a known contact, or a new one (then its name is asked).
    contact: ContactCard | None = None
    new_contact: bool = False
    # The contact's upcoming appointments, for "About appointment".
    appointments: tuple[Choice, ...] = ()
    # The custom provider of the contact's conversation (a Custom send needs it).
    custom_provider_id: str = ""
    # The template chosen last (shown as the select's choice) and a counter that renames the
    # message inputs when a template replaces what they hold: Slack keeps what an input
    # holds across updates unless its block_id changes.
    template: Choice | None = None
    revision: int = 0


@dataclass(frozen=True, slots=True)
class CheckedDraft:
    """A draft that passed every check that needs no HighLevel call."""

    recipient: Recipient | None  # None when replying: the thread fixes the contact
    channel: MessageChannel
    message: str
    subject: str | None
    cc: tuple[str, ...]
    bcc: tuple[str, ...]
    html: str | None
    from_number: str | None
    schedule_at: int | None
    location_id: str = ""  # "" lets the channel decide (see Draft)
    files: tuple[SlackFileRef, ...] = ()
    first_name: str = ""
    last_name: str = ""
    template_id: str = ""
    send_anyway: bool = False
    email_from: str | None = None
    email_to: str | None = None
    to_number: str | None = None
    appointment_id: str | None = None
    reply_all: bool | None = None
    finished: bool = False
    conversation_provider_id: str | None = None


@dataclass(frozen=True, slots=True)
class FieldErrors:
    """Errors keyed by field, each a sentence for the person who typed it."""

    errors: dict[ComposeField, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.errors)


def _phone_field(
    draft: Draft,
    field: ComposeField,
    text: str,
    region: str,
    errors: dict[ComposeField, str],
    not_a_phone: str,
) -> str | None:
    """A From/To number in E.164 on a phone channel (None when empty or not one); a problem
    goes into `errors`."""
    if not text.strip() or draft.channel not in PHONE_CHANNELS:
        return None
    try:
        number = parse_recipient(text, region).value
    except RecipientError as exc:
        errors[field] = str(exc)
        return None
    if not number.startswith("+"):
        errors[field] = not_a_phone
        return None
    return number


def _address_field(
    field: ComposeField, text: str, errors: dict[ComposeField, str], is_email: bool
) -> str | None:
    """An email's single From/To address (None when empty or not an email)."""
    if not is_email:
        return None
    try:
        return one_address(text)
    except RecipientError as exc:
        errors[field] = str(exc)
        return None


def check_draft(
    draft: Draft, *, now: float, region: str, replying: bool = False
) -> CheckedDraft | FieldErrors:
    """Check what can be checked without HighLevel; return every field's error at once."""
    errors: dict[ComposeField, str] = {}
    recipient: Recipient | None = None
    if not replying:
        try:
            recipient = parse_recipient(draft.recipient, region)
        except RecipientError as exc:
            errors[ComposeField.RECIPIENT] = str(exc)

    is_email = draft.channel is MessageChannel.EMAIL
    message = draft.message.strip()
    html = draft.html.strip()
    # HighLevel sends attachments without text; an email still needs its subject.
    carries_files = bool(draft.files) and channel_takes_files(draft.channel)
    if not message and not (is_email and html) and not carries_files:
        errors[ComposeField.MESSAGE] = (
            "Write a message or attach a file."
            if channel_takes_files(draft.channel)
            else "Write a message."
        )
    elif len(message) > MAX_MESSAGE_CHARACTERS:
        errors[ComposeField.MESSAGE] = (
            f"That is {len(message):,} characters; the most is {MAX_MESSAGE_CHARACTERS:,}."
        )
    elif draft.channel is MessageChannel.SMS and measure(message).too_long:
        errors[ComposeField.MESSAGE] = (
            f"An SMS can be at most {MAX_SMS_CHARACTERS:,} characters; "
            f"this one is {len(message):,}. Shorten it or send it by email."
        )

    subject = draft.subject.strip()
    cc: list[str] = []
    bcc: list[str] = []
    if is_email:
        if not subject:
            errors[ComposeField.SUBJECT] = "An email needs a subject."
        elif len(subject) > MAX_SUBJECT_CHARACTERS:
            errors[ComposeField.SUBJECT] = (
                f"Keep the subject under {MAX_SUBJECT_CHARACTERS} characters."
            )
        for name, text, into in (
            (ComposeField.CC, draft.cc, cc),
            (ComposeField.BCC, draft.bcc, bcc),
        ):
            try:
                into.extend(normalise_email_list(text))
            except RecipientError as exc:
                errors[name] = str(exc)

    from_number = _phone_field(
        draft,
        ComposeField.FROM_NUMBER,
        draft.from_number,
        region,
        errors,
        "The sending number must be a phone number.",
    )

    if draft.schedule_at is not None and draft.schedule_at <= now + 30:
        errors[ComposeField.SCHEDULE] = "Pick a time in the future (at least a minute from now)."
    elif draft.schedule_at is not None and draft.schedule_at > now + MAX_SCHEDULE_AHEAD_SECONDS:
        errors[ComposeField.SCHEDULE] = "Pick a time within the next year."

    files_error = files_problem(draft.files, draft.channel)
    if files_error is not None:
        errors[ComposeField.FILES] = files_error

    for name, value in (
        (ComposeField.FIRST_NAME, draft.first_name),
        (ComposeField.LAST_NAME, draft.last_name),
    ):
        if len(value.strip()) > MAX_NAME_CHARACTERS:
            errors[name] = f"Keep the name under {MAX_NAME_CHARACTERS} characters."

    email_from = _address_field(ComposeField.EMAIL_FROM, draft.email_from, errors, is_email)
    email_to = _address_field(ComposeField.EMAIL_TO, draft.email_to, errors, is_email)
    to_number = _phone_field(
        draft,
        ComposeField.TO_NUMBER,
        draft.to_number,
        region,
        errors,
        "Send to a phone number here.",
    )

    if errors:
        return FieldErrors(errors)
    return CheckedDraft(
        recipient=recipient,
        channel=draft.channel,
        message=message,
        subject=subject if is_email else None,
        cc=tuple(cc),
        bcc=tuple(bcc),
        html=html if is_email and html else None,
        from_number=from_number,
        schedule_at=draft.schedule_at,
        location_id=draft.location_id,
        files=draft.files,
        first_name=draft.first_name.strip(),
        last_name=draft.last_name.strip(),
        template_id=draft.template_id,
        send_anyway=draft.send_anyway,
        email_from=email_from,
        email_to=email_to,
        to_number=to_number,
        appointment_id=draft.appointment_id or None,
        reply_all=draft.reply_all if is_email else None,
        finished=draft.finished,
        conversation_provider_id=(
            draft.conversation_provider_id or None
            if draft.channel is MessageChannel.CUSTOM
            else None
        ),
    )


def one_address(text: str) -> str | None:
    """One email address, normalised; None when empty."""
    addresses = normalise_email_list(text)
    if len(addresses) > 1:
        raise RecipientError("Give one address here.")
    return addresses[0] if addresses else None


def unreachable_reason(contact: Contact, channel: MessageChannel) -> str | None:
    """Why `contact` cannot receive `channel`, in a sentence; None when it can (as far as known)."""
    name = contact_label(contact)
    if channel in PHONE_CHANNELS and not contact.phone:
        label = CHANNEL_LABELS[channel]
        return f"{name} has no phone number in HighLevel, so {label} can't reach them."
    if channel is MessageChannel.EMAIL and not contact.email:
        return f"{name} has no email address in HighLevel."
    if contact.dnd:
        return f"{name} has Do Not Disturb on for all channels in HighLevel."
    key = DND_KEYS.get(channel)
    setting = (contact.dnd_settings or {}).get(key) if key else None
    if setting is not None and setting.status in {"active", "permanent"}:
        return f"{name} has Do Not Disturb on for {CHANNEL_LABELS[channel]} in HighLevel."
    return None


def available_channels(contact: Contact) -> tuple[MessageChannel, ...]:
    """The composer channels `contact` can receive."""
    return tuple(c for c in COMPOSER_CHANNELS if unreachable_reason(contact, c) is None)


def contact_label(contact: Contact) -> str:
    """The contact's name, else their phone or email, else their id."""
    full = " ".join(part for part in (contact.first_name, contact.last_name) if part)
    return contact.name or full or contact.phone or contact.email or contact.id


def contact_address(contact: Contact, channel: MessageChannel) -> str | None:
    """The number or address `channel` uses for `contact`."""
    return contact.email if channel is MessageChannel.EMAIL else contact.phone
