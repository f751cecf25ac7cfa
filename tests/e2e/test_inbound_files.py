"""A customer's files into Slack, end to end: the HighLevel simulator's customers send media,
its webhooks reach a real `ghl-bridge serve`, and the files land in the conversation's thread
in the Slack simulator as real files (files_upload_v2), once; too big ones as a link with the
reason; WhatsApp's late media (HLD#299) when HighLevel has them."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import bot.files.inbound
from bot.sandbox.highlevel import ADA_LOVELACE_ID, KATHERINE_JOHNSON_ID, HighLevelSimulator
from bot.sandbox.slack import SlackFile, SlackMessage
from bot.sandbox.stack import INBOX_CHANNEL, SandboxStack
from storage import InboundState
from tests.e2e.conftest import eventually, stack_on, stack_store
from tests.e2e.test_outbound import roots, text_of

PHOTO = b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(range(256)) * 64
VOICE = b"OggS\x00\x02" + bytes(range(200)) * 30


@pytest.fixture(autouse=True)
def _quick_media_checks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """WhatsApp's late media are looked for within a few seconds here, not a minute (the
    bridge reads the schedule when it starts, after this)."""
    monkeypatch.setattr(
        bot.files.inbound, "MEDIA_CHECKS_AFTER", (0.1, 0.2, 0.4, 0.8, 1.2, 2.0, 3.0, 5.0, 8.0)
    )
    yield


def root_of_thread(stack: SandboxStack) -> SlackMessage | None:
    top = roots(stack, INBOX_CHANNEL)
    return top[0] if len(top) == 1 else None


def files_in(stack: SandboxStack, root: SlackMessage) -> list[SlackFile]:
    return [
        file
        for file in stack.slack.files()
        if any(
            share.channel_id == INBOX_CHANNEL and root.ts in (share.thread_ts, share.ts)
            for share in file.shares
        )
    ]


def thread(stack: SandboxStack, root: SlackMessage) -> list[SlackMessage]:
    return stack.slack.thread(INBOX_CHANNEL, root.ts)


async def settled(stack: SandboxStack) -> bool:
    """Every inbound event (media checks too) has been dealt with."""
    async with stack_store(stack) as store:
        waiting = await store.count_inbound(InboundState.PENDING)
        waiting += await store.count_inbound(InboundState.PROCESSING)
    return waiting == 0


def _signed(key: Ed25519PrivateKey, payload: dict[str, object]) -> tuple[bytes, str]:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return body, base64.b64encode(key.sign(body)).decode()


async def test_an_inbound_mms_photo_lands_in_its_thread_once(database_url: str) -> None:
    key = Ed25519PrivateKey.generate()
    async with stack_on(database_url, highlevel=HighLevelSimulator(signing_key=key)) as stack:
        message = await stack.highlevel.customer_reply(
            ADA_LOVELACE_ID, "SMS", "Here's the damage", media=[("damage.jpg", PHOTO, "image/jpeg")]
        )
        root = await eventually(lambda: root_of_thread(stack))
        assert "Here's the damage" in text_of(root)
        [photo] = await eventually(lambda: files_in(stack, root))
        assert (photo.name, photo.data, photo.mimetype) == ("damage.jpg", PHOTO, "image/jpeg")
        [share] = photo.shares
        assert share.thread_ts == root.ts  # a reply in the message's own thread
        assert [m.ts for m in thread(stack, root)] == [root.ts, share.ts]

        # HighLevel delivers the webhook again, then the same message under a new webhook
        # (a status change): no file is uploaded twice.
        delivery = next(
            d
            for d in stack.highlevel.webhook_deliveries
            if d.payload.get("messageId") == message.id
        )
        again = delivery.payload | {"webhookId": str(uuid.uuid4()), "status": "read"}
        resigned = _signed(key, again)
        async with httpx.AsyncClient() as http:
            for body, signature, stored in [
                (delivery.body, delivery.signature, False),
                (*resigned, True),
            ]:
                answer = await http.post(
                    f"{stack.bridge_url}/ghl/webhooks",
                    content=body,
                    headers={"content-type": "application/json", "x-ghl-signature": signature},
                )
                assert (answer.status_code, answer.json()["stored"]) == (200, stored)
        await eventually(lambda: settled(stack))
        assert [f.data for f in files_in(stack, root)] == [PHOTO]
        assert len(stack.slack.calls_to("files.completeUploadExternal")) == 1
        assert len(thread(stack, root)) == 2


async def test_a_whatsapp_voice_note_with_late_media_joins_its_thread(stack: SandboxStack) -> None:
    message = await stack.highlevel.customer_reply(
        KATHERINE_JOHNSON_ID, "WhatsApp", "Listen to this", media=[("note.ogg", VOICE, "audio/ogg")]
    )
    root = await eventually(lambda: root_of_thread(stack))
    assert "no text" in text_of(root)  # the webhook had neither the caption nor the file
    # The media are looked for off the conversation's path: its next message is not held up.
    await stack.highlevel.customer_reply(KATHERINE_JOHNSON_ID, "WhatsApp", "Did you get it?")
    await eventually(lambda: any("Did you get it?" in text_of(m) for m in thread(stack, root)))
    assert files_in(stack, root) == []

    stack.highlevel.media_arrives(message.id)
    [voice] = await eventually(lambda: files_in(stack, root))
    assert (voice.name, voice.data) == ("note.ogg", VOICE)
    [upload] = [m for m in thread(stack, root) if m.files]
    assert upload.text == "Listen to this"  # the caption came with it
    await eventually(lambda: settled(stack))
    assert len(files_in(stack, root)) == 1


async def test_an_oversized_inbound_file_is_a_link_with_the_reason(database_url: str) -> None:
    overrides = {"max_inbound_file_mb": 0.01}  # 10 KB
    async with stack_on(database_url, settings_overrides=overrides) as stack:
        big = b"%PDF-1.4\n" + b"0" * 40_000
        message = await stack.highlevel.customer_reply(
            ADA_LOVELACE_ID, "SMS", "The contract", media=[("contract.pdf", big, "application/pdf")]
        )
        root = await eventually(lambda: root_of_thread(stack))
        notice = await eventually(
            lambda: next((m for m in thread(stack, root) if "contract.pdf" in m.text), None)
        )
        [url] = message.attachments
        assert notice.text == (
            "📎 *contract.pdf* (39 KB) is over the 10 KB limit for files copied into Slack: "
            f"<{url}|open it in HighLevel>"
        )
        await eventually(lambda: settled(stack))
        assert stack.slack.files() == []
        assert stack.slack.calls_to("files.getUploadURLExternal") == []
        served = next(f for f in stack.highlevel.files.values() if f.filename == "contract.pdf")
        assert served.downloads == 1  # asked for once, and left as soon as its size was known
