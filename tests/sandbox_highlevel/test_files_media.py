"""Customers' media (WhatsApp's late ones too) and how the simulator serves files, with faults."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from bot.sandbox.highlevel import (
    ADA_LOVELACE_ID,
    GRACE_HOPPER_ID,
    KATHERINE_JOHNSON_ID,
    HighLevelSimulator,
)
from tests.sandbox_highlevel.conftest import Receiver

PHOTO = ("cat.jpg", b"\xff\xd8\xffcat", "image/jpeg")
RECEIPT = ("receipt.pdf", b"%PDF-1.4 receipt", "application/pdf")
VOICE = ("voice note.ogg", b"OggS\x00voice", "audio/ogg")


def events(receiver: Receiver) -> list[dict[str, Any]]:
    return [json.loads(body) for body in receiver.bodies]


async def test_customer_media_come_with_the_webhook_and_are_served(
    api: httpx.AsyncClient, sim: HighLevelSimulator, receiver: Receiver
) -> None:
    sim.webhook_url = receiver.url
    message = await sim.customer_reply(ADA_LOVELACE_ID, "SMS", "my cat", media=[PHOTO, RECEIPT])
    await sim.drain_webhooks()
    [event] = events(receiver)
    assert (event["type"], event["body"], event["messageId"]) == (
        "InboundMessage",
        "my cat",
        message.id,
    )
    urls = event["attachments"]
    assert len(urls) == 2 and urls == message.attachments
    got = (await api.get(f"/conversations/messages/{message.id}")).json()["message"]
    assert got["attachments"] == urls
    async with httpx.AsyncClient(timeout=5.0) as anonymous:
        for url, (_name, data, content_type) in zip(urls, (PHOTO, RECEIPT), strict=True):
            fetched = await anonymous.get(url)
            assert (fetched.status_code, fetched.content) == (200, data)
            assert fetched.headers["Content-Type"] == content_type
    assert sim.uploads == {}  # the customer's files are not uploads made through the API
    assert [(f.via, f.conversation_id) for f in sim.files.values()] == [
        ("customer", message.conversation_id)
    ] * 2


async def test_customer_email_media_are_on_the_email(
    api: httpx.AsyncClient, sim: HighLevelSimulator, receiver: Receiver
) -> None:
    sim.webhook_url = receiver.url
    email = await sim.customer_reply(
        GRACE_HOPPER_ID, "Email", "Attached.", subject="Docs", media=[RECEIPT]
    )
    await sim.drain_webhooks()
    [event] = events(receiver)
    assert event["attachments"] == email.attachments and len(email.attachments) == 1
    got = (await api.get(f"/conversations/messages/email/{email.id}")).json()["emailMessage"]
    assert got["attachments"] == email.attachments


async def test_whatsapp_media_are_late_until_the_simulator_is_told(
    api: httpx.AsyncClient, sim: HighLevelSimulator, receiver: Receiver
) -> None:
    sim.webhook_url = receiver.url
    message = await sim.customer_reply(KATHERINE_JOHNSON_ID, "WhatsApp", "listen", media=[VOICE])
    await sim.drain_webhooks()
    [event] = events(receiver)
    assert (event["messageType"], event["body"], event["contentType"]) == (
        "WhatsApp",
        "",
        "text/plain",
    )
    assert "attachments" not in event
    url = f"/conversations/messages/{message.id}"
    for _ in range(3):  # reads alone never bring them: only media_arrives does
        early = (await api.get(url)).json()["message"]
        assert (early["attachments"], early["body"]) == ([], "")
    listed = (await api.get(f"/conversations/{message.conversation_id}/messages")).json()
    assert listed["messages"]["messages"][0]["attachments"] == []
    sim.media_arrives(message.id)
    late = (await api.get(url)).json()["message"]
    assert (late["body"], late["attachments"]) == ("listen", message.attachments)
    async with httpx.AsyncClient(timeout=5.0) as anonymous:
        voice = await anonymous.get(late["attachments"][0])
    assert (voice.content, voice.headers["Content-Type"]) == (VOICE[1], "audio/ogg")
    assert len(receiver.bodies) == 1  # no second webhook: HighLevel sends none
    with pytest.raises(ValueError, match="no media waiting"):
        sim.media_arrives(message.id)


async def test_late_media_can_arrive_on_a_given_read(
    api: httpx.AsyncClient, sim: HighLevelSimulator
) -> None:
    message = await sim.customer_reply(
        KATHERINE_JOHNSON_ID, "WhatsApp", media=[PHOTO], media_after_reads=2
    )
    url = f"/conversations/messages/{message.id}"
    seen = [len((await api.get(url)).json()["message"]["attachments"]) for _ in range(4)]
    assert seen == [0, 0, 1, 1]


async def test_late_media_choices(sim: HighLevelSimulator, receiver: Receiver) -> None:
    sim.webhook_url = receiver.url
    on_time = await sim.customer_reply(
        KATHERINE_JOHNSON_ID, "WhatsApp", media=[PHOTO], late_media=False
    )
    late_sms = await sim.customer_reply(
        ADA_LOVELACE_ID, "SMS", "pic", media=[PHOTO], late_media=True
    )
    await sim.drain_webhooks()
    first, second = events(receiver)
    assert first["attachments"] == on_time.attachments and len(on_time.attachments) == 1
    assert (second["body"], "attachments" in second) == ("", False)
    assert late_sms.media_pending
    with pytest.raises(ValueError, match="late_media"):
        await sim.customer_reply(ADA_LOVELACE_ID, "SMS", "text only", late_media=True)
    with pytest.raises(ValueError, match="late_media"):  # typed callers cannot even ask
        await sim.customer_reply(  # type: ignore[call-overload]
            GRACE_HOPPER_ID, "Email", "x", media=[PHOTO], late_media=True
        )
    with pytest.raises(ValueError, match="media_after_reads"):
        await sim.customer_reply(ADA_LOVELACE_ID, "SMS", "x", media=[PHOTO], media_after_reads=1)
    assert len(sim.messages) == 2  # refused replies store nothing


async def test_media_need_a_url_to_be_served_at() -> None:
    sim = HighLevelSimulator()  # never started: no base URL
    with pytest.raises(RuntimeError, match="files_base_url"):
        await sim.customer_reply(ADA_LOVELACE_ID, "SMS", "x", media=[PHOTO])
    assert sim.messages == {} and sim.files == {}
    sim.files_base_url = "http://127.0.0.1:9"
    message = await sim.customer_reply(ADA_LOVELACE_ID, "SMS", "x", media=[PHOTO])
    assert message.attachments[0].startswith("http://127.0.0.1:9/sandbox-files/")
    await sim.stop()


async def test_served_files_head_range_and_missing(sim: HighLevelSimulator) -> None:
    message = await sim.customer_reply(ADA_LOVELACE_ID, "SMS", "r", media=[RECEIPT])
    [url] = message.attachments
    [served] = sim.files.values()
    async with httpx.AsyncClient(timeout=5.0) as client:
        head = await client.head(url)
        assert (head.status_code, head.content) == (200, b"")
        assert head.headers["Content-Length"] == str(len(RECEIPT[1]))
        assert head.headers["Content-Type"] == "application/pdf"
        ranged = await client.get(url, headers={"Range": "bytes=0-3"})
        assert (ranged.status_code, ranged.content) == (200, RECEIPT[1])  # Range ignored
        assert served.downloads == 1  # GETs only
        wrong_name = await client.get(url.rsplit("/", 1)[0] + "/other.pdf")
        unknown = await client.get(f"{sim.base_url}/sandbox-files/{'x' * 20}/receipt.pdf")
        assert (wrong_name.status_code, unknown.status_code) == (404, 404)
        assert "<Code>NoSuchKey</Code>" in unknown.text


async def test_file_faults_fail_then_recover(sim: HighLevelSimulator) -> None:
    message = await sim.customer_reply(ADA_LOVELACE_ID, "SMS", "p", media=[PHOTO])
    [url] = message.attachments
    sim.file_faults.error_next = 2
    sim.file_faults.latency = 0.2
    async with httpx.AsyncClient(timeout=5.0) as client:
        started = time.monotonic()
        statuses = [(await client.get(url)).status_code for _ in range(3)]
        elapsed = time.monotonic() - started
    assert statuses == [503, 503, 200]
    assert elapsed >= 3 * 0.2  # every answer waited for the injected latency


async def test_a_stalled_download_holds_until_the_client_gives_up(
    sim: HighLevelSimulator,
) -> None:
    message = await sim.customer_reply(ADA_LOVELACE_ID, "SMS", "p", media=[RECEIPT])
    [url] = message.attachments
    sim.file_faults.stall_after_bytes = 4
    received = b""
    timeout = httpx.Timeout(5.0, read=0.3)
    async with httpx.AsyncClient(timeout=timeout) as client:
        with pytest.raises(httpx.ReadTimeout):
            async with client.stream("GET", url) as response:
                assert response.headers["Content-Length"] == str(len(RECEIPT[1]))
                async for chunk in response.aiter_raw():
                    received += chunk
        assert received == RECEIPT[1][:4]
        sim.file_faults.stall_seconds = 0.05  # slow, then complete
        slow = await client.get(url)
    assert slow.content == RECEIPT[1]
