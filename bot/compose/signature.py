"""The sender's signature (`SIGNATURE=— {first_name}, {team}`), filled from the Slack profile
and added to SMS, WhatsApp and email so the customer knows who answered."""

from __future__ import annotations

import html as html_lib
import re
import string
from dataclasses import dataclass

PLACEHOLDERS = frozenset(
    {"first_name", "last_name", "name", "real_name", "display_name", "title", "team", "email"}
)


@dataclass(frozen=True, slots=True)
class SignerProfile:
    """The Slack profile fields a signature may use ("" when not set)."""

    first_name: str = ""
    last_name: str = ""
    real_name: str = ""
    display_name: str = ""
    title: str = ""
    team: str = ""
    email: str = ""

    def values(self) -> dict[str, str]:
        name = self.real_name or self.display_name
        first = self.first_name or (name.split()[0] if name.split() else "")
        last = self.last_name or (" ".join(name.split()[1:]) if not self.first_name else "")
        return {
            "first_name": first,
            "last_name": last,
            "name": name,
            "real_name": self.real_name,
            "display_name": self.display_name or name,
            "title": self.title,
            "team": self.team,
            "email": self.email,
        }


@dataclass(frozen=True, slots=True)
class Signature:
    template: str
    fields: frozenset[str]

    @classmethod
    def parse(cls, template: str) -> Signature:
        """ValueError naming the problem when `template` is not a usable signature."""
        text = template.strip()
        if not text:
            raise ValueError("the signature is empty")
        try:
            names = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
        except ValueError as exc:
            raise ValueError(f"the signature is not a template: {exc}") from None
        unknown = sorted(names - PLACEHOLDERS)
        if unknown:
            allowed = ", ".join(f"{{{n}}}" for n in sorted(PLACEHOLDERS))
            raise ValueError(f"unknown signature field {{{unknown[0]}}}; use {allowed}")
        return cls(template=text, fields=frozenset(names))

    @property
    def needs_team(self) -> bool:
        return "team" in self.fields

    def render(self, profile: SignerProfile) -> str:
        """The signature for `profile`; separators left dangling by empty fields are dropped
        (`— {first_name}, {team}` without a team is `— Ada`)."""
        filled = self.template.format_map(profile.values())
        filled = re.sub(r"(\s*[,|·/]\s*)+$", "", filled)
        filled = re.sub(r"^(\s*[,|·/]\s*)+", "", filled)
        filled = re.sub(r"\s*,(\s*,)+", ",", filled)
        stripped = filled.strip()
        # Nothing but punctuation left: no profile to sign with.
        return stripped if any(ch.isalnum() for ch in stripped) else ""


def with_signature(message: str, signature: str) -> str:
    if not signature:
        return message
    return f"{message}\n{signature}" if message else signature


def with_html_signature(html: str, signature: str) -> str:
    if not signature:
        return html
    block = f"<p>{html_lib.escape(signature)}</p>"
    lowered = html.lower()
    at = lowered.rfind("</body>")
    return f"{html[:at]}{block}{html[at:]}" if at >= 0 else f"{html}{block}"


__all__ = ["PLACEHOLDERS", "Signature", "SignerProfile", "with_html_signature", "with_signature"]
