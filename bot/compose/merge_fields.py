"""Merge fields: `{{contact.first_name}}` and the others HighLevel documents, filled from the
contact, the sub-account and the person sending.

The bridge fills them itself (the API sends text as given), so a field it cannot fill is
refused before sending: no customer ever gets a literal `{{…}}`.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Mapping

from bot.highlevel import Contact

_FIELD = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
# An opening or closing pair left over once every whole `{{…}}` is taken out.
_STRAY = re.compile(r"\{\{|\}\}")

CONTACT_FIELDS = (
    "contact.id",
    "contact.name",
    "contact.full_name",
    "contact.first_name",
    "contact.last_name",
    "contact.email",
    "contact.phone",
    "contact.company_name",
    "contact.timezone",
)
LOCATION_FIELDS = ("location.name",)
USER_FIELDS = ("user.name", "user.first_name", "user.last_name", "user.email")
KNOWN_FIELDS = frozenset(CONTACT_FIELDS + LOCATION_FIELDS + USER_FIELDS)


def _name(raw: str) -> str:
    return "".join(raw.split()).lower()


def merge_fields_in(text: str) -> list[str]:
    """The merge fields `text` names, normalised (`{{ Contact.First_Name }}` →
    `contact.first_name`), each once, in order; a stray `{{` or `}}` counts as one."""
    names: list[str] = []
    for match in _FIELD.finditer(text):
        name = _name(match.group(1))
        if name not in names:
            names.append(name)
    if _STRAY.search(_FIELD.sub("", text)) and "{{" not in names:
        names.append("{{")
    return names


def unknown_merge_fields(text: str) -> list[str]:
    """The fields of `text` the bridge cannot fill."""
    return [name for name in merge_fields_in(text) if name not in KNOWN_FIELDS]


def merge_values(
    contact: Contact, *, location_name: str = "", user: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Every known field's value ("" when there is none)."""
    first = (contact.first_name or "").strip()
    last = (contact.last_name or "").strip()
    full = " ".join(part for part in (first, last) if part) or (contact.name or "").strip()
    values = {
        "contact.id": contact.id,
        "contact.name": full,
        "contact.full_name": full,
        "contact.first_name": first or (full.split()[0] if full else ""),
        "contact.last_name": last,
        "contact.email": contact.email or "",
        "contact.phone": contact.phone or "",
        "contact.company_name": contact.company_name or "",
        "contact.timezone": contact.timezone or "",
        "location.name": location_name,
    }
    for name in USER_FIELDS:
        values[name] = (user or {}).get(name, "")
    return values


def empty_merge_fields(text: str, values: Mapping[str, str]) -> list[str]:
    """The known fields of `text` that `values` leaves empty."""
    return [n for n in merge_fields_in(text) if n in KNOWN_FIELDS and not values.get(n)]


def fill_merge_fields(text: str, values: Mapping[str, str], *, html: bool = False) -> str:
    """`text` with each field replaced by its value (escaped in HTML); a field without a
    value becomes empty. Callers refuse unknown fields first (`unknown_merge_fields`)."""

    def value(match: re.Match[str]) -> str:
        filled = values.get(_name(match.group(1)), "")
        return html_lib.escape(filled) if html else filled

    return _FIELD.sub(value, text)


__all__ = [
    "KNOWN_FIELDS",
    "empty_merge_fields",
    "fill_merge_fields",
    "merge_fields_in",
    "merge_values",
    "unknown_merge_fields",
]
