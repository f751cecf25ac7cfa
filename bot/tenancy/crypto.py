"""Encryption of stored OAuth tokens at rest (TOKEN_ENCRYPTION_KEY, a Fernet key).

The store only ever sees ciphertext: a copy of the database (a backup, a dump attached to a
ticket) gives no access to anyone's HighLevel account without the key.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.fernet import Fernet, InvalidToken
from pydantic import SecretStr

__all__ = ["TokenCipher", "TokenDecryptError", "check_key", "generate_key"]


class TokenDecryptError(ValueError):
    """A stored token does not decrypt with this key (another key, or a damaged value)."""


def generate_key() -> str:
    """A new random key, as `ghl-bridge keygen` prints it."""
    return Fernet.generate_key().decode("ascii")


def check_key(value: str) -> None:
    """Return if ``value`` is a Fernet key; else raise ValueError with one line saying why."""
    text = value.strip()
    if not text:
        raise ValueError("it is empty")
    if text != value:
        raise ValueError("it has spaces or a newline around it")
    try:
        raw = base64.b64decode(text.encode("ascii"), altchars=b"-_", validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise ValueError(
            "it is not URL-safe base64 (44 characters of A-Z a-z 0-9 - _ ending in '=')"
        ) from None
    if len(raw) != 32:
        raise ValueError(f"it decodes to {len(raw)} bytes, a Fernet key has 32")


class TokenCipher:
    """Encrypts and decrypts tokens with one Fernet key (AES-128-CBC + HMAC-SHA256)."""

    def __init__(self, key: SecretStr) -> None:
        check_key(key.get_secret_value())
        self._fernet = Fernet(key.get_secret_value().encode("ascii"))

    def encrypt(self, token: SecretStr) -> str:
        return self._fernet.encrypt(token.get_secret_value().encode("utf-8")).decode("ascii")

    def decrypt(self, stored: str) -> SecretStr:
        try:
            return SecretStr(self._fernet.decrypt(stored.encode("ascii")).decode("utf-8"))
        except (InvalidToken, UnicodeError):
            raise TokenDecryptError(
                "a stored token does not decrypt with TOKEN_ENCRYPTION_KEY "
                "(was the key changed? the sub-account must be connected again)"
            ) from None

    def __repr__(self) -> str:
        return "TokenCipher(<key hidden>)"
