"""TokenCipher and TOKEN_ENCRYPTION_KEY checks."""

from __future__ import annotations

import base64

import pytest
from pydantic import SecretStr

from bot.tenancy.crypto import TokenCipher, TokenDecryptError, check_key, generate_key


def test_round_trip_hides_the_token() -> None:
    cipher = TokenCipher(SecretStr(generate_key()))
    token = SecretStr("at-" + "x" * 40)
    stored = cipher.encrypt(token)
    assert "at-" not in stored and "xxxx" not in stored
    assert stored != cipher.encrypt(token)  # a fresh IV each time
    assert cipher.decrypt(stored).get_secret_value() == token.get_secret_value()
    assert "key" in repr(cipher) and generate_key() not in repr(cipher)


def test_another_key_cannot_decrypt() -> None:
    stored = TokenCipher(SecretStr(generate_key())).encrypt(SecretStr("at-secret"))
    with pytest.raises(TokenDecryptError, match="TOKEN_ENCRYPTION_KEY") as caught:
        TokenCipher(SecretStr(generate_key())).decrypt(stored)
    assert "at-secret" not in str(caught.value)
    with pytest.raises(TokenDecryptError):
        TokenCipher(SecretStr(generate_key())).decrypt("not a fernet token")


def test_generated_keys_pass_the_check() -> None:
    keys = {generate_key() for _ in range(5)}
    assert len(keys) == 5
    for key in keys:
        check_key(key)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("", "empty"),
        ("   ", "empty"),
        (" " + "A" * 43 + "=", "spaces"),
        ("not base64 at all!", "not URL-safe base64"),
        (base64.urlsafe_b64encode(b"k" * 16).decode(), "16 bytes, a Fernet key has 32"),
        (base64.urlsafe_b64encode(b"k" * 33).decode(), "33 bytes"),
        ("é" * 44, "not URL-safe base64"),
    ],
)
def test_bad_keys_say_why_in_one_line(value: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as caught:
        check_key(value)
    assert "\n" not in str(caught.value)
    with pytest.raises(ValueError, match=why):
        TokenCipher(SecretStr(value))
