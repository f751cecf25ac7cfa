"""Nobody sends or injects messages without the secrets; secrets and customer data stay out of
the logs."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus, urlencode

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.web.async_client import AsyncWebClient

from bot.compose import ComposeContext
from bot.sandbox.highlevel import ADA_LOVELACE_ID, HighLevelSimulator
from bot.sandbox.slack import SlackDriver
from bot.sandbox.stack import (
    AGENT_USER,
    INBOX_CHANNEL,
    OTHER_USER,
    SALES_CHANNEL,
    SANDBOX_SIGNING_SECRET,
    SandboxStack,
)
from bot.slack_app import build_bolt_app
from bot.ui.compose_builder import (
    COMPOSE_CALLBACK_ID,
)
from bot.ui.compose_state import (
    encode_context,
)
from bot.webhook_auth import WebhookRejected, WebhookVerifier
from storage import OutboxState, SqliteStore
from tests.e2e.test_outbound import open_composer, quick_send, roots, sends, submit
from tests.reliability._helpers import (
    action_ids,
    all_posts,
    eventually,
    inbound_payload,
    posts_containing,
    sign_ed25519,
    signed_body,
    text_of,
)

SEND = ("POST", "/conversations/messages")
SIX_MINUTES = 6 * 60


async def _outbox_count(stack: SandboxStack) -> int:
    async with SqliteStore(stack.database_path) as store:
        return len(await store.list_outbox(limit=1000))


async def _inbound_count(stack: SandboxStack) -> int:
    async with SqliteStore(stack.database_path) as store:
        return await store.count_inbound()


# ---------------------------------------------------------------- Slack request signing


async def test_unsigned_forged_and_replayed_slack_requests_are_401_and_do_nothing(
    tmp_path: Path,
) -> None:
    async with (
        SandboxStack(tmp_path / "b.sqlite3") as stack,
        SlackDriver(f"{stack.bridge_url}/slack/events", "not-the-secret", stack.slack) as forger,
    ):
        driver = stack.driver
        now = int(time.time())
        text = "+1 415 555 0100 forged"
        attempts = {
            "wrong signature": driver.slash_command(
                "/sendsms",
                text,
                user_id=AGENT_USER,
                channel_id=SALES_CHANNEL,
                signature="v0=" + "0" * 64,
            ),
            "signed with another secret": forger.slash_command(
                "/sendsms", text, user_id=AGENT_USER, channel_id=SALES_CHANNEL
            ),
            # Correctly signed, but 6 minutes old: a captured request replayed later.
            "replayed (stale timestamp)": driver.slash_command(
                "/sendsms",
                text,
                user_id=AGENT_USER,
                channel_id=SALES_CHANNEL,
                timestamp=now - SIX_MINUTES,
            ),
            "from the future": driver.slash_command(
                "/sendsms",
                text,
                user_id=AGENT_USER,
                channel_id=SALES_CHANNEL,
                timestamp=now + SIX_MINUTES,
            ),
            "composer, wrong signature": driver.slash_command(
                "/sendsms",
                "",
                user_id=AGENT_USER,
                channel_id=SALES_CHANNEL,
                signature="v0=deadbeef",
            ),
            "shortcut, stale": driver.message_action(
                "reply_via_highlevel",
                user_id=AGENT_USER,
                channel_id=SALES_CHANNEL,
                message={"ts": "1700000000.000100", "text": "hi", "type": "message"},
                timestamp=now - SIX_MINUTES,
            ),
            "modal submission, wrong signature": driver.view_submission(
                user_id=AGENT_USER,
                callback_id=COMPOSE_CALLBACK_ID,
                private_metadata=encode_context(ComposeContext(channel_id=SALES_CHANNEL)),
                values={"recipient": {"recipient": "+14155550100"}, "message": {"message": "x"}},
                signature="v0=" + "f" * 64,
            ),
        }
        for name, attempt in attempts.items():
            result = await attempt
            assert result.status == 401, (name, result.status, result.text)
        body = urlencode({"command": "/sendsms", "text": text, "user_id": AGENT_USER})
        async with httpx.AsyncClient() as http:
            no_headers = await http.post(
                f"{stack.bridge_url}/slack/events",
                content=body,
                headers={"content-type": "application/x-www-form-urlencoded"},
            )
            only_timestamp = await http.post(
                f"{stack.bridge_url}/slack/events",
                content=body,
                headers={
                    "content-type": "application/x-www-form-urlencoded",
                    "x-slack-request-timestamp": str(now),
                },
            )
        assert (no_headers.status_code, only_timestamp.status_code) == (401, 401)
        # The same request, correctly signed now, is acted on: the checks above were the reason.
        await quick_send(stack, "+1 415 555 0100 the genuine one")
        await eventually(lambda: len(sends(stack)) == 1)
        await asyncio.sleep(0.3)
        assert [s["message"] for s in sends(stack)] == ["the genuine one"]
        assert stack.slack.open_views() == []
        assert await _outbox_count(stack) == 1


# ---------------------------------------------------------------- HighLevel webhooks


def _stamp(offset: float = 0.0) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + offset))


async def test_forged_webhooks_are_rejected_and_store_nothing(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    highlevel = HighLevelSimulator(signing_key=key)
    async with SandboxStack(tmp_path / "b.sqlite3", highlevel=highlevel) as stack:
        location = highlevel.location_id

        def payload(text: str, **changes: Any) -> dict[str, Any]:
            base = inbound_payload(
                location_id=location,
                contact_id=ADA_LOVELACE_ID,
                conversation_id="conversation-sec",
                text=text,
            )
            return base | changes

        genuine = signed_body(key, payload("genuine"))
        tampered = genuine.body.replace(b"genuine", b"GENUINE")
        wrong_key = signed_body(Ed25519PrivateKey.generate(), payload("wrong key"))
        stale = signed_body(key, payload("stale", timestamp=_stamp(-SIX_MINUTES)))
        future = signed_body(key, payload("future", timestamp=_stamp(SIX_MINUTES)))
        no_id = payload("no webhook id")
        del no_id["webhookId"]
        unsigned_id = signed_body(key, no_id)
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        rsa_body = signed_body(key, payload("rsa with our own key")).body
        rsa_signature = base64.b64encode(rsa_key.sign(rsa_body, PKCS1v15(), SHA256())).decode()
        json_type = {"content-type": "application/json"}
        rejected = {
            "tampered body": (tampered, {"x-ghl-signature": genuine.signature}),
            "wrong key": (wrong_key.body, {"x-ghl-signature": wrong_key.signature}),
            "missing signature": (genuine.body, {}),
            "empty signature": (genuine.body, {"x-ghl-signature": ""}),
            "not base64": (genuine.body, {"x-ghl-signature": "%%%"}),
            "stale timestamp": (stale.body, {"x-ghl-signature": stale.signature}),
            "future timestamp": (future.body, {"x-ghl-signature": future.signature}),
            "no webhookId": (unsigned_id.body, {"x-ghl-signature": unsigned_id.signature}),
            # The legacy RSA header, signed with a key that is not HighLevel's.
            "RSA, wrong key": (rsa_body, {"x-wh-signature": rsa_signature}),
            # A valid Ed25519 signature cannot be moved onto another body.
            "signature of another body": (
                wrong_key.body,
                {"x-ghl-signature": sign_ed25519(key, genuine.body)},
            ),
        }
        url = f"{stack.bridge_url}/ghl/webhooks"
        async with httpx.AsyncClient() as http:
            for name, (body, headers) in rejected.items():
                response = await http.post(url, content=body, headers=json_type | headers)
                assert response.status_code == 401, (name, response.text)
            assert await _inbound_count(stack) == 0
            first = await http.post(url, content=genuine.body, headers=genuine.headers)
            replay = await http.post(url, content=genuine.body, headers=genuine.headers)
            # The same webhookId on a new, correctly signed message: a replay, not a message.
            reused_id = signed_body(
                key, payload("reused webhook id", webhookId=_webhook_id(genuine.body))
            )
            reused = await http.post(url, content=reused_id.body, headers=reused_id.headers)
        assert first.status_code == 200 and first.json()["stored"] is True
        assert replay.status_code == 200 and replay.json()["stored"] is False
        assert reused.status_code == 200 and reused.json()["stored"] is False
        root = (await eventually(lambda: roots(stack, INBOX_CHANNEL)))[0]
        await asyncio.sleep(0.3)
        assert await _inbound_count(stack) == 1
        shown = "\n".join(text_of(m) for m in all_posts(stack.slack, [INBOX_CHANNEL]))
        assert "genuine" in text_of(root)
        for word in ("GENUINE", "wrong key", "stale", "future", "no webhook id", "own key"):
            assert word not in shown
        assert "reused" not in shown


def _webhook_id(body: bytes) -> str:
    return str(json.loads(body)["webhookId"])


def test_rsa_signatures_are_checked_with_real_key_pairs() -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ed_key = Ed25519PrivateKey.generate()
    verifier = WebhookVerifier(_public_pem(ed_key), _public_pem(rsa_key))
    body = signed_body(
        ed_key,
        inbound_payload(location_id="loc", contact_id="c1", conversation_id="v1", text="hello"),
    ).body

    def rsa_sign(key: rsa.RSAPrivateKey, data: bytes) -> str:
        return base64.b64encode(key.sign(data, PKCS1v15(), SHA256())).decode()

    accepted = verifier.verify(body, {"x-wh-signature": rsa_sign(rsa_key, body)})
    assert accepted.algorithm == "rsa-sha256"
    tampered = body.replace(b"hello", b"HELLO")
    for headers, data in [
        ({"x-wh-signature": rsa_sign(rsa_key, body)}, tampered),
        ({"x-wh-signature": rsa_sign(other_rsa, body)}, body),
        ({"x-ghl-signature": rsa_sign(rsa_key, body)}, body),  # RSA under the Ed25519 name
        ({}, body),
    ]:
        with pytest.raises(WebhookRejected):
            verifier.verify(data, headers)


def _public_pem(key: rsa.RSAPrivateKey | Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


async def test_oversized_bodies_are_413_and_store_nothing(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    highlevel = HighLevelSimulator(signing_key=key)
    async with SandboxStack(tmp_path / "b.sqlite3", highlevel=highlevel) as stack:
        huge = signed_body(
            key,
            inbound_payload(
                location_id=highlevel.location_id,
                contact_id=ADA_LOVELACE_ID,
                conversation_id="conversation-big",
                text="x" * (2 * 1024 * 1024),
            ),
        )
        async with httpx.AsyncClient(timeout=30) as http:
            webhook = await http.post(
                f"{stack.bridge_url}/ghl/webhooks", content=huge.body, headers=huge.headers
            )
            slack_body = urlencode({"command": "/sendsms", "text": "y" * (2 * 1024 * 1024)})
            slack = await stack.driver.post_raw(
                slack_body, content_type="application/x-www-form-urlencoded"
            )
        assert webhook.status_code == 413
        assert slack.status == 413
        await asyncio.sleep(0.3)
        assert await _inbound_count(stack) == 0
        assert await _outbox_count(stack) == 0
        assert all_posts(stack.slack, [INBOX_CHANNEL, SALES_CHANNEL]) == []


# ---------------------------------------------------------------- allowlists


async def _answered_sends(stack: SandboxStack, count: int, within: float = 15.0) -> None:
    """Wait until `count` sends are in the outbox and HighLevel has answered each of them."""
    answered = {OutboxState.SENT, OutboxState.FAILED, OutboxState.UNKNOWN}
    deadline = time.monotonic() + within
    while True:
        async with SqliteStore(stack.database_path) as store:
            entries = await store.list_outbox(limit=1000)
        if len(entries) >= count and all(entry.state in answered for entry in entries):
            return
        states = [entry.state.value for entry in entries]
        assert time.monotonic() < deadline, f"sends not answered within {within} s: {states}"
        await asyncio.sleep(0.05)


async def test_allowlists_hold_on_every_entry_point(tmp_path: Path) -> None:
    """ALLOWED_SLACK_USERS / ALLOWED_SLACK_CHANNELS: commands, buttons, the shortcut, the
    composer's live updates and its submission all refuse a person or channel not listed."""
    overrides = {"allowed_slack_users": AGENT_USER, "allowed_slack_channels": SALES_CHANNEL}
    async with SandboxStack(tmp_path / "b.sqlite3", settings_overrides=overrides) as stack:
        slack, highlevel, driver = stack.slack, stack.highlevel, stack.driver
        slack.add_channel("C0OTHERS", "others")
        # As the allowed person: one send of each kind whose post carries a button. Each fault
        # is set only once the previous send has its answer from HighLevel, or it would hit it.
        await quick_send(stack, "+1 415 555 0100 sent one")
        await _answered_sends(stack, 1)
        root = await eventually(lambda: (r := roots(stack)) and "reply" in action_ids(r[0]) and r)
        highlevel.faults.scope = "sends"
        highlevel.faults.error_next = 1
        await quick_send(stack, "+1 415 555 0100 unknown one")
        await _answered_sends(stack, 2)
        highlevel.faults.error_status = 422
        highlevel.faults.error_next = 1
        await quick_send(stack, "+1 415 555 0100 refused one")
        await _answered_sends(stack, 3)
        view_id = await open_composer(stack, "+1 415 555 0100")
        await submit(stack, view_id, {"message": "later one", "schedule": int(time.time()) + 3600})

        def post_with(action: str) -> Any:
            posts = stack.slack.thread(SALES_CHANNEL, root[0].ts)
            return next((p for p in posts if action in action_ids(p)), None)

        def buttons_shown() -> bool:
            return all(post_with(a) for a in ("resend", "retry", "cancel_scheduled"))

        await eventually(buttons_shown, within=10)
        await highlevel.drain_webhooks()
        await asyncio.sleep(0.3)
        agent_view = stack.slack.open_views(AGENT_USER)
        sends_before = len(highlevel.requests_to(*SEND))
        outbox_before = await _outbox_count(stack)
        updates_before = len(slack.calls_to("views.update"))
        opens_before = len(slack.calls_to("views.open"))
        assert not agent_view  # the composer was submitted and closed

        denied: dict[str, Any] = {}
        for who, where in [(OTHER_USER, SALES_CHANNEL), (AGENT_USER, "C0OTHERS")]:
            label = f"{who} in {where}"
            quick = await driver.slash_command(
                "/sendsms", "+1 415 555 0100 not allowed", user_id=who, channel_id=where
            )
            denied[f"quick send, {label}"] = quick
            denied[f"composer, {label}"] = await driver.slash_command(
                "/sendsms", "", user_id=who, channel_id=where
            )
            denied[f"email composer, {label}"] = await driver.slash_command(
                "/sendemail", "ada@example.com", user_id=who, channel_id=where
            )
        for action in ("reply", "resend", "retry", "cancel_scheduled"):
            target = root[0] if action == "reply" else post_with(action)
            denied[f"button {action}"] = await driver.block_action(
                action, user_id=OTHER_USER, channel_id=SALES_CHANNEL, message_ts=target.ts
            )
        denied["shortcut"] = await driver.message_action(
            "reply_via_highlevel",
            user_id=OTHER_USER,
            channel_id=SALES_CHANNEL,
            message_ts=root[0].ts,
        )
        values = {"recipient": {"recipient": "+14155550100"}, "message": {"message": "sneaky"}}
        for who, channel in [(OTHER_USER, SALES_CHANNEL), (AGENT_USER, "C0OTHERS")]:
            submission = await driver.view_submission(
                user_id=who,
                callback_id=COMPOSE_CALLBACK_ID,
                private_metadata=encode_context(ComposeContext(channel_id=channel)),
                values=values,
            )
            denied[f"modal submission, {who} in {channel}"] = submission
            assert submission.json["response_action"] == "errors", submission.text
        # The composer's live re-rendering (typing a recipient) is an entry point as well.
        live_view = await open_composer(stack)
        updates_before = len(slack.calls_to("views.update"))
        opens_before += 1
        live = await driver.block_action(
            "recipient",
            user_id=OTHER_USER,
            view_id=live_view,
            values={"recipient": {"recipient": "+14155550100"}},
        )
        denied["composer live update"] = live

        for name, result in denied.items():
            assert result.status == 200, (name, result.status)
        await asyncio.sleep(0.5)  # anything a denied request set off would show by now
        assert len(highlevel.requests_to(*SEND)) == sends_before
        assert await _outbox_count(stack) == outbox_before
        assert len(slack.calls_to("views.open")) == opens_before
        assert len(slack.calls_to("views.update")) == updates_before
        assert slack.open_views(OTHER_USER) == []
        assert highlevel.cancelled == {}
        # Each person turned away from a command is told why.
        assert "ALLOWED_SLACK" in denied[f"quick send, {OTHER_USER} in {SALES_CHANNEL}"].text
        assert "ALLOWED_SLACK" in denied[f"quick send, {AGENT_USER} in C0OTHERS"].text
        told = "\n".join(e.text for e in slack.ephemerals(user=OTHER_USER))
        assert "nothing was sent" in told  # the buttons and the shortcut answered too


# ---------------------------------------------------------------- logs


async def test_logs_hold_no_tokens_and_no_customer_data_at_info(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every logger, ours and the libraries', captured from DEBUG up around a text, an email, a
    customer's reply, and a forged Slack request carrying a phone number and an email address,
    both at the bridge's door and inside the Bolt app the bridge builds."""
    run = uuid.uuid4().hex[:8]
    body = f"private words {run}"
    reply = f"customer secret {run}"
    forged_words = f"forged words {run}"
    subject = f"private subject {run}"
    email_body = f"private email {run}"
    with _every_logger_captured(caplog):
        async with SandboxStack(tmp_path / "b.sqlite3") as stack:
            forged = await stack.driver.slash_command(
                "/sendsms",
                f"+1 415 555 0199 {forged_words} grace@example.com",
                user_id=AGENT_USER,
                channel_id=SALES_CHANNEL,
                signature="v0=" + "0" * 64,
            )
            assert forged.status == 401
            # Bolt's own signature check, where Bolt logs a refused request's whole body at INFO.
            assert stack.settings is not None
            bolt_app = build_bolt_app(
                stack.settings,
                AsyncWebClient(token=stack.slack.bot_token, base_url=stack.slack.api_url),
            )
            refused = await bolt_app.async_dispatch(
                AsyncBoltRequest(
                    body=forged.body,
                    headers={
                        "content-type": forged.content_type,
                        "x-slack-request-timestamp": str(int(time.time())),
                        "x-slack-signature": "v0=" + "0" * 64,
                    },
                )
            )
            assert refused.status == 401
            await quick_send(stack, f"+1 415 555 0100 {body}")
            await eventually(lambda: len(sends(stack)) == 1)
            view_id = await open_composer(stack, "ada@example.com", command="/sendemail")
            answer = await submit(
                stack,
                view_id,
                {"channel": "Email", "subject": subject, "message": email_body},
            )
            assert answer.get("response_action") != "errors", answer
            await eventually(lambda: len(sends(stack)) == 2)
            await stack.highlevel.drain_webhooks()
            await stack.highlevel.customer_reply(ADA_LOVELACE_ID, "SMS", reply)
            await eventually(
                lambda: posts_containing(all_posts(stack.slack, [SALES_CHANNEL]), [reply])[reply]
            )
            secrets = [
                stack.slack.bot_token,
                stack.highlevel.token,
                SANDBOX_SIGNING_SECRET,
            ]
    records = caplog.records
    assert any(r.levelno <= logging.DEBUG for r in records)  # DEBUG was captured
    libraries = {r.name.split(".")[0] for r in records} - {"bot", "handlers", "storage"}
    assert libraries, "no library logger was captured"
    private = [body, reply, forged_words, subject, email_body]
    private += ["example.com", "5550100", "5550199"]
    for record in records:
        line = _rendered(record)
        for secret in secrets:
            assert secret not in line, (record.name, record.levelname, line[:300])
        if record.levelno >= logging.INFO:
            # As written, URL-encoded, and with a phone number's spaces and punctuation gone.
            unquoted = unquote_plus(line)
            shown = [line, unquoted, re.sub(r"[\s()+.-]", "", unquoted)]
            for needle in private:
                assert not any(needle in text for text in shown), (
                    record.name,
                    record.levelname,
                    line[:300],
                )


@contextlib.contextmanager
def _every_logger_captured(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """caplog's handler sits on the root logger, at DEBUG; a logger that does not propagate to
    the root gets the handler too."""
    caplog.set_level(logging.DEBUG)
    detached = [
        logger
        for logger in logging.root.manager.loggerDict.values()
        if isinstance(logger, logging.Logger) and not logger.propagate
    ]
    for logger in detached:
        logger.addHandler(caplog.handler)
    try:
        yield
    finally:
        for logger in detached:
            logger.removeHandler(caplog.handler)


def _rendered(record: logging.LogRecord) -> str:
    text = record.getMessage()
    if record.exc_info and record.exc_info[1] is not None:
        text += f"\n{record.exc_info[1]!r}"
    return text
