"""Checking that a webhook really comes from HighLevel, and is fresh, before acting on it.

HighLevel signs the raw request body: ``x-ghl-signature`` is Ed25519 (current), ``x-wh-signature``
is RSA-SHA256 PKCS#1 v1.5 (legacy, to be retired in 2026). The bytes are verified exactly as
they arrived; re-serialised JSON would differ in whitespace or key order and fail.

JSON may carry a lone UTF-16 surrogate as an escape (``"\\ud800"``: JavaScript's JSON.stringify
writes one for half an emoji) and ``json.loads`` lets it through, but such a string cannot be
encoded as UTF-8, so neither SQLite nor Slack nor a log line could take it. Once the raw body has
been verified, every lone surrogate in the parsed payload becomes U+FFFD; nothing else changes.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.serialization import load_pem_public_key

__all__ = [
    "ED25519_HEADER",
    "RSA_HEADER",
    "RejectReason",
    "VerifiedWebhook",
    "WebhookRejected",
    "WebhookVerifier",
    "highlevel_rsa_key_pem",
    "repair_lone_surrogates",
]

ED25519_HEADER = "x-ghl-signature"
RSA_HEADER = "x-wh-signature"

RejectReason = Literal[
    "missing_signature", "bad_signature", "bad_json", "missing_webhook_id", "stale_timestamp"
]
Algorithm = Literal["ed25519", "rsa-sha256"]

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT_CHARACTER = "\ufffd"
# What JSON needs to hold for json.loads to give a lone surrogate: an escape of one, or one
# in the text itself (from bytes, json.loads decodes with "surrogatepass": in UTF-8 that is
# ED A0-BF). A false match only costs the walk over the payload.
_MAYBE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")
_MAYBE_SURROGATE_TEXT = re.compile(r"\\u[dD][89a-fA-F]|[\ud800-\udfff]")
# An ISO-8601 date ("2025-02-17T…"), which float() would refuse: read as one straight away.
_ISO_DATE = re.compile(r"\d{4}-")

# Above this a numeric timestamp is milliseconds: 1e11 seconds is the year 5138,
# 1e11 milliseconds is 1973.
_MILLISECONDS_FROM = 1e11


def highlevel_rsa_key_pem() -> str:
    """HighLevel's published RSA key for the legacy ``x-wh-signature``, shipped with the package."""
    return resources.files("bot").joinpath("keys", "highlevel-webhook-rsa.pem").read_text("ascii")


class WebhookRejected(Exception):
    """The webhook must not be acted on; ``reason`` is a short machine-readable word."""

    def __init__(self, reason: RejectReason) -> None:
        super().__init__(reason)
        self.reason: RejectReason = reason


@dataclass(frozen=True)
class VerifiedWebhook:
    """A webhook whose signature and timestamp checked out."""

    webhook_id: str
    event_type: str
    payload: dict[str, Any] = field(hash=False)
    algorithm: Algorithm
    timestamp: float
    """When HighLevel sent it, in epoch seconds."""


def _load_ed25519_key(pem: str) -> Ed25519PublicKey:
    key = load_pem_public_key(pem.strip().encode("ascii") + b"\n")
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("the Ed25519 webhook key is not an Ed25519 public key")
    return key


def _load_rsa_key(pem: str) -> RSAPublicKey:
    key = load_pem_public_key(pem.strip().encode("ascii") + b"\n")
    if not isinstance(key, RSAPublicKey):
        raise ValueError("the RSA webhook key is not an RSA public key")
    return key


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    # A plain dict is case-sensitive; HTTP header names are not.
    for key, candidate in headers.items():
        if key.lower() == name:
            return candidate
    return None


def _signature_bytes(value: str) -> bytes:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookRejected("bad_signature") from None


def _well_formed(text: str) -> str:
    return _LONE_SURROGATE.sub(REPLACEMENT_CHARACTER, text)


def repair_lone_surrogates(payload: dict[str, Any], json_read: bytes | str) -> None:
    """Make every string (keys too) of `payload`, which json.loads read from `json_read`,
    encodable as UTF-8, in place: each lone surrogate becomes U+FFFD.

    The walk over every string is skipped when `json_read` cannot have given one: the common
    case. Bytes are looked at only when json.loads read them as UTF-8 (a "{" then a byte other
    than NUL: its test for UTF-16 and -32).
    """
    if isinstance(json_read, str):
        maybe = _MAYBE_SURROGATE_TEXT.search(json_read) is not None
    else:
        utf8 = json_read[:1] == b"{" and json_read[1:2] != b"\x00"
        maybe = not utf8 or _MAYBE_SURROGATE.search(json_read) is not None
    if maybe:
        _replace_lone_surrogates(payload)


def _replace_lone_surrogates(payload: dict[str, Any]) -> None:
    """Every lone surrogate in `payload` replaced, in place.

    Iterative, so a deeply nested body that json.loads accepted cannot overflow the stack here.
    """
    pending: list[dict[str, Any] | list[Any]] = [payload]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            for key in list(node):
                value = node[key]
                fixed_key = _well_formed(key)
                if fixed_key != key:
                    del node[key]
                if isinstance(value, str):
                    value = _well_formed(value)
                elif isinstance(value, dict | list):
                    pending.append(value)
                node[fixed_key] = value
        else:
            for index, value in enumerate(node):
                if isinstance(value, str):
                    node[index] = _well_formed(value)
                elif isinstance(value, dict | list):
                    pending.append(value)


def _epoch_seconds(value: object) -> float | None:
    """Epoch seconds from an ISO-8601 string or an epoch number (seconds or milliseconds)."""
    number: float
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if _ISO_DATE.match(text):  # HighLevel's usual form, never a number
            return _iso_seconds(text)
        try:
            number = float(text)
        except ValueError:
            return _iso_seconds(text)
    else:
        return None
    if not math.isfinite(number):
        return None
    return number / 1000.0 if abs(number) >= _MILLISECONDS_FROM else number


def _iso_seconds(text: str) -> float | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class WebhookVerifier:
    """Verifies HighLevel webhooks: signature over the raw body, then ``webhookId`` and freshness.

    Rejecting duplicate ``webhookId``s is the caller's job (it needs storage).
    """

    def __init__(
        self,
        ed25519_public_key_pem: str,
        rsa_public_key_pem: str | None = None,
        *,
        max_age_seconds: float = 300,
        max_future_seconds: float = 60,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ed25519 = _load_ed25519_key(ed25519_public_key_pem)
        self._rsa = _load_rsa_key(
            rsa_public_key_pem if rsa_public_key_pem is not None else highlevel_rsa_key_pem()
        )
        self._max_age = max_age_seconds
        self._max_future = max_future_seconds
        self._clock = clock

    def verify(self, raw_body: bytes, headers: Mapping[str, str]) -> VerifiedWebhook:
        """The verified webhook, or `WebhookRejected` saying why not."""
        algorithm = self._check_signature(raw_body, headers)
        try:
            payload = json.loads(raw_body)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            raise WebhookRejected("bad_json") from None
        if not isinstance(payload, dict):
            raise WebhookRejected("bad_json")
        repair_lone_surrogates(payload, raw_body)
        webhook_id = payload.get("webhookId")
        if not isinstance(webhook_id, str) or not webhook_id:
            raise WebhookRejected("missing_webhook_id")
        sent_at = _epoch_seconds(payload.get("timestamp"))
        now = self._clock()
        # A missing or unreadable timestamp cannot be shown fresh: HighLevel always sends one.
        if sent_at is None or now - sent_at > self._max_age or sent_at - now > self._max_future:
            raise WebhookRejected("stale_timestamp")
        event_type = payload.get("type")
        return VerifiedWebhook(
            webhook_id=webhook_id,
            event_type=event_type if isinstance(event_type, str) else "",
            payload=payload,
            algorithm=algorithm,
            timestamp=sent_at,
        )

    def _check_signature(self, raw_body: bytes, headers: Mapping[str, str]) -> Algorithm:
        ed25519_signature = _header(headers, ED25519_HEADER)
        if ed25519_signature is not None:
            # No fallback to the legacy header: a bad current signature is a bad request.
            if self._ed25519_valid(_signature_bytes(ed25519_signature), raw_body):
                return "ed25519"
            raise WebhookRejected("bad_signature")
        legacy_signature = _header(headers, RSA_HEADER)
        if legacy_signature is None:
            raise WebhookRejected("missing_signature")
        signature = _signature_bytes(legacy_signature)
        if self._rsa_valid(signature, raw_body):
            return "rsa-sha256"
        # Reported in production: Ed25519 signatures sent under the legacy header name.
        if self._ed25519_valid(signature, raw_body):
            return "ed25519"
        raise WebhookRejected("bad_signature")

    def _ed25519_valid(self, signature: bytes, raw_body: bytes) -> bool:
        try:
            self._ed25519.verify(signature, raw_body)
        except InvalidSignature:
            return False
        return True

    def _rsa_valid(self, signature: bytes, raw_body: bytes) -> bool:
        try:
            self._rsa.verify(signature, raw_body, PKCS1v15(), SHA256())
        except InvalidSignature:
            return False
        return True
