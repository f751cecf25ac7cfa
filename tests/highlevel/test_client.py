"""Every endpoint against the fake server: paths, headers, query/body, wrapped responses."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from pydantic import SecretStr

from bot.highlevel import (
    DEFAULT_BASE_URL,
    HighLevelClient,
    HighLevelError,
    MessageChannel,
    NotFoundError,
    RateLimiter,
    SendMessageRequest,
    UpsertContactRequest,
    ValidationError,
)
from bot.settings import DEFAULT_GHL_API_URL

from .conftest import LOCATION_ID, TOKEN, ClientFactory, FakeHighLevel, Reply
from .test_models import CONTACT_SAMPLE, MESSAGE_SAMPLE

SEND_OK = {"conversationId": "cv1", "messageId": "m1", "msg": "Message queued successfully."}


async def test_default_base_url_is_the_settings_default() -> None:
    # One place names HighLevel's host (bot.settings); the client agrees with it.
    client = HighLevelClient(token=SecretStr("t"), location_id="loc")
    try:
        assert str(client._http.base_url).rstrip("/") == DEFAULT_BASE_URL == DEFAULT_GHL_API_URL
    finally:
        await client.aclose()


async def test_send_headers_and_body(fake: FakeHighLevel, make_client: ClientFactory) -> None:
    fake.script("POST", "/conversations/messages", Reply(SEND_OK))
    client = make_client()
    sent = await client.send_message(
        SendMessageRequest(type=MessageChannel.SMS, contact_id="c1", message="Hello")
    )
    assert sent.conversation_id == "cv1"
    assert sent.message_id == "m1"
    [request] = fake.to("POST", "/conversations/messages")
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Version"] == "2021-04-15"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Accept"] == "application/json"
    assert request.headers["User-Agent"].startswith("ghl-bridge/")
    assert request.json() == {"type": "SMS", "contactId": "c1", "message": "Hello"}


async def test_contacts_family_sends_its_own_version(
    fake: FakeHighLevel, make_client: ClientFactory
) -> None:
    fake.script("GET", "/contacts/c1", Reply({"contact": CONTACT_SAMPLE}))
    fake.script("GET", "/conversations/cv1", Reply({"id": "cv1", "type": 1}))
    client = make_client()
    await client.get_contact("c1")
    await client.get_conversation("cv1")
    assert fake.to("GET", "/contacts/c1")[0].headers["Version"] == "2021-07-28"
    assert fake.to("GET", "/conversations/cv1")[0].headers["Version"] == "2021-04-15"


async def test_versions_are_configurable(fake: FakeHighLevel) -> None:
    fake.script("GET", "/contacts/c1", Reply({"contact": CONTACT_SAMPLE}))
    fake.script("GET", "/conversations/cv1", Reply({"id": "cv1"}))
    async with HighLevelClient(
        token=SecretStr(TOKEN),
        location_id=LOCATION_ID,
        base_url=fake.url,
        limiter=RateLimiter(),
        conversations_version="v3",
        contacts_version="v3-contacts",
    ) as client:
        await client.get_contact("c1")
        await client.get_conversation("cv1")
    assert fake.to("GET", "/contacts/c1")[0].headers["Version"] == "v3-contacts"
    assert fake.to("GET", "/conversations/cv1")[0].headers["Version"] == "v3"


async def test_find_contact_by_phone_and_email(
    fake: FakeHighLevel, make_client: ClientFactory
) -> None:
    fake.script(
        "GET",
        "/contacts/search/duplicate",
        Reply({"contact": CONTACT_SAMPLE, "traceId": "t"}),
        Reply({"contact": None}),
    )
    client = make_client()
    found = await client.find_contact(phone="+18832327657")
    missing = await client.find_contact(email="nobody+tag@example.com")
    assert found is not None
    assert found.id == "seD4PfOuKoVMLkEZqohJ"
    assert missing is None
    first, second = fake.to("GET", "/contacts/search/duplicate")
    assert first.query == {"locationId": LOCATION_ID, "number": "+18832327657"}
    assert second.query == {"locationId": LOCATION_ID, "email": "nobody+tag@example.com"}
    assert first.headers["Version"] == "2021-07-28"
    with pytest.raises(ValueError, match="phone or email"):
        await client.find_contact()


async def test_find_contact_without_contact_key_is_unexpected(
    fake: FakeHighLevel, make_client: ClientFactory
) -> None:
    fake.script("GET", "/contacts/search/duplicate", Reply({"contacts": []}))
    with pytest.raises(HighLevelError, match="unexpected response") as info:
        await make_client().find_contact(phone="+15550000000")
    assert info.value.may_have_acted is False


async def test_upsert_contact_adds_location(
    fake: FakeHighLevel, make_client: ClientFactory
) -> None:
    fake.script(
        "POST",
        "/contacts/upsert",
        Reply({"new": False, "contact": CONTACT_SAMPLE, "traceId": "tr"}),
    )
    response = await make_client().upsert_contact(
        UpsertContactRequest(phone="+18832327657", first_name="rubika")
    )
    assert response.is_new is False
    assert response.contact.phone == "+18832327657"
    [request] = fake.to("POST", "/contacts/upsert")
    assert request.json() == {
        "phone": "+18832327657",
        "firstName": "rubika",
        "locationId": LOCATION_ID,
    }
    assert request.headers["Version"] == "2021-07-28"


@pytest.mark.parametrize("wrapped", [True, False])
async def test_get_contact_wrapped_or_flat(
    fake: FakeHighLevel, make_client: ClientFactory, wrapped: bool
) -> None:
    body = {"contact": CONTACT_SAMPLE} if wrapped else CONTACT_SAMPLE
    fake.script("GET", "/contacts/seD4PfOuKoVMLkEZqohJ", Reply(body))
    contact = await make_client().get_contact("seD4PfOuKoVMLkEZqohJ")
    assert contact.last_name == "Deo"


async def test_ids_are_quoted_into_one_path_segment(
    fake: FakeHighLevel, make_client: ClientFactory
) -> None:
    fake.script("GET", "/contacts/a/../b", Reply({"contact": CONTACT_SAMPLE}))
    await make_client().get_contact("a/../b")
    [request] = fake.requests
    assert request.raw_path == "/contacts/a%2F..%2Fb"


async def test_search_conversations_params(fake: FakeHighLevel, make_client: ClientFactory) -> None:
    fake.script(
        "GET",
        "/conversations/search",
        Reply({"conversations": [{"id": "cv1", "type": "TYPE_PHONE"}], "total": 1}),
    )
    result = await make_client().search_conversations(
        contact_id="c1",
        sort_by="last_message_date",
        sort="desc",
        limit=5,
        start_after_date=1711563229000,
        last_message_direction="inbound",
    )
    assert [c.id for c in result.conversations] == ["cv1"]
    assert fake.to("GET", "/conversations/search")[0].query == {
        "locationId": LOCATION_ID,
        "contactId": "c1",
        "sortBy": "last_message_date",
        "sort": "desc",
        "limit": "5",
        "startAfterDate": "1711563229000",
        "lastMessageDirection": "inbound",
    }


async def test_get_conversation(fake: FakeHighLevel, make_client: ClientFactory) -> None:
    fake.script(
        "GET",
        "/conversations/cv1",
        Reply(
            {
                "id": "cv1",
                "contactId": "c1",
                "locationId": LOCATION_ID,
                "deleted": False,
                "inbox": True,
                "type": 2,
                "unreadCount": 0,
                "traceId": "x",
            }
        ),
    )
    conversation = await make_client().get_conversation("cv1")
    assert (conversation.contact_id, conversation.type, conversation.inbox) == ("c1", 2, True)


REAL_LIST_SHAPE: dict[str, Any] = {
    "messages": {"lastMessageId": "m9", "nextPage": True, "messages": [MESSAGE_SAMPLE]},
    "traceId": "t",
}
DOCUMENTED_LIST_SHAPE: dict[str, Any] = {
    "lastMessageId": "m9",
    "nextPage": True,
    "messages": [MESSAGE_SAMPLE],
}


@pytest.mark.parametrize("body", [REAL_LIST_SHAPE, DOCUMENTED_LIST_SHAPE], ids=["real", "doc"])
async def test_list_messages_both_shapes(
    fake: FakeHighLevel, make_client: ClientFactory, body: dict[str, Any]
) -> None:
    fake.script("GET", "/conversations/cv1/messages", Reply(body))
    page = await make_client().list_messages(
        "cv1", last_message_id="m5", limit=10, types=["TYPE_SMS", "TYPE_EMAIL"]
    )
    assert page.last_message_id == "m9"
    assert page.next_page is True
    assert [m.id for m in page.messages] == [MESSAGE_SAMPLE["id"]]
    assert fake.requests[0].query == {
        "limit": "10",
        "lastMessageId": "m5",
        "type": "TYPE_SMS,TYPE_EMAIL",
    }


@pytest.mark.parametrize("wrapped", [True, False])
async def test_get_message_wrapped_or_flat(
    fake: FakeHighLevel, make_client: ClientFactory, wrapped: bool
) -> None:
    body = {"message": MESSAGE_SAMPLE, "traceId": "t"} if wrapped else MESSAGE_SAMPLE
    fake.script("GET", "/conversations/messages/m1", Reply(body))
    message = await make_client().get_message("m1")
    assert message.message_type == "TYPE_EMAIL"
    assert message.conversation_id == "cv1"


EMAIL_SAMPLE: dict[str, Any] = {
    "id": "em1",
    "threadId": "m1",
    "locationId": LOCATION_ID,
    "contactId": "c1",
    "conversationId": "cv1",
    "dateAdded": "2024-03-27T18:13:49.000Z",
    "subject": "Order confirm",
    "body": "<p>Hi there</p>",
    "direction": "inbound",
    "contentType": "text/html",
    "from": "Ana <ana@example.com>",
    "to": "shop@example.com",
    "replyToMessageId": "em0",
    "provider": "Leadconnector Gmail",
}


@pytest.mark.parametrize("wrapped", [True, False])
async def test_get_email_wrapped_or_flat(
    fake: FakeHighLevel, make_client: ClientFactory, wrapped: bool
) -> None:
    body = {"emailMessage": EMAIL_SAMPLE} if wrapped else EMAIL_SAMPLE
    fake.script("GET", "/conversations/messages/email/em1", Reply(body))
    email = await make_client().get_email("em1")
    assert email.to == ["shop@example.com"]
    assert email.body == "<p>Hi there</p>"
    assert email.reply_to_message_id == "em0"
    assert fake.requests[0].headers["Version"] == "2021-04-15"


async def test_cancel_scheduled_success(fake: FakeHighLevel, make_client: ClientFactory) -> None:
    fake.script(
        "DELETE",
        "/conversations/messages/m1/schedule",
        Reply({"status": 200, "message": "Cancelled"}),
    )
    fake.script(
        "DELETE",
        "/conversations/messages/email/em1/schedule",
        Reply({"status": 204, "message": "Cancelled"}),
    )
    client = make_client()
    assert (await client.cancel_scheduled_message("m1")).status == 200
    assert (await client.cancel_scheduled_email("em1")).status == 204
    assert [r.headers["Version"] for r in fake.requests] == ["2021-04-15", "2021-04-15"]


async def test_cancel_with_error_status_inside_200(
    fake: FakeHighLevel, make_client: ClientFactory
) -> None:
    fake.script(
        "DELETE",
        "/conversations/messages/m1/schedule",
        Reply({"status": 404, "message": "Failed cancel the scheduled message"}),
    )
    fake.script(
        "DELETE",
        "/conversations/messages/email/em1/schedule",
        Reply({"status": 400, "message": "Message is not scheduled"}),
    )
    client = make_client()
    with pytest.raises(NotFoundError) as not_found:
        await client.cancel_scheduled_message("m1")
    assert not_found.value.status_code == 404
    assert not_found.value.message == "Failed cancel the scheduled message"
    assert not_found.value.may_have_acted is False
    with pytest.raises(ValidationError, match="not scheduled"):
        await client.cancel_scheduled_email("em1")
    assert len(fake.requests) == 2  # an answered refusal is not retried


async def test_upload_attachments_multipart(
    fake: FakeHighLevel, make_client: ClientFactory
) -> None:
    fake.script(
        "POST",
        "/conversations/messages/upload",
        Reply(
            {
                "uploadedFiles": {
                    "a.pdf": "https://cdn.example/a.pdf",
                    "b.png": "https://cdn.example/b.png",
                }
            }
        ),
    )
    urls = await make_client().upload_attachments(
        conversation_id="cv1",
        contact_id="c1",
        files=[("a.pdf", b"%PDF-1.4 data", "application/pdf"), ("b.png", b"\x89PNG", "image/png")],
    )
    assert urls == {"a.pdf": "https://cdn.example/a.pdf", "b.png": "https://cdn.example/b.png"}
    [request] = fake.requests
    assert request.headers["Content-Type"].startswith("multipart/form-data")
    assert request.headers["Version"] == "2021-04-15"
    assert request.form == {"conversationId": "cv1", "contactId": "c1", "locationId": LOCATION_ID}
    assert request.files == [
        ("fileAttachment", "a.pdf", b"%PDF-1.4 data", "application/pdf"),
        ("fileAttachment", "b.png", b"\x89PNG", "image/png"),
    ]


async def test_unparseable_send_response_may_have_acted(
    fake: FakeHighLevel, make_client: ClientFactory
) -> None:
    fake.script("POST", "/conversations/messages", Reply({"ok": True}))
    with pytest.raises(HighLevelError, match="unexpected response") as info:
        await make_client().send_message(
            SendMessageRequest(type=MessageChannel.SMS, contact_id="c1", message="x")
        )
    assert type(info.value) is HighLevelError
    assert "conversationId: Field required" in info.value.message
    assert info.value.may_have_acted is True
    assert len(fake.requests) == 1


async def test_non_json_read_response_is_unexpected(
    fake: FakeHighLevel, make_client: ClientFactory
) -> None:
    fake.script("GET", "/conversations/cv1", Reply(raw=b"<html>gateway</html>"))
    with pytest.raises(HighLevelError, match="not JSON") as info:
        await make_client().get_conversation("cv1")
    assert info.value.may_have_acted is False


async def test_token_and_body_never_logged_above_debug(
    fake: FakeHighLevel, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    fake.script(
        "POST",
        "/conversations/messages",
        Reply(
            {"statusCode": 429, "message": "slow down"}, status=429, headers={"Retry-After": "0"}
        ),
        Reply(SEND_OK),
    )
    with caplog.at_level(logging.DEBUG, logger="bot.highlevel"):
        await make_client().send_message(
            SendMessageRequest(type=MessageChannel.SMS, contact_id="c1", message="secret text")
        )
    assert any("POST /conversations/messages -> 200" in r.getMessage() for r in caplog.records)
    assert any(r.levelno == logging.INFO for r in caplog.records)  # the retry notice
    for record in caplog.records:
        assert TOKEN not in record.getMessage()
        assert "secret text" not in record.getMessage()
