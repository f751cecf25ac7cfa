"""Recipients as people type them: phone numbers in any common format, emails, or contact ids."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

import phonenumbers
from email_validator import EmailNotValidError, validate_email

# HighLevel ids are 20 alphanumerics; accept a little either side, but demand a digit and a letter
# so that an ordinary word is never taken for an id.
# HighLevel's ids are 20 random letters and digits: one in about 30 has no digit (the sandbox's
# "wlPbXBtGIdtqhfiNrlye"), and it still has capitals inside and small letters. A long word a
# person types has neither digits nor capitals after its first letter: it stays a name.
_CONTACT_ID = re.compile(
    r"^(?=.*[A-Za-z])(?=.*\d|.[A-Za-z0-9]*[A-Z])(?=.*[a-z]|.*\d)[A-Za-z0-9]{16,32}$"
)
_PHONE_CHARS = re.compile(r"^[+\d().\-\s]+$")
_PHONE_TOKEN = re.compile(r"^[+(]?[\d().\-]+$")
_MAX_PHONE_TOKENS = 6


class RecipientKind(enum.StrEnum):
    PHONE = "phone"
    EMAIL = "email"
    CONTACT_ID = "contact_id"


@dataclass(frozen=True, slots=True)
class Recipient:
    """A normalised recipient: E.164 phone, lower-cased email domain, or a contact id."""

    kind: RecipientKind
    value: str

    @property
    def label(self) -> str:
        return self.value


class RecipientError(ValueError):
    """The text is not a phone number, an email address or a contact id; says why, for a person."""


def parse_recipient(text: str, default_region: str) -> Recipient:
    """Parse one recipient typed by a person."""
    raw = text.strip()
    if not raw:
        raise RecipientError("Add a recipient: a phone number, an email address or a contact id.")
    if "@" in raw:
        return Recipient(RecipientKind.EMAIL, _email(raw))
    if _CONTACT_ID.match(raw):
        return Recipient(RecipientKind.CONTACT_ID, raw)
    if _PHONE_CHARS.match(raw):
        return Recipient(RecipientKind.PHONE, _phone(raw, default_region))
    raise RecipientError(
        f"“{_clip(raw)}” is not a phone number, an email address or a HighLevel contact id."
    )


def split_recipient(text: str, default_region: str) -> tuple[Recipient, str]:
    """Split `/sendsms` text into a recipient and the rest, which may be empty.

    The recipient may contain spaces, brackets, dots and dashes (`+1 (415) 555-0100 Running late`),
    so the longest run of leading phone-like words that makes a valid number wins.
    """
    words = text.strip().split(maxsplit=_MAX_PHONE_TOKENS)
    if not words:
        raise RecipientError("Add a recipient: a phone number, an email address or a contact id.")
    first = words[0]
    if "@" in first or _CONTACT_ID.match(first):
        return parse_recipient(first, default_region), _rest(text, 1)
    phone_words = 0
    for word in words[:_MAX_PHONE_TOKENS]:
        if not _PHONE_TOKEN.match(word):
            break
        phone_words += 1
    for count in range(phone_words, 0, -1):
        candidate = " ".join(words[:count])
        try:
            number = _phone(candidate, default_region)
        except RecipientError:
            continue
        return Recipient(RecipientKind.PHONE, number), _rest(text, count)
    # Nothing valid: let parse_recipient explain what was wrong with the first word(s).
    return parse_recipient(" ".join(words[: max(phone_words, 1)]), default_region), ""


def _rest(text: str, skip_words: int) -> str:
    parts = text.strip().split(maxsplit=skip_words)
    return parts[skip_words].strip() if len(parts) > skip_words else ""


def _phone(raw: str, default_region: str) -> str:
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException:
        raise RecipientError(f"“{_clip(raw)}” is not a phone number.") from None
    if not phonenumbers.is_valid_number(number):
        raise RecipientError(
            f"“{_clip(raw)}” is not a valid phone number"
            + ("" if raw.lstrip().startswith("+") else f" for region {default_region}")
            + ". Write it with its country code, like +1 415 555 0100."
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _email(raw: str) -> str:
    try:
        return validate_email(raw, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise RecipientError(f"“{_clip(raw)}” is not a valid email address: {exc}") from None


def normalise_email_list(text: str) -> list[str]:
    """Parse a comma, semicolon or space separated list of emails (CC, BCC)."""
    return [_email(part) for part in re.split(r"[,;\s]+", text.strip()) if part]


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
