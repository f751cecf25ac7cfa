"""HighLevel webhook verification, with real key pairs made here and signatures made here."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)
from multidict import CIMultiDict

from bot.settings import highlevel_webhook_key_pem
from bot.webhook_auth import (
    VerifiedWebhook,
    WebhookRejected,
    WebhookVerifier,
    highlevel_rsa_key_pem,
)

SENT_AT_TEXT = "2025-02-17T09:28:14.869Z"
SENT_AT = datetime(2025, 2, 17, 9, 28, 14, 869000, tzinfo=UTC).timestamp()
# A body as HighLevel formats it: compact, keys in its own order (not sorted).
BODY = (
    b'{"type":"InboundMessage","locationId":"loc1","body":"Hi there",'
    b'"contactId":"c1","messageType":"SMS","webhookId":"wh-123",'
    b'"timestamp":"2025-02-17T09:28:14.869Z"}'
)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def public_pem(key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def ed25519_signature(key: ed25519.Ed25519PrivateKey, body: bytes) -> str:
    return base64.b64encode(key.sign(body)).decode("ascii")


def rsa_signature(key: rsa.RSAPrivateKey, body: bytes) -> str:
    return base64.b64encode(key.sign(body, PKCS1v15(), SHA256())).decode("ascii")


@pytest.fixture(scope="module")
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    # HighLevel's key is 4096 bits; 2048 exercises the same code much faster.
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def clock() -> Clock:
    return Clock(SENT_AT + 30)


@pytest.fixture
def verifier(
    ed_key: ed25519.Ed25519PrivateKey, rsa_key: rsa.RSAPrivateKey, clock: Clock
) -> WebhookVerifier:
    return WebhookVerifier(public_pem(ed_key), public_pem(rsa_key), clock=clock)


def rejection(verifier: WebhookVerifier, body: bytes, headers: dict[str, str]) -> str:
    with pytest.raises(WebhookRejected) as rejected:
        verifier.verify(body, headers)
    assert str(rejected.value) == rejected.value.reason
    return rejected.value.reason


def signed_payload(key: ed25519.Ed25519PrivateKey, **fields: Any) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(fields).encode()
    return body, {"x-ghl-signature": ed25519_signature(key, body)}


# ---------------------------------------------------------------------- good signatures


def test_good_ed25519_signature_gives_the_webhook(
    verifier: WebhookVerifier, ed_key: ed25519.Ed25519PrivateKey
) -> None:
    webhook = verifier.verify(BODY, {"x-ghl-signature": ed25519_signature(ed_key, BODY)})

    assert isinstance(webhook, VerifiedWebhook)
    assert webhook.webhook_id == "wh-123"
    assert webhook.event_type == "InboundMessage"
    assert webhook.algorithm == "ed25519"
    assert webhook.timestamp == pytest.approx(SENT_AT, abs=1e-6)
    assert webhook.payload == json.loads(BODY)
    assert webhook.payload["body"] == "Hi there"


def test_good_legacy_rsa_signature_gives_the_webhook(
    verifier: WebhookVerifier, rsa_key: rsa.RSAPrivateKey
) -> None:
    webhook = verifier.verify(BODY, {"x-wh-signature": rsa_signature(rsa_key, BODY)})

    assert webhook.algorithm == "rsa-sha256"
    assert webhook.webhook_id == "wh-123"
    assert webhook.event_type == "InboundMessage"


def test_ed25519_signature_under_the_legacy_header_is_accepted(
    verifier: WebhookVerifier, ed_key: ed25519.Ed25519PrivateKey
) -> None:
    webhook = verifier.verify(BODY, {"x-wh-signature": ed25519_signature(ed_key, BODY)})

    assert webhook.algorithm == "ed25519"


def test_header_names_are_case_insensitive(
    verifier: WebhookVerifier, ed_key: ed25519.Ed25519PrivateKey, rsa_key: rsa.RSAPrivateKey
) -> None:
    plain = {"Content-Type": "application/json", "X-GHL-Signature": ed25519_signature(ed_key, BODY)}
    assert verifier.verify(BODY, plain).algorithm == "ed25519"

    # aiohttp hands request headers over as a CIMultiDictProxy.
    multi = CIMultiDict({"X-Wh-Signature": rsa_signature(rsa_key, BODY)})
    assert verifier.verify(BODY, multi).algorithm == "rsa-sha256"


def test_event_type_is_empty_when_the_payload_has_none(
    verifier: WebhookVerifier, ed_key: ed25519.Ed25519PrivateKey
) -> None:
    body, headers = signed_payload(ed_key, webhookId="w1", timestamp=SENT_AT_TEXT)

    assert verifier.verify(body, headers).event_type == ""


# ---------------------------------------------------------------------- bad signatures


def test_one_changed_byte_fails_either_algorithm(
    verifier: WebhookVerifier, ed_key: ed25519.Ed25519PrivateKey, rsa_key: rsa.RSAPrivateKey
) -> None:
    tampered = BODY.replace(b"Hi there", b"Hi thera")
    assert len(tampered) == len(BODY) and tampered != BODY

    ed_headers = {"x-ghl-signature": ed25519_signature(ed_key, BODY)}
    rsa_headers = {"x-wh-signature": rsa_signature(rsa_key, BODY)}
    assert rejection(verifier, tampered, ed_headers) == "bad_signature"
    assert rejection(verifier, tampered, rsa_headers) == "bad_signature"
    # The same signatures on the untouched body pass, so the byte is what failed them.
    assert verifier.verify(BODY, ed_headers).webhook_id == "wh-123"
    assert verifier.verify(BODY, rsa_headers).webhook_id == "wh-123"


def test_signature_by_another_key_fails(verifier: WebhookVerifier) -> None:
    stranger_ed = ed25519.Ed25519PrivateKey.generate()
    stranger_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    ed_headers = {"x-ghl-signature": ed25519_signature(stranger_ed, BODY)}
    rsa_headers = {"x-wh-signature": rsa_signature(stranger_rsa, BODY)}
    legacy_ed_headers = {"x-wh-signature": ed25519_signature(stranger_ed, BODY)}
    assert rejection(verifier, BODY, ed_headers) == "bad_signature"
    assert rejection(verifier, BODY, rsa_headers) == "bad_signature"
    assert rejection(verifier, BODY, legacy_ed_headers) == "bad_signature"


def test_missing_signature_is_rejected(verifier: WebhookVerifier) -> None:
    headers = {"content-type": "application/json", "x-signature": "abc"}

    assert rejection(verifier, BODY, headers) == "missing_signature"
    # Even a body that is not JSON: the signature is checked first.
    assert rejection(verifier, b"not json", {}) == "missing_signature"


def test_bad_ed25519_header_does_not_fall_back_to_a_good_rsa_header(
    verifier: WebhookVerifier, rsa_key: rsa.RSAPrivateKey
) -> None:
    good_rsa = rsa_signature(rsa_key, BODY)
    forged_ed = base64.b64encode(bytes(64)).decode("ascii")

    assert verifier.verify(BODY, {"x-wh-signature": good_rsa}).algorithm == "rsa-sha256"
    assert (
        rejection(verifier, BODY, {"x-ghl-signature": forged_ed, "x-wh-signature": good_rsa})
        == "bad_signature"
    )


def test_reserialised_json_fails_with_the_original_signature(
    verifier: WebhookVerifier, ed_key: ed25519.Ed25519PrivateKey, rsa_key: rsa.RSAPrivateKey
) -> None:
    ed_headers = {"x-ghl-signature": ed25519_signature(ed_key, BODY)}
    rsa_headers = {"x-wh-signature": rsa_signature(rsa_key, BODY)}
    spaced = json.dumps(json.loads(BODY)).encode()  # ", " and ": " separators
    reordered = json.dumps(json.loads(BODY), sort_keys=True, separators=(",", ":")).encode()

    for variant in (spaced, reordered):
        assert variant != BODY
        assert json.loads(variant) == json.loads(BODY)  # the same data, other bytes
        assert rejection(verifier, variant, ed_headers) == "bad_signature"
        assert rejection(verifier, variant, rsa_headers) == "bad_signature"


@pytest.mark.parametrize("header", ["x-ghl-signature", "x-wh-signature"])
@pytest.mark.parametrize("value", ["not base64!!", "abc", "", "====", "QUJD\x00"])
def test_signature_that_is_not_base64_is_rejected(
    verifier: WebhookVerifier, header: str, value: str
) -> None:
    assert rejection(verifier, BODY, {header: value}) == "bad_signature"


def test_truncated_signature_is_rejected(
    verifier: WebhookVerifier, ed_key: ed25519.Ed25519PrivateKey
) -> None:
    short = base64.b64encode(ed_key.sign(BODY)[:32]).decode("ascii")

    assert rejection(verifier, BODY, {"x-ghl-signature": short}) == "bad_signature"
    assert rejection(verifier, BODY, {"x-wh-signature": short}) == "bad_signature"


# ---------------------------------------------------------------------- payload checks


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"42", b"null", b"{", b"\xff\xfe{}"])
def test_signed_body_that_is_not_a_json_object_is_rejected(
    verifier: WebhookVerifier, ed_key: ed25519.Ed25519PrivateKey, body: bytes
) -> None:
    headers = {"x-ghl-signature": ed25519_signature(ed_key, body)}

    assert rejection(verifier, body, headers) == "bad_json"


@pytest.mark.parametrize("webhook_id", [None, "", 123, ["wh-1"]])
def test_missing_or_malformed_webhook_id_is_rejected(
    verifier: WebhookVerifier, ed_key: ed25519.Ed25519PrivateKey, webhook_id: object
) -> None:
    fields: dict[str, Any] = {"type": "InboundMessage", "timestamp": SENT_AT_TEXT}
    if webhook_id is not None:
        fields["webhookId"] = webhook_id
    body, headers = signed_payload(ed_key, **fields)

    assert rejection(verifier, body, headers) == "missing_webhook_id"


def _encodable(value: Any) -> bool:
    """Every string in a parsed JSON value (keys too) can be written as UTF-8."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def test_lone_surrogates_anywhere_become_replacement_characters(
    verifier: WebhookVerifier, ed_key: ed25519.Ed25519PrivateKey
) -> None:
    # What JSON.stringify writes for half an emoji: a lone surrogate, escaped.
    body = (
        b'{"type":"InboundMessage","webhookId":"wh-\\ud800","messageId":"\\udfffm",'
        b'"contactId":"c\\uD83D","body":"ok \\ud83d\\ude00 half \\ud83d",'
        b'"attachments":["a\\udc00",{"k\\ud800":["\\ud801"]}],'
        b'"timestamp":"2025-02-17T09:28:14.869Z"}'
    )
    assert not _encodable(json.loads(body))  # what json.loads alone lets through

    webhook = verifier.verify(body, {"x-ghl-signature": ed25519_signature(ed_key, body)})

    assert webhook.webhook_id == "wh-\ufffd"
    assert webhook.payload["messageId"] == "\ufffdm"
    assert webhook.payload["contactId"] == "c\ufffd"
    assert webhook.payload["body"] == "ok 😀 half \ufffd"  # a whole pair is kept
    assert webhook.payload["attachments"] == ["a\ufffd", {"k\ufffd": ["\ufffd"]}]
    assert _encodable(webhook.payload)


@pytest.mark.parametrize(
    "body",
    [
        # Encoded in the bytes, not escaped: json.loads decodes UTF-8 with "surrogatepass".
        b'{"webhookId":"wh-1","body":"half \xed\xa0\xbd","timestamp":"2025-02-17T09:28:14Z"}',
        # Escaped, after leading whitespace.
        b' \n{"webhookId":"wh-1","body":"half \\uD83D","timestamp":"2025-02-17T09:28:14Z"}',
        # UTF-16, which json.loads detects by its NUL bytes.
        '{"webhookId":"wh-1","body":"half \ud83d","timestamp":"2025-02-17T09:28:14Z"}'.encode(
            "utf-16-le", "surrogatepass"
        ),
    ],
    ids=["utf-8-bytes", "after-whitespace", "utf-16"],
)
def test_a_lone_surrogate_in_any_form_json_loads_reads_is_repaired(
    verifier: WebhookVerifier, ed_key: ed25519.Ed25519PrivateKey, body: bytes
) -> None:
    assert not _encodable(json.loads(body))

    webhook = verifier.verify(body, {"x-ghl-signature": ed25519_signature(ed_key, body)})

    assert webhook.payload["body"] == "half \ufffd"
    assert _encodable(webhook.payload)


def test_deeply_nested_body_with_a_lone_surrogate_is_repaired(
    verifier: WebhookVerifier, ed_key: ed25519.Ed25519PrivateKey
) -> None:
    depth = 500  # as deep as json.loads goes comfortably
    nested = b"[" * depth + b'"\\ud800"' + b"]" * depth
    body = b'{"webhookId":"wh-1","timestamp":"2025-02-17T09:28:14.869Z","extra":' + nested + b"}"

    webhook = verifier.verify(body, {"x-ghl-signature": ed25519_signature(ed_key, body)})

    innermost: Any = webhook.payload["extra"]
    for _ in range(depth):
        innermost = innermost[0]
    assert innermost == "\ufffd"


# ---------------------------------------------------------------------- freshness


def test_timestamp_older_than_max_age_is_stale(
    verifier: WebhookVerifier, ed_key: ed25519.Ed25519PrivateKey, clock: Clock
) -> None:
    headers = {"x-ghl-signature": ed25519_signature(ed_key, BODY)}

    clock.now = SENT_AT + 299
    assert verifier.verify(BODY, headers).webhook_id == "wh-123"
    clock.now = SENT_AT + 301
    assert rejection(verifier, BODY, headers) == "stale_timestamp"


def test_max_age_is_configurable(
    ed_key: ed25519.Ed25519PrivateKey, rsa_key: rsa.RSAPrivateKey
) -> None:
    headers = {"x-ghl-signature": ed25519_signature(ed_key, BODY)}
    strict = WebhookVerifier(
        public_pem(ed_key), public_pem(rsa_key), max_age_seconds=10, clock=Clock(SENT_AT + 11)
    )

    assert rejection(strict, BODY, headers) == "stale_timestamp"


def test_timestamp_more_than_a_minute_ahead_is_rejected(
    verifier: WebhookVerifier, ed_key: ed25519.Ed25519PrivateKey, clock: Clock
) -> None:
    headers = {"x-ghl-signature": ed25519_signature(ed_key, BODY)}

    clock.now = SENT_AT - 59
    assert verifier.verify(BODY, headers).webhook_id == "wh-123"
    clock.now = SENT_AT - 61
    assert rejection(verifier, BODY, headers) == "stale_timestamp"


def test_epoch_timestamps_in_seconds_and_milliseconds(
    verifier: WebhookVerifier, ed_key: ed25519.Ed25519PrivateKey, clock: Clock
) -> None:
    millis = 1739784494869  # 2025-02-17T09:28:14.869Z
    assert millis / 1000 == pytest.approx(SENT_AT, rel=0, abs=1e-3)

    for stamp in (millis, millis / 1000, str(millis)):
        body, headers = signed_payload(ed_key, webhookId="w1", timestamp=stamp)
        assert verifier.verify(body, headers).timestamp == pytest.approx(SENT_AT, rel=0, abs=1e-3)

    clock.now = SENT_AT + 3600
    body, headers = signed_payload(ed_key, webhookId="w1", timestamp=millis)
    assert rejection(verifier, body, headers) == "stale_timestamp"


def test_iso_timestamp_without_zone_is_read_as_utc(
    verifier: WebhookVerifier, ed_key: ed25519.Ed25519PrivateKey
) -> None:
    body, headers = signed_payload(ed_key, webhookId="w1", timestamp="2025-02-17T09:28:14.869")

    assert verifier.verify(body, headers).timestamp == pytest.approx(SENT_AT, rel=0, abs=1e-3)


@pytest.mark.parametrize("stamp", [None, "yesterday", "", True, {"at": 1}, float("inf")])
def test_missing_or_unreadable_timestamp_counts_as_stale(
    verifier: WebhookVerifier, ed_key: ed25519.Ed25519PrivateKey, stamp: object
) -> None:
    fields: dict[str, Any] = {"webhookId": "w1"}
    if stamp is not None:
        fields["timestamp"] = stamp
    body, headers = signed_payload(ed_key, **fields)

    assert rejection(verifier, body, headers) == "stale_timestamp"


# ---------------------------------------------------------------------- keys


def test_shipped_keys_load_and_do_not_trust_other_signers(
    ed_key: ed25519.Ed25519PrivateKey, rsa_key: rsa.RSAPrivateKey
) -> None:
    shipped_rsa = load_pem_public_key(highlevel_rsa_key_pem().encode("ascii"))
    assert isinstance(shipped_rsa, rsa.RSAPublicKey)
    assert shipped_rsa.key_size == 4096

    verifier = WebhookVerifier(highlevel_webhook_key_pem(), clock=Clock(SENT_AT))

    assert rejection(verifier, BODY, {"x-ghl-signature": ed25519_signature(ed_key, BODY)}) == (
        "bad_signature"
    )
    assert rejection(verifier, BODY, {"x-wh-signature": rsa_signature(rsa_key, BODY)}) == (
        "bad_signature"
    )


def test_keys_of_the_wrong_kind_are_refused(
    ed_key: ed25519.Ed25519PrivateKey, rsa_key: rsa.RSAPrivateKey
) -> None:
    with pytest.raises(ValueError, match="Ed25519"):
        WebhookVerifier(public_pem(rsa_key))
    with pytest.raises(ValueError, match="RSA"):
        WebhookVerifier(public_pem(ed_key), public_pem(ed_key))
    with pytest.raises(ValueError):
        WebhookVerifier("not a key")
