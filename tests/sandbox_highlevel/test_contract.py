"""Contract: for every simulated endpoint, sample requests and the answers match the official spec.

Real-world wrappers (NOTES.md §2, §3) are asserted present, then unwrapped before validation.
"""

from __future__ import annotations

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
from tests.sandbox_highlevel._spec_check import (
    CONTACTS,
    CONVERSATIONS,
    request_errors,
    response_errors,
    schema_errors,
)

COMMON = "common/common-schemas.json"
# Fields real responses carry beyond the spec (dateUpdated: highlevel-api-docs #258; the
# search entry's last-message date/direction and dateAdded are used for polling).
MESSAGE_EXTRAS = frozenset({"dateUpdated"})
SEARCH_EXTRAS = frozenset({"lastMessageDirection", "lastMessageDate", "dateAdded"})
ERROR_EXTRAS = frozenset({"traceId"})


async def send(api: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    assert request_errors(CONVERSATIONS, "SendMessageBodyDto", body) == []
    response = await api.post("/conversations/messages", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def test_send_sms_and_email_answers_match_send_message_response_dto(
    api: httpx.AsyncClient,
) -> None:
    sms = await send(api, {"type": "SMS", "contactId": ADA_LOVELACE_ID, "message": "Hi Ada"})
    assert response_errors(CONVERSATIONS, "POST", "/conversations/messages", 200, sms) == []
    email = await send(
        api,
        {
            "type": "Email",
            "contactId": ADA_LOVELACE_ID,
            "subject": "Your order",
            "html": "<p>Shipped</p>",
            "emailCc": ["boss@example.com"],
            "emailReplyMode": "reply_all",
        },
    )
    assert response_errors(CONVERSATIONS, "POST", "/conversations/messages", 200, email) == []
    assert email["emailMessageId"] != email["messageId"]


async def test_gmb_answer_has_message_ids_instead_of_message_id(api: httpx.AsyncClient) -> None:
    body = {
        "type": "GMB",
        "contactId": ADA_LOVELACE_ID,
        "message": "See the photos",
        "attachments": ["https://example.com/a.png", "https://example.com/b.png"],
    }
    response = await api.post("/conversations/messages", json=body)
    answer = response.json()
    assert response.status_code == 200
    assert len(answer["messageIds"]) == 3 and "messageId" not in answer
    # The spec's description says GMB returns "messageIds instead of single messageId" while its
    # required list still names messageId: that one error is the only one allowed.
    errors = response_errors(CONVERSATIONS, "POST", "/conversations/messages", 200, answer)
    assert errors == ["<root>: 'messageId' is a required property"] * 2


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"type": "SMS", "message": "x"}, "contactId should not be empty"),
        ({"type": "Fax", "contactId": ADA_LOVELACE_ID, "message": "x"}, "type must be one of"),
        ({"type": "SMS", "contactId": ADA_LOVELACE_ID, "message": 5}, "message must be a string"),
        (
            {"type": "Email", "contactId": ADA_LOVELACE_ID, "html": "x", "emailCc": "a@b.c"},
            "emailCc must be an array",
        ),
        (
            {"type": "Email", "contactId": ADA_LOVELACE_ID, "html": "x", "emailReplyMode": "all"},
            "emailReplyMode must be one of the following values: reply, reply_all",
        ),
        (
            {"type": "SMS", "contactId": ADA_LOVELACE_ID, "message": "x", "phone": "+1"},
            "property phone should not exist",
        ),
    ],
)
async def test_invalid_send_bodies_get_422_in_the_spec_error_shape(
    api: httpx.AsyncClient, body: dict[str, Any], expected: str
) -> None:
    assert request_errors(CONVERSATIONS, "SendMessageBodyDto", body) != []
    response = await api.post("/conversations/messages", json=body)
    assert response.status_code == 422
    answer = response.json()
    assert schema_errors(COMMON, "UnprocessableDTO", answer, extras=ERROR_EXTRAS) == []
    assert answer["statusCode"] == 422 and answer["error"] == "Unprocessable Entity"
    assert any(message.startswith(expected) for message in answer["message"]), answer


async def test_send_needs_only_type_and_contact_id(api: httpx.AsyncClient) -> None:
    # subType and status are required by the spec since 2026-05 by mistake: not by the simulator.
    response = await api.post(
        "/conversations/messages",
        json={"type": "SMS", "contactId": ADA_LOVELACE_ID, "message": "x"},
    )
    assert response.status_code == 200


async def test_malformed_json_is_a_400(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/conversations/messages",
        content=b'{"type": "SMS",',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    answer = response.json()
    extras = ERROR_EXTRAS | {"error"}  # NestJS adds "error" to body-parser failures
    declared = response_errors(
        CONVERSATIONS, "POST", "/conversations/messages", 400, answer, extras=extras
    )
    assert declared == []


async def test_unknown_contact_is_a_declared_400(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/conversations/messages", json={"type": "SMS", "contactId": "x" * 20, "message": "x"}
    )
    assert response.status_code == 400
    answer = response.json()
    assert answer["message"] == "Contact not found"
    errors = response_errors(
        CONVERSATIONS, "POST", "/conversations/messages", 400, answer, extras=ERROR_EXTRAS
    )
    assert errors == []


async def test_get_message_is_wrapped_in_message(api: httpx.AsyncClient) -> None:
    sent = await send(api, {"type": "SMS", "contactId": ADA_LOVELACE_ID, "message": "Hi"})
    response = await api.get(f"/conversations/messages/{sent['messageId']}")
    assert response.status_code == 200
    wrapper = response.json()
    assert set(wrapper) == {"message"}
    message = wrapper["message"]
    assert message["id"] == sent["messageId"] and message["body"] == "Hi"
    assert message["type"] == 2 and message["messageType"] == "TYPE_SMS"
    errors = response_errors(
        CONVERSATIONS, "GET", "/conversations/messages/{id}", 200, message, extras=MESSAGE_EXTRAS
    )
    assert errors == []


async def test_unknown_message_is_a_declared_400(api: httpx.AsyncClient) -> None:
    response = await api.get("/conversations/messages/" + "n" * 20)
    assert response.status_code == 400
    errors = response_errors(
        CONVERSATIONS,
        "GET",
        "/conversations/messages/{id}",
        400,
        response.json(),
        extras=ERROR_EXTRAS,
    )
    assert errors == []


async def test_list_messages_is_wrapped_one_level_deeper(
    api: httpx.AsyncClient, sim: HighLevelSimulator
) -> None:
    first = await send(api, {"type": "SMS", "contactId": ADA_LOVELACE_ID, "message": "one"})
    await send(api, {"type": "Email", "contactId": ADA_LOVELACE_ID, "subject": "S", "html": "h"})
    await sim.customer_reply(ADA_LOVELACE_ID, "SMS", "three")
    response = await api.get(f"/conversations/{first['conversationId']}/messages")
    assert response.status_code == 200
    wrapper = response.json()
    assert set(wrapper) == {"messages"}
    listing = wrapper["messages"]
    assert set(listing) == {"lastMessageId", "nextPage", "messages"}
    path = "/conversations/{conversationId}/messages"
    assert response_errors(CONVERSATIONS, "GET", path, 200, listing, extras=MESSAGE_EXTRAS) == []
    kinds = [(m["messageType"], m["direction"]) for m in listing["messages"]]
    assert kinds == [("TYPE_SMS", "inbound"), ("TYPE_EMAIL", "outbound"), ("TYPE_SMS", "outbound")]
    assert "body" not in listing["messages"][1]  # list entries omit email bodies


async def test_get_email_is_wrapped_in_email_message(api: httpx.AsyncClient) -> None:
    sent = await send(
        api,
        {
            "type": "Email",
            "contactId": KATHERINE_JOHNSON_ID,
            "subject": "Launch",
            "html": "<b>T-10</b>",
            "emailCc": ["cc@example.com"],
            "emailBcc": ["bcc@example.com"],
        },
    )
    response = await api.get(f"/conversations/messages/email/{sent['emailMessageId']}")
    assert response.status_code == 200
    wrapper = response.json()
    assert set(wrapper) == {"emailMessage"}
    email = wrapper["emailMessage"]
    path = "/conversations/messages/email/{id}"
    assert response_errors(CONVERSATIONS, "GET", path, 200, email) == []
    assert email["id"] == sent["emailMessageId"] and email["threadId"] == sent["messageId"]
    assert email["cc"] == ["cc@example.com"] and email["bcc"] == ["bcc@example.com"]
    assert email["to"] == ["katherine@example.com"] and email["subject"] == "Launch"


async def test_search_and_get_conversation_match_their_schemas(
    api: httpx.AsyncClient, sim: HighLevelSimulator
) -> None:
    sent = await send(api, {"type": "Email", "contactId": GRACE_HOPPER_ID, "html": "h"})
    found = await api.get(
        "/conversations/search",
        params={"locationId": sim.location_id, "contactId": GRACE_HOPPER_ID},
    )
    assert found.status_code == 200
    answer = found.json()
    errors = response_errors(
        CONVERSATIONS, "GET", "/conversations/search", 200, answer, extras=SEARCH_EXTRAS
    )
    assert errors == []
    assert [c["id"] for c in answer["conversations"]] == [sent["conversationId"]]
    assert answer["conversations"][0]["type"] == "TYPE_EMAIL"  # Grace has no phone
    one = await api.get(f"/conversations/{sent['conversationId']}")
    assert one.status_code == 200
    path = "/conversations/{conversationId}"
    assert response_errors(CONVERSATIONS, "GET", path, 200, one.json()) == []
    assert one.json()["type"] == 2


async def test_search_rejects_bad_query_values(
    api: httpx.AsyncClient, sim: HighLevelSimulator
) -> None:
    response = await api.get(
        "/conversations/search",
        params={"locationId": sim.location_id, "sort": "sideways", "limit": "many"},
    )
    assert response.status_code == 422
    messages = response.json()["message"]
    assert "sort must be one of the following values: asc, desc" in messages
    assert any(m.startswith("limit must be a number") for m in messages)
    missing = await api.get("/conversations/search")
    assert missing.status_code == 422
    assert missing.json()["message"] == ["locationId should not be empty"]


async def test_cancel_answers_match_cancel_scheduled_response_dto(api: httpx.AsyncClient) -> None:
    later = time.time() + 60
    sms = await send(
        api,
        {"type": "SMS", "contactId": ADA_LOVELACE_ID, "message": "x", "scheduledTimestamp": later},
    )
    email = await send(
        api,
        {"type": "Email", "contactId": ADA_LOVELACE_ID, "html": "x", "scheduledTimestamp": later},
    )
    cases = [
        ("/conversations/messages/{messageId}/schedule", sms["messageId"]),
        ("/conversations/messages/email/{emailMessageId}/schedule", email["emailMessageId"]),
    ]
    for template, message_id in cases:
        url = template.split("{")[0] + message_id + "/schedule"
        for expected_status in (200, 404):  # the second cancel finds nothing scheduled
            response = await api.delete(url)
            assert response.status_code == 200
            answer = response.json()
            assert response_errors(CONVERSATIONS, "DELETE", template, 200, answer) == []
            assert answer["status"] == expected_status


async def test_upload_answers_match_their_schemas(
    api: httpx.AsyncClient, sim: HighLevelSimulator
) -> None:
    sent = await send(api, {"type": "SMS", "contactId": ADA_LOVELACE_ID, "message": "x"})
    form = {
        "conversationId": sent["conversationId"],
        "contactId": ADA_LOVELACE_ID,
        "locationId": sim.location_id,
        "attachmentUrls": "https://example.com/menu.pdf",
    }
    sample = {**form, "attachmentUrls": [form["attachmentUrls"]]}
    assert request_errors(CONVERSATIONS, "UploadFilesDto", sample) == []
    path = "/conversations/messages/upload"
    ok = await api.post(
        path, data=form, files={"fileAttachment": ("cat.png", b"\x89PNG", "image/png")}
    )
    assert ok.status_code == 200
    assert response_errors(CONVERSATIONS, "POST", path, 200, ok.json()) == []
    assert set(ok.json()["uploadedFiles"]) == {"cat.png", "menu.pdf"}
    wrong_type = await api.post(path, data=form, files={"fileAttachment": ("x.exe", b"MZ", "x/y")})
    assert wrong_type.status_code == 415
    assert (
        response_errors(CONVERSATIONS, "POST", path, 415, wrong_type.json(), extras=ERROR_EXTRAS)
        == []
    )
    sim.upload_max_bytes = 10
    too_big = await api.post(
        path, data=form, files={"fileAttachment": ("a.txt", b"x" * 11, "text/plain")}
    )
    assert too_big.status_code == 413
    assert (
        response_errors(CONVERSATIONS, "POST", path, 413, too_big.json(), extras=ERROR_EXTRAS) == []
    )


async def test_contact_endpoints_match_contacts_spec(
    api: httpx.AsyncClient, sim: HighLevelSimulator
) -> None:
    headers = {"Version": "2021-07-28"}
    found = await api.get(
        "/contacts/search/duplicate",
        params={"locationId": sim.location_id, "number": "+14155550100"},
        headers=headers,
    )
    assert found.status_code == 200
    assert set(found.json()) == {"contact"}
    assert schema_errors(CONTACTS, "GetContectByIdSchema", found.json()["contact"]) == []
    assert found.json()["contact"]["id"] == ADA_LOVELACE_ID
    none = await api.get(
        "/contacts/search/duplicate",
        params={"locationId": sim.location_id, "email": "nobody@example.com"},
        headers=headers,
    )
    assert none.status_code == 200 and none.json() == {"contact": None}

    one = await api.get(f"/contacts/{KATHERINE_JOHNSON_ID}", headers=headers)
    assert one.status_code == 200
    assert response_errors(CONTACTS, "GET", "/contacts/{contactId}", 200, one.json()) == []
    missing = await api.get("/contacts/" + "z" * 20, headers=headers)
    assert missing.status_code == 400
    errors = response_errors(
        CONTACTS, "GET", "/contacts/{contactId}", 400, missing.json(), extras=ERROR_EXTRAS
    )
    assert errors == []

    body = {
        "locationId": sim.location_id,
        "firstName": "Mary",
        "lastName": "Jackson",
        "phone": "+14155550199",
        "tags": ["sandbox"],
        "dndSettings": {"Email": {"status": "active"}},
    }
    assert request_errors(CONTACTS, "UpsertContactDto", body) == []
    upserted = await api.post("/contacts/upsert", json=body, headers=headers)
    assert upserted.status_code == 200
    assert response_errors(CONTACTS, "POST", "/contacts/upsert", 200, upserted.json()) == []
    bad = await api.post(
        "/contacts/upsert", json={"locationId": sim.location_id, "dnd": "yes"}, headers=headers
    )
    assert bad.status_code == 422
    assert (
        response_errors(CONTACTS, "POST", "/contacts/upsert", 422, bad.json(), extras=ERROR_EXTRAS)
        == []
    )
    assert bad.json()["message"] == ["dnd must be a boolean value"]


# Keys of a contact in the search answer that ContactsSearchSchema does not declare (the contact
# is GetContectByIdSchema's shape, checked on its own), and the answer's real-world "total".
SEARCH_CONTACT_EXTRAS = frozenset(
    {
        "firstName",
        "lastName",
        "name",
        "firstNameLowerCase",
        "lastNameLowerCase",
        "fullNameLowerCase",
        "emailLowerCase",
        "phone",
        "dnd",
        "dndSettings",
        "type",
        "dateUpdated",
    }
)


async def test_contact_search_matches_contacts_spec(
    api: httpx.AsyncClient, sim: HighLevelSimulator
) -> None:
    headers = {"Version": "2021-07-28"}
    body = {
        "locationId": sim.location_id,
        "page": 1,
        "pageLimit": 10,
        "query": "example.com",
        "filters": [{"field": "phone", "operator": "exists"}],
        "sort": [{"field": "firstNameLowerCase", "direction": "asc"}],
    }
    # The spec's SearchBodyV2DTO is an empty object: any object is a valid body.
    assert request_errors(CONTACTS, "SearchBodyV2DTO", {}) == []
    found = await api.post("/contacts/search", json=body, headers=headers)
    assert found.status_code == 200, found.text
    answer = found.json()
    assert set(answer) == {"contacts", "total", "traceId"}
    assert [c["id"] for c in answer["contacts"]] == [ADA_LOVELACE_ID, KATHERINE_JOHNSON_ID]
    assert answer["total"] == 2
    extras = SEARCH_CONTACT_EXTRAS | {"total", "traceId"}
    envelope = schema_errors(CONTACTS, "ContactsSearchSuccessfulResponseDto", answer, extras=extras)
    assert envelope == []
    for contact in answer["contacts"]:
        assert schema_errors(CONTACTS, "GetContectByIdSchema", contact) == []

    bad = await api.post(
        "/contacts/search", json={"locationId": sim.location_id, "pageLimit": 0}, headers=headers
    )
    assert bad.status_code == 422
    assert schema_errors(COMMON, "UnprocessableDTO", bad.json(), extras=ERROR_EXTRAS) == []
    assert bad.json()["message"] == ["pageLimit must not be less than 1"]


async def test_unauthorised_answer_matches_declared_401(sim: HighLevelSimulator) -> None:
    async with httpx.AsyncClient(base_url=sim.base_url) as client:
        response = await client.get(
            "/conversations/messages/abc",
            headers={"Authorization": "Bearer wrong", "Version": "2021-04-15"},
        )
    assert response.status_code == 401
    errors = response_errors(
        CONVERSATIONS,
        "GET",
        "/conversations/messages/{id}",
        401,
        response.json(),
        extras=ERROR_EXTRAS,
    )
    assert errors == []
    assert response.json()["message"] == "Invalid token: access token is invalid"
