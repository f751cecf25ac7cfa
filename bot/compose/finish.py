"""What a draft becomes before it goes: merge fields filled with the contact's values, the
sender's signature added, and whether it falls in the contact's quiet hours.

The composer shows the `Preview` this makes and the send uses the same function on the same
values, so what the preview shows is what is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from bot.compose.draft import ContactCard, Draft
from bot.compose.merge_fields import (
    empty_merge_fields,
    fill_merge_fields,
    merge_fields_in,
    merge_values,
    unknown_merge_fields,
)
from bot.compose.quiet_hours import QuietHours, contact_zone, format_local
from bot.compose.signature import with_html_signature, with_signature
from bot.highlevel import MessageChannel

# Channels the signature is added to (the "SMS/WhatsApp and email").
SIGNED_CHANNELS = frozenset({MessageChannel.SMS, MessageChannel.WHATSAPP, MessageChannel.EMAIL})


class UnknownMergeFieldsError(ValueError):
    """The text names merge fields the bridge cannot fill; nothing may go with `{{…}}` in it."""

    def __init__(self, fields: tuple[str, ...]) -> None:
        names = ", ".join(f"{{{{{name}}}}}" for name in fields)
        super().__init__(
            f"Unknown merge field {names}: fix or remove it"
            if len(fields) == 1
            else f"Unknown merge fields {names}: fix or remove them"
        )
        self.fields = fields


class ContactNeededError(ValueError):
    """Merge fields need the contact's values, and the contact is not known yet."""


@dataclass(frozen=True, slots=True)
class Preview:
    """What will be sent, exactly: shown in the composer before sending."""

    message: str
    subject: str | None = None
    html: str | None = None
    # Merge fields the contact has no value for (left empty), to warn about.
    empty_fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class QuietChoice:
    """The send falls in the contact's quiet hours: when they end, and how to say it."""

    until: int  # epoch seconds
    until_text: str  # "08:00 EST"
    now_text: str  # "23:05 EST"
    window_text: str  # "21:00 to 08:00"
    who: str


def uses_merge_fields(draft: Draft) -> bool:
    return any(merge_fields_in(text) for text in (draft.message, draft.subject, draft.html))


def check_merge_fields(draft: Draft) -> None:
    """UnknownMergeFieldsError when the message, subject or HTML names a field not filled."""
    unknown: list[str] = []
    for text in (draft.message, draft.subject, draft.html):
        unknown += [name for name in unknown_merge_fields(text) if name not in unknown]
    if unknown:
        raise UnknownMergeFieldsError(tuple(unknown))


def preview(
    draft: Draft,
    *,
    contact: ContactCard | None,
    location_name: str = "",
    sender: Mapping[str, str] | None = None,
    signature: str = "",
) -> Preview:
    """`draft`'s message, subject and HTML as they will be sent.

    Raises UnknownMergeFieldsError, and ContactNeededError when merge fields need a contact
    that is not known.
    """
    check_merge_fields(draft)
    values: dict[str, str] = {}
    empty: list[str] = []
    if uses_merge_fields(draft):
        if contact is None:
            raise ContactNeededError("merge fields need the contact")
        values = merge_values(contact.as_contact(), location_name=location_name, user=sender)
        for text in (draft.message, draft.subject, draft.html):
            empty += [name for name in empty_merge_fields(text, values) if name not in empty]
    message = fill_merge_fields(draft.message, values).strip()
    subject = " ".join(fill_merge_fields(draft.subject, values).split())
    html = fill_merge_fields(draft.html, values, html=True).strip()
    if signature and draft.channel in SIGNED_CHANNELS:
        message = with_signature(message, signature)
        if html:
            html = with_html_signature(html, signature)
    is_email = draft.channel is MessageChannel.EMAIL
    return Preview(
        message=message,
        subject=subject if is_email else None,
        html=html if is_email and html else None,
        empty_fields=tuple(empty),
    )


def changes_text(draft: Draft, signature: str) -> bool:
    """Whether merge fields or a signature make what is sent differ from what was typed."""
    return uses_merge_fields(draft) or bool(signature and draft.channel in SIGNED_CHANNELS)


def finished(draft: Draft, shown: Preview) -> Draft:
    """`draft` carrying the texts of its preview: what the outbox sends, as it was shown."""
    return replace(
        draft,
        finished=True,
        message=shown.message,
        subject=shown.subject if shown.subject is not None else draft.subject,
        html=shown.html if shown.html is not None else draft.html,
    )


def quiet_choice(
    channel: MessageChannel,
    schedule_at: int | None,
    *,
    quiet_hours: QuietHours | None,
    email_too: bool,
    now: float,
    contact_tz: str,
    location_tz: str,
    default_tz: str,
    who: str,
) -> QuietChoice | None:
    """When a send on `channel` now falls in the contact's quiet hours: the choice to offer.

    None when quiet hours are off, the channel is exempt (email, unless `email_too`), the
    send is scheduled already, or it is not quiet where the contact is.
    """
    if quiet_hours is None or schedule_at is not None:
        return None
    if channel is MessageChannel.EMAIL and not email_too:
        return None
    zone = contact_zone(contact_tz or None, location_tz or None, default_tz)
    moment = datetime.fromtimestamp(now, UTC)
    until = quiet_hours.quiet_until(moment, zone)
    if until is None:
        return None
    return QuietChoice(
        until=int(until.timestamp()),
        until_text=format_local(until),
        now_text=format_local(moment.astimezone(zone)),
        window_text=f"{quiet_hours.start:%H:%M} to {quiet_hours.end:%H:%M}",
        who=who,
    )
