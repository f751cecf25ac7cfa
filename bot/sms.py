"""SMS length: characters and segments, as carriers count them."""

from __future__ import annotations

import math
from dataclasses import dataclass

# GSM 03.38 basic character set; the extension set costs two septets each.
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = frozenset("^{}\\[~]|€\f")

# Twilio and most carriers refuse a concatenated message past 1,600 characters (10 segments of
# UCS-2 fall below that; GSM-7 allows ~10 segments of 153).
MAX_SMS_CHARACTERS = 1600


@dataclass(frozen=True, slots=True)
class SmsLength:
    encoding: str  # "GSM-7" or "UCS-2"
    characters: int
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2
    segments: int

    @property
    def too_long(self) -> bool:
        return self.characters > MAX_SMS_CHARACTERS

    def describe(self) -> str:
        plural = "" if self.segments == 1 else "s"
        return f"{self.characters} characters · {self.segments} segment{plural} ({self.encoding})"


def measure(text: str) -> SmsLength:
    """Characters and segments of `text`: GSM-7 160/153 per segment, else UCS-2 70/67."""
    if all(ch in _GSM_BASIC or ch in _GSM_EXTENDED for ch in text):
        units = sum(2 if ch in _GSM_EXTENDED else 1 for ch in text)
        single, multi, encoding = 160, 153, "GSM-7"
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, multi, encoding = 70, 67, "UCS-2"
    segments = 0 if units == 0 else 1 if units <= single else math.ceil(units / multi)
    return SmsLength(encoding=encoding, characters=len(text), units=units, segments=segments)
