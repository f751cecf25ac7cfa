"""Request validation/serialisation and parsing of real-shaped HighLevel payloads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pydantic
import pytest

from bot.highlevel import (
    Contact,
    Conversation,
    ConversationSearchResult,
    EmailMessage,
    EmailReplyMode,
    ForwardConfig,
    Message,
    MessageChannel,
    MessagePage,
    SendMessageRequest,
    SendMessageResponse,
    UpsertContactRequest,
    UpsertContactResponse,
)

# The seed's full example body ("Send a new message" page), verbatim.
SEED_BODY: dict[str, Any] = {
    "type": "Email",
    "contactId": "abc123def456",
    "appointmentId": "appt123",
    "attachments": ["https://storage.com/file1.pdf", "https://storage.com/file2.jpg"],
    "emailFrom": "sender@company.com",
    "emailCc": ["cc1@company.com", "cc2@company.com"],
    "emailBcc": ["bcc1@company.com", "bcc2@company.com"],
    "html": "<p>Hello World</p>",
    "message": "Hello, how can I help you today?",
    "subject": "Important Update",
    "replyMessageId": "msg123",
    "templateId": "template123",
    "threadId": "thread123",
    "scheduledTimestamp": 1669287863,
    "conversationProviderId": "provider123",
    "emailTo": "recipient@company.com",
    "emailReplyMode": "reply_all",
    "fromNumber": "+1499499299",
    "toNumber": "+1439499299",
}


def test_seed_body_round_trips_through_the_request_model() -> None:
    request = SendMessageRequest.model_validate(SEED_BODY)
    assert request.type is MessageChannel.EMAIL
    assert request.email_reply_mode is EmailReplyMode.REPLY_ALL
    assert request.to_wire() == SEED_BODY


def test_send_body_has_only_set_fields_in_camel_case() -> None:
    request = SendMessageRequest(
        type=MessageChannel.SMS, contact_id="c1", message="Hi", from_number="+15550001111"
    )
    assert request.to_wire() == {
        "type": "SMS",
        "contactId": "c1",
        "message": "Hi",
        "fromNumber": "+15550001111",
    }


def test_spec_artefacts_subtype_and_status_cannot_be_sent() -> None:
    request = SendMessageRequest(type=MessageChannel.WHATSAPP, contact_id="c1", message="x")
    wire = request.to_wire()
    assert "subType" not in wire
    assert "status" not in wire
    with pytest.raises(pydantic.ValidationError):
        SendMessageRequest.model_validate(
            {"type": "SMS", "contactId": "c1", "subType": "SMS", "status": "pending"}
        )


@pytest.mark.parametrize(
    "wire", ["SMS", "RCS", "Email", "WhatsApp", "IG", "FB", "Custom", "Live_Chat", "TIKTOK", "GMB"]
)
def test_every_channel_is_accepted(wire: str) -> None:
    request = SendMessageRequest.model_validate({"type": wire, "contactId": "c1"})
    assert request.to_wire()["type"] == wire


def test_unknown_channel_and_missing_contact_are_rejected() -> None:
    with pytest.raises(pydantic.ValidationError):
        SendMessageRequest.model_validate({"type": "Telegram", "contactId": "c1"})
    with pytest.raises(pydantic.ValidationError, match="contactId"):
        SendMessageRequest.model_validate({"type": "SMS"})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email_from", "not-an-address"),
        ("email_to", "someone@"),
        ("email_cc", ["ok@example.com", "broken@@example.com"]),
        ("email_bcc", ["no-at-sign.example.com"]),
    ],
)
def test_invalid_email_addresses_are_rejected(field: str, value: object) -> None:
    with pytest.raises(pydantic.ValidationError, match="invalid email address"):
        SendMessageRequest.model_validate({"type": "Email", "contact_id": "c1", field: value})


def test_email_addresses_are_not_checked_for_deliverability() -> None:
    # No DNS here: a syntactically valid address on a non-existent domain passes.
    request = SendMessageRequest(
        type=MessageChannel.EMAIL,
        contact_id="c1",
        email_cc=["someone@no-such-domain-ghl-bridge-4711.com"],
    )
    assert request.email_cc == ["someone@no-such-domain-ghl-bridge-4711.com"]


def test_scheduled_timestamp_is_seconds() -> None:
    assert (
        SendMessageRequest(
            type=MessageChannel.SMS, contact_id="c1", scheduled_timestamp=1669287863
        ).to_wire()["scheduledTimestamp"]
        == 1669287863
    )
    with pytest.raises(pydantic.ValidationError, match="milliseconds"):
        SendMessageRequest(
            type=MessageChannel.SMS, contact_id="c1", scheduled_timestamp=1669287863000
        )
    with pytest.raises(pydantic.ValidationError):
        SendMessageRequest.model_validate(
            {"type": "SMS", "contactId": "c1", "scheduledTimestamp": 1669287863.5}
        )


def test_scheduled_timestamp_from_aware_datetime_becomes_whole_seconds() -> None:
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    request = SendMessageRequest.model_validate(
        {"type": "SMS", "contactId": "c1", "scheduledTimestamp": when}
    )
    assert request.scheduled_timestamp == int(when.timestamp())
    with pytest.raises(pydantic.ValidationError, match="timezone-aware"):
        SendMessageRequest.model_validate(
            {"type": "SMS", "contactId": "c1", "scheduledTimestamp": datetime(2030, 1, 2)}
        )


def test_email_reply_mode_and_forward_serialise_nested() -> None:
    request = SendMessageRequest(
        type=MessageChannel.EMAIL,
        contact_id="c1",
        email_reply_mode=EmailReplyMode.REPLY,
        forward=ForwardConfig(is_forwarded=True, message_id="m1", to_email="fwd@example.com"),
    )
    assert request.to_wire()["forward"] == {
        "isForwarded": True,
        "messageId": "m1",
        "toEmail": "fwd@example.com",
    }
    assert request.to_wire()["emailReplyMode"] == "reply"
    with pytest.raises(pydantic.ValidationError):
        SendMessageRequest.model_validate(
            {"type": "Email", "contactId": "c1", "emailReplyMode": "forward"}
        )


def test_send_response_seed_and_gmb_shapes() -> None:
    seed = SendMessageResponse.model_validate(
        {
            "conversationId": "ABC12h2F6uBrIkfXYazb",
            "messageId": "t22c6DQcTDf3MjRhwf77",
            "emailMessageId": "rnGyqh2F6uBrIkfhFo9A",
            "messageIds": ["<string>"],
            "msg": "Message queued successfully.",
            "status": "pending",
        }
    )
    assert seed.message_id == "t22c6DQcTDf3MjRhwf77"
    assert seed.email_message_id == "rnGyqh2F6uBrIkfhFo9A"
    assert seed.status == "pending"
    gmb = SendMessageResponse.model_validate(
        {"conversationId": "conv1", "messageIds": ["g1", "g2"], "traceId": "t-1"}
    )
    assert gmb.message_id is None
    assert gmb.message_ids == ["g1", "g2"]


CONTACT_SAMPLE: dict[str, Any] = {
    "id": "seD4PfOuKoVMLkEZqohJ",
    "name": "rubika deo",
    "locationId": "ve9EPM428h8vShlRW1KT",
    "firstName": "rubika",
    "lastName": "Deo",
    "email": "rubika@deos.com",
    "emailLowerCase": "rubika@deos.com",
    "phone": "+18832327657",
    "dnd": False,
    "dndSettings": {
        "SMS": {"status": "active", "message": "opted out by STOP", "code": "STOP"},
        "Email": {"status": "inactive"},
    },
    "tags": ["vip", "slack"],
    "dateAdded": "2021-07-02T05:18:26.704Z",
    "customFields": [{"id": "f1", "value": "x"}],
    "attributionSource": {"medium": "api"},
}


def test_contact_parses_real_shape_and_ignores_extras() -> None:
    contact = Contact.model_validate(CONTACT_SAMPLE)
    assert contact.first_name == "rubika"
    assert contact.dnd_settings is not None
    assert contact.dnd_settings["SMS"].status == "active"
    assert contact.dnd_settings["SMS"].code == "STOP"
    assert contact.tags == ["vip", "slack"]
    assert contact.date_added == datetime(2021, 7, 2, 5, 18, 26, 704000, tzinfo=UTC)
    sparse = Contact.model_validate({"id": "c2", "tags": None})
    assert sparse.tags == []
    assert sparse.email is None


def test_upsert_request_and_response() -> None:
    request = UpsertContactRequest(phone="+15550001111", first_name="Ana", tags=["slack"])
    assert request.to_wire() == {"phone": "+15550001111", "firstName": "Ana", "tags": ["slack"]}
    with pytest.raises(pydantic.ValidationError, match="invalid email address"):
        UpsertContactRequest(email="nope")
    response = UpsertContactResponse.model_validate(
        {"new": True, "contact": CONTACT_SAMPLE, "traceId": "tr-9"}
    )
    assert response.is_new is True
    assert response.contact.id == "seD4PfOuKoVMLkEZqohJ"
    assert response.trace_id == "tr-9"


MESSAGE_SAMPLE: dict[str, Any] = {
    "id": "ve9EPM428h8vShlRW1KT",
    "altId": "ext-1",
    "type": 3,
    "messageType": "TYPE_EMAIL",
    "locationId": "loc1",
    "contactId": "con1",
    "conversationId": "cv1",
    "dateAdded": "2024-03-27T18:13:49.000Z",
    "dateUpdated": "2024-03-27T18:13:50.000Z",
    "direction": "outbound",
    "status": "delivered",
    "contentType": "text/html",
    "source": "api",
    "userId": "u1",
    "meta": {"email": {"messageIds": ["em1", "em2"]}},
}


def test_message_parses_and_tolerates_missing_attachments() -> None:
    message = Message.model_validate(MESSAGE_SAMPLE)
    assert message.type == 3
    assert message.meta is not None
    assert message.meta.email is not None
    assert message.meta.email.message_ids == ["em1", "em2"]
    assert message.date_added == datetime(2024, 3, 27, 18, 13, 49, tzinfo=UTC)
    assert message.attachments == []
    assert message.alt_id == "ext-1"
    assert message.body is None


def test_message_page_documented_shape() -> None:
    page = MessagePage.model_validate(
        {"lastMessageId": "m2", "nextPage": True, "messages": [MESSAGE_SAMPLE]}
    )
    assert page.next_page is True
    assert page.messages[0].id == "ve9EPM428h8vShlRW1KT"


def test_email_to_accepts_list_or_string() -> None:
    base = {
        "id": "em1",
        "threadId": "th1",
        "from": "Shop <shop@example.com>",
        "subject": "Re: order",
        "body": "<p>hi</p>",
        "dateAdded": "2024-03-27T18:13:49.000Z",
    }
    as_list = EmailMessage.model_validate({**base, "to": ["a@example.com"], "cc": ["b@x.io"]})
    as_string = EmailMessage.model_validate({**base, "to": "a@example.com", "cc": None})
    assert as_list.to == as_string.to == ["a@example.com"]
    assert as_list.cc == ["b@x.io"]
    assert as_string.cc == []
    assert as_string.from_ == "Shop <shop@example.com>"
    assert as_string.thread_id == "th1"


def test_conversation_type_is_number_from_get_and_string_from_search() -> None:
    by_id = Conversation.model_validate(
        {
            "id": "cv1",
            "contactId": "c1",
            "locationId": "l1",
            "deleted": False,
            "inbox": True,
            "type": 1,
            "unreadCount": 2,
            "starred": True,
        }
    )
    assert by_id.type == 1
    result = ConversationSearchResult.model_validate(
        {
            "conversations": [
                {
                    "id": "cv1",
                    "contactId": "c1",
                    "type": "TYPE_PHONE",
                    "lastMessageType": "TYPE_SMS",
                    "lastMessageDate": 1711563229000,
                    "sort": [1711563229000],
                    "fullName": "Ana",
                }
            ],
            "total": 1,
            "traceId": "t",
        }
    )
    assert result.conversations[0].type == "TYPE_PHONE"
    assert result.conversations[0].sort == [1711563229000]
    assert result.total == 1
