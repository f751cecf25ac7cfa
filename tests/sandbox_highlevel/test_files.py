"""Files over real HTTP: multipart and signed uploads, limits, sends with attachments, serving."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from bot.sandbox.highlevel import ADA_LOVELACE_ID, HighLevelSimulator
from tests.sandbox_highlevel._spec_check import CONVERSATIONS, response_errors
from tests.sandbox_highlevel.conftest import Receiver, api_headers

UPLOAD = "/conversations/messages/upload"
INITIATE = "/conversations/messages/upload/initiate"
COMPLETE = "/conversations/messages/upload/complete"
MIB = 1024 * 1024
TOO_BIG = {"status": 413, "message": "File size exceeds the limit"}
WRONG_TYPE = {"status": 415, "message": "Unsupported file type"}


def without_trace(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "traceId"}


async def conversation_of_ada(api: httpx.AsyncClient, headers: dict[str, str] | None = None) -> str:
    sent = await api.post(
        "/conversations/messages",
        json={"type": "SMS", "contactId": ADA_LOVELACE_ID, "message": "x"},
        headers=headers,
    )
    assert sent.status_code == 200, sent.text
    conversation_id: str = sent.json()["conversationId"]
    return conversation_id


async def initiate(
    api: httpx.AsyncClient, sim: HighLevelSimulator, conversation_id: str, **overrides: Any
) -> httpx.Response:
    body = {
        "locationId": sim.location_id,
        "conversationId": conversation_id,
        "filename": "clip.mp4",
        "contentType": "video/mp4",
        "channel": "SMS",
        **overrides,
    }
    return await api.post(INITIATE, json=body)


def complete_body(
    sim: HighLevelSimulator, conversation_id: str, started: dict[str, Any], filename: str
) -> dict[str, Any]:
    return {
        "uploadId": started["uploadId"],
        "filePath": started["filePath"],
        "locationId": sim.location_id,
        "conversationId": conversation_id,
        "filename": filename,
    }


async def test_multipart_upload_refuses_by_extension_declared_type_and_size(
    api: httpx.AsyncClient, sim: HighLevelSimulator
) -> None:
    conversation_id = await conversation_of_ada(api)
    form = {"conversationId": conversation_id, "locationId": sim.location_id}
    cases = [
        ("tool.exe", "application/octet-stream", WRONG_TYPE),
        ("menu.pdf", "application/x-msdownload", WRONG_TYPE),  # contradicts the extension
    ]
    for name, content_type, expected in cases:
        refused = await api.post(
            UPLOAD,
            data=form,
            files=[
                ("fileAttachment", ("fine.png", b"\x89PNG", "image/png")),
                ("fileAttachment", (name, b"MZ", content_type)),
            ],
        )
        assert (refused.status_code, without_trace(refused.json())) == (415, expected)
    assert sim.uploads == {}  # a refused request keeps none of its files
    generic = await api.post(
        UPLOAD,
        data=form,
        files={"fileAttachment": ("menu.pdf", b"%PDF", "application/octet-stream")},
    )
    assert generic.status_code == 200  # a generic type does not contradict .pdf
    sim.upload_max_bytes = 10
    too_big = await api.post(
        UPLOAD, data=form, files={"fileAttachment": ("a.txt", b"x" * 11, "text/plain")}
    )
    assert (too_big.status_code, without_trace(too_big.json())) == (413, TOO_BIG)
    at_limit = await api.post(
        UPLOAD, data=form, files={"fileAttachment": ("a.txt", b"x" * 10, "text/plain")}
    )
    assert at_limit.status_code == 200
    assert sorted(u.filename for u in sim.uploads.values()) == ["a.txt", "menu.pdf"]
    assert {u.via for u in sim.uploads.values()} == {"upload"}


async def test_initiate_put_complete_then_send_with_the_url(
    api: httpx.AsyncClient, sim: HighLevelSimulator, receiver: Receiver
) -> None:
    sim.webhook_url = receiver.url
    conversation_id = await conversation_of_ada(api)
    before_ms = time.time() * 1000
    answer = await initiate(api, sim, conversation_id, fileSize=7)
    after_ms = time.time() * 1000
    assert answer.status_code == 200, answer.text
    started = answer.json()
    assert response_errors(CONVERSATIONS, "POST", INITIATE, 200, started) == []
    assert started["maxFileSize"] == 5 * MIB
    assert before_ms + 15 * 60_000 <= started["expiresAt"] <= after_ms + 15 * 60_000
    assert started["filePath"].startswith(f"location/{sim.location_id}/conversations/")
    assert started["uploadUrl"].startswith(sim.base_url)
    async with httpx.AsyncClient(timeout=5.0) as storage:  # a signed URL needs no token
        put = await storage.put(
            started["uploadUrl"], content=b"\x00\x00mp4!!", headers={"Content-Type": "video/mp4"}
        )
    assert put.status_code == 200, put.text
    body = complete_body(sim, conversation_id, started, "holiday clip.mp4")
    done = await api.post(COMPLETE, json=body)
    assert done.status_code == 200, done.text
    assert response_errors(CONVERSATIONS, "POST", COMPLETE, 200, done.json()) == []
    url = done.json()["uploadedFiles"]["holiday clip.mp4"]
    assert done.json()["metadata"] == {"size": 7, "contentType": "video/mp4"}
    again = await api.post(COMPLETE, json=body)  # completing twice is one file
    assert again.json()["uploadedFiles"]["holiday clip.mp4"] == url
    assert [u.via for u in sim.uploads.values()] == ["signed"]

    async with httpx.AsyncClient(timeout=5.0) as anonymous:
        fetched = await anonymous.get(url)
        head = await anonymous.head(url)
    assert (fetched.status_code, fetched.content) == (200, b"\x00\x00mp4!!")
    assert fetched.headers["Content-Type"] == "video/mp4"
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Length"] == "7"

    sent = await api.post(
        "/conversations/messages",
        json={"type": "SMS", "contactId": ADA_LOVELACE_ID, "message": "see", "attachments": [url]},
    )
    assert sent.status_code == 200, sent.text
    message_id = sent.json()["messageId"]
    got = (await api.get(f"/conversations/messages/{message_id}")).json()["message"]
    assert got["attachments"] == [url]
    listed = (await api.get(f"/conversations/{conversation_id}/messages")).json()
    assert listed["messages"]["messages"][0]["attachments"] == [url]
    await sim.drain_webhooks()
    outbound = [json.loads(b) for b in receiver.bodies]
    assert [e["attachments"] for e in outbound if e["messageId"] == message_id] == [[url]]
    assert sim.attachment_send_count(url) == 1
    [record] = sim.sends_with_attachments(url)
    assert (record.channel, record.message_ids, record.source) == ("SMS", [message_id], "api")


async def test_initiate_limits_follow_the_channel_and_type(
    api: httpx.AsyncClient, sim: HighLevelSimulator
) -> None:
    conversation_id = await conversation_of_ada(api)
    whatsapp = await initiate(api, sim, conversation_id, channel="WHATSAPP", fileSize=60 * MIB)
    assert whatsapp.status_code == 200
    assert whatsapp.json()["maxFileSize"] == 100 * MIB
    for channel, size in (("SMS", 5 * MIB + 1), ("EMAIL", 6 * MIB), ("WHATSAPP", 100 * MIB + 1)):
        refused = await initiate(api, sim, conversation_id, channel=channel, fileSize=size)
        assert (refused.status_code, without_trace(refused.json())) == (413, TOO_BIG), channel
    for filename, content_type in (("run.exe", "application/octet-stream"), ("a.pdf", "text/html")):
        wrong = await initiate(
            api, sim, conversation_id, filename=filename, contentType=content_type
        )
        assert (wrong.status_code, without_trace(wrong.json())) == (415, WRONG_TYPE)
    missing = await initiate(api, sim, conversation_id, channel=None)
    assert missing.status_code == 422
    unknown = await initiate(api, sim, "c" * 20)
    assert unknown.status_code == 400
    assert len(sim.signed_uploads) == 1  # only the accepted initiate


async def test_signed_put_refuses_too_big_wrong_type_unknown_and_expired(
    api: httpx.AsyncClient, sim: HighLevelSimulator
) -> None:
    conversation_id = await conversation_of_ada(api)
    sim.upload_max_bytes = 10
    started = (await initiate(api, sim, conversation_id)).json()
    assert started["maxFileSize"] == 10
    url = started["uploadUrl"]
    mp4 = {"Content-Type": "video/mp4"}
    async with httpx.AsyncClient(timeout=5.0) as storage:
        too_big = await storage.put(url, content=b"x" * 11, headers=mp4)
        assert too_big.status_code == 413
        assert "<Code>EntityTooLarge</Code>" in too_big.text
        retyped = await storage.put(url, content=b"x", headers={"Content-Type": "image/png"})
        assert retyped.status_code == 403
        unknown = await storage.put(url + "x", content=b"x", headers=mp4)
        assert unknown.status_code == 403
        assert sim.signed_uploads[started["uploadId"]].data is None
        fits = await storage.put(url, content=b"x" * 10, headers=mp4)
        assert fits.status_code == 200
        sim.expire_upload(started["uploadId"])
        expired = await storage.put(url, content=b"y", headers=mp4)
        assert expired.status_code == 403
        assert sim.signed_uploads[started["uploadId"]].data == b"x" * 10
        sim.signed_url_ttl = 0.0  # a URL that is already past its expiresAt
        stale = (await initiate(api, sim, conversation_id)).json()
        late = await storage.put(stale["uploadUrl"], content=b"z", headers=mp4)
        assert late.status_code == 403
    # The bytes PUT before expiry are in storage: completing still works.
    done = await api.post(COMPLETE, json=complete_body(sim, conversation_id, started, "a.mp4"))
    assert done.status_code == 200


async def test_complete_without_put_or_with_wrong_ids_is_404(
    api: httpx.AsyncClient, sim: HighLevelSimulator
) -> None:
    conversation_id = await conversation_of_ada(api)
    started = (await initiate(api, sim, conversation_id)).json()
    body = complete_body(sim, conversation_id, started, "clip.mp4")
    never_put = await api.post(COMPLETE, json=body)
    assert never_put.status_code == 404
    assert never_put.json()["message"].startswith("File not found in storage")
    for wrong in ({"uploadId": "nope"}, {"filePath": "location/x/y.mp4"}):
        answer = await api.post(COMPLETE, json={**body, **wrong})
        assert answer.status_code == 404
    foreign = await api.post(COMPLETE, json={**body, "locationId": "elsewhere00000000001"})
    assert foreign.status_code == 403
    unknown_field = await api.post(COMPLETE, json={**body, "size": 3})
    assert unknown_field.status_code == 422
    assert sim.uploads == {}


async def test_file_routes_check_the_token_location_and_scope() -> None:
    sim = HighLevelSimulator(locations=2)
    await sim.start()
    try:
        second = sim.location_ids[1]
        headers = api_headers(sim)
        async with httpx.AsyncClient(base_url=sim.base_url, timeout=5.0) as client:
            first_conv = await conversation_of_ada(client, headers)
            body = {
                "locationId": sim.location_id,
                "conversationId": first_conv,
                "filename": "a.png",
                "contentType": "image/png",
                "channel": "SMS",
            }
            own = await client.post(INITIATE, json=body, headers=headers)
            assert own.status_code == 200
            other = {"Authorization": f"Bearer {sim.pit_for(second)}", "Version": "2021-04-15"}
            for path, payload in (
                (INITIATE, body),
                (INITIATE, {**body, "locationId": second}),  # its own location, not its chat
                (COMPLETE, complete_body(sim, first_conv, own.json(), "a.png")),
            ):
                answer = await client.post(path, json=payload, headers=other)
                assert answer.status_code == 403, path
            multipart = await client.post(
                UPLOAD,
                data={"conversationId": first_conv, "locationId": sim.location_id},
                files={"fileAttachment": ("a.png", b"\x89PNG", "image/png")},
                headers=other,
            )
            assert multipart.status_code == 403
            no_token = await client.post(INITIATE, json=body, headers={"Version": "2021-04-15"})
            assert no_token.status_code == 401
            read_only = await oauth_token(client, sim, "conversations.readonly")
            bearer = {"Authorization": f"Bearer {read_only}", "Version": "2021-04-15"}
            refused = await client.post(INITIATE, json=body, headers=bearer)
            assert refused.status_code == 401
            assert refused.json()["message"] == "The token is not authorized for this scope."
            writer = await oauth_token(client, sim, "conversations/message.write")
            bearer = {"Authorization": f"Bearer {writer}", "Version": "2021-04-15"}
            assert (await client.post(INITIATE, json=body, headers=bearer)).status_code == 200
    finally:
        await sim.stop()


async def oauth_token(client: httpx.AsyncClient, sim: HighLevelSimulator, scope: str) -> str:
    """A Location access token for location 1 whose install granted ``scope``."""
    redirect = "http://127.0.0.1:9/cb"
    consent = await client.get(
        "/oauth/chooselocation",
        params={
            "response_type": "code",
            "redirect_uri": redirect,
            "client_id": sim.oauth.client_id,
            "scope": scope,
            "location": sim.location_id,
        },
    )
    assert consent.status_code == 302
    [code] = parse_qs(urlsplit(consent.headers["Location"]).query)["code"]
    form = {
        "client_id": sim.oauth.client_id,
        "client_secret": sim.oauth.client_secret,
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect,
    }
    answer = await client.post("/oauth/token", data=form)
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "https://firebasestorage.example.com/o/cat.png?alt=media",
            "attachments must contain at least 1 elements",
        ),
        ("ftp://files.example.com/cat.png", "each value in attachments must be a URL address"),
        ("cat.png", "each value in attachments must be a URL address"),
    ],
)
async def test_sends_refuse_unusable_attachment_urls(
    api: httpx.AsyncClient, sim: HighLevelSimulator, url: str, message: str
) -> None:
    answer = await api.post(
        "/conversations/messages",
        json={"type": "SMS", "contactId": ADA_LOVELACE_ID, "attachments": [url]},
    )
    assert answer.status_code == 422
    assert answer.json()["message"] == [message]
    assert sim.messages == {} and sim.attachment_sends == []


async def test_each_send_of_a_url_is_counted(
    api: httpx.AsyncClient, sim: HighLevelSimulator
) -> None:
    url = "https://cdn.example.com/menu.pdf?v=2"  # not served by the simulator: accepted
    for channel in ("SMS", "SMS", "Email", "GMB"):
        answer = await api.post(
            "/conversations/messages",
            json={"type": channel, "contactId": ADA_LOVELACE_ID, "attachments": [url]},
        )
        assert answer.status_code == 200, answer.text
    plain = await api.post(
        "/conversations/messages",
        json={"type": "SMS", "contactId": ADA_LOVELACE_ID, "message": "t"},
    )
    assert plain.status_code == 200
    assert sim.attachment_send_count(url) == 4
    assert [s.channel for s in sim.sends_with_attachments()] == ["SMS", "SMS", "Email", "GMB"]
    email = sim.sends_with_attachments()[2]
    assert email.email_message_id is not None
    assert sim.emails[email.email_message_id].attachments == [url]
    assert sim.attachment_send_count("https://cdn.example.com/other.pdf") == 0
