"""Behaviour: conversations, email threading, scheduling, channel checks, uploads, contacts."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from bot.sandbox.highlevel import (
    ADA_LOVELACE_ID,
    ALAN_TURING_ID,
    GRACE_HOPPER_ID,
    KATHERINE_JOHNSON_ID,
    HighLevelSimulator,
)
from tests.sandbox_highlevel.conftest import Receiver, api_headers


async def post(api: httpx.AsyncClient, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    response = await api.post("/conversations/messages", json=body)
    assert response.status_code == status, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def test_one_conversation_per_contact(
    api: httpx.AsyncClient, sim: HighLevelSimulator
) -> None:
    first = await post(api, {"type": "SMS", "contactId": ADA_LOVELACE_ID, "message": "1"})
    second = await post(api, {"type": "Email", "contactId": ADA_LOVELACE_ID, "html": "2"})
    reply = await sim.customer_reply(ADA_LOVELACE_ID, "SMS", "3")
    other = await post(api, {"type": "SMS", "contactId": KATHERINE_JOHNSON_ID, "message": "4"})
    assert first["conversationId"] == second["conversationId"] == reply.conversation_id
    assert other["conversationId"] != first["conversationId"]
    conversation = sim.conversation_for(ADA_LOVELACE_ID)
    assert conversation is not None and conversation.unread_count == 1
    assert [m.direction for m in sim.messages_for(conversation.id)] == [
        "outbound",
        "outbound",
        "inbound",
    ]


async def test_new_email_thread_ids(api: httpx.AsyncClient, sim: HighLevelSimulator) -> None:
    sent = await post(
        api,
        {"type": "Email", "contactId": ADA_LOVELACE_ID, "subject": "Invoice", "html": "<p>1</p>"},
    )
    email = sim.emails[sent["emailMessageId"]]
    # The send's messageId is the thread id; emailMessageId is the email record's id.
    assert email.id == sent["emailMessageId"] and email.thread_id == sent["messageId"]
    thread = sim.messages[sent["messageId"]]
    assert thread.channel == "Email" and thread.email_ids == [email.id]


async def test_send_with_thread_id_joins_the_thread(
    api: httpx.AsyncClient, sim: HighLevelSimulator
) -> None:
    first = await post(
        api, {"type": "Email", "contactId": ADA_LOVELACE_ID, "subject": "Invoice", "html": "a"}
    )
    follow_up = await post(
        api,
        {
            "type": "Email",
            "contactId": ADA_LOVELACE_ID,
            "threadId": first["messageId"],
            "replyMessageId": first["emailMessageId"],
            "emailReplyMode": "reply_all",
            "html": "<p>b</p>",
            "emailCc": ["cc@example.com"],
            "emailBcc": ["audit@example.com"],
        },
    )
    assert follow_up["messageId"] == first["messageId"]
    assert follow_up["emailMessageId"] != first["emailMessageId"]
    email = sim.emails[follow_up["emailMessageId"]]
    assert email.thread_id == first["messageId"]
    assert email.reply_to_message_id == first["emailMessageId"]
    assert email.reply_mode == "reply_all"
    assert (email.cc, email.bcc, email.body) == (
        ["cc@example.com"],
        ["audit@example.com"],
        "<p>b</p>",
    )
    assert email.subject == "Re: Invoice"  # taken from the thread when not given
    conversation = sim.conversation_for(ADA_LOVELACE_ID)
    assert conversation is not None
    assert len(sim.messages_for(conversation.id)) == 1  # still one thread
    assert sim.sent_count("Email") == 2


async def test_reply_message_id_alone_joins_its_thread(
    api: httpx.AsyncClient, sim: HighLevelSimulator
) -> None:
    first = await post(
        api, {"type": "Email", "contactId": ADA_LOVELACE_ID, "subject": "Re: Plans", "html": "a"}
    )
    reply = await post(
        api,
        {
            "type": "Email",
            "contactId": ADA_LOVELACE_ID,
            "replyMessageId": first["emailMessageId"],
            "html": "b",
        },
    )
    assert reply["messageId"] == first["messageId"]
    assert sim.emails[reply["emailMessageId"]].subject == "Re: Plans"  # no "Re: Re:"


async def test_unknown_thread_is_a_400(api: httpx.AsyncClient) -> None:
    answer = await post(
        api,
        {"type": "Email", "contactId": ADA_LOVELACE_ID, "threadId": "t" * 20, "html": "x"},
        status=400,
    )
    assert answer["message"] == "Email thread not found"


async def test_customer_email_reply_threads_onto_the_latest_thread(
    api: httpx.AsyncClient, sim: HighLevelSimulator
) -> None:
    old = await post(
        api, {"type": "Email", "contactId": ADA_LOVELACE_ID, "subject": "Old", "html": "o"}
    )
    new = await post(
        api, {"type": "Email", "contactId": ADA_LOVELACE_ID, "subject": "New", "html": "n"}
    )
    reply = await sim.customer_reply(ADA_LOVELACE_ID, "Email", "Sure!", cc=["pa@example.com"])
    assert reply.thread_id == new["messageId"]
    assert reply.subject == "Re: New" and reply.cc == ["pa@example.com"]
    assert reply.id not in (old["emailMessageId"], new["emailMessageId"])
    assert reply.reply_to_message_id == new["emailMessageId"]
    assert reply.to == ["Sandbox Location <sandbox@example.com>"]
    older = await sim.customer_reply(
        ADA_LOVELACE_ID, "Email", "About the old one", thread_id=old["messageId"]
    )
    assert older.thread_id == old["messageId"] and older.subject == "Re: Old"
    fetched = await api.get(f"/conversations/messages/email/{reply.id}")
    email = fetched.json()["emailMessage"]
    assert (email["direction"], email["threadId"], email["body"]) == (
        "inbound",
        new["messageId"],
        "Sure!",
    )
    with pytest.raises(ValueError, match="no email thread"):
        await sim.customer_reply(ADA_LOVELACE_ID, "Email", "?", thread_id="x" * 20)


async def test_customer_can_start_an_email_thread(sim: HighLevelSimulator) -> None:
    email = await sim.customer_reply(GRACE_HOPPER_ID, "Email", "Hello", subject="Question")
    assert email.subject == "Question"
    assert sim.messages[email.thread_id].email_ids == [email.id]


async def test_customer_without_a_phone_cannot_text(sim: HighLevelSimulator) -> None:
    with pytest.raises(ValueError, match="no phone"):
        await sim.customer_reply(GRACE_HOPPER_ID, "SMS", "hi")
    assert sim.conversation_for(GRACE_HOPPER_ID) is None


@pytest.mark.parametrize(
    ("contact_id", "channel", "message"),
    [
        (ALAN_TURING_ID, "SMS", "Contact has DND enabled for SMS"),
        (GRACE_HOPPER_ID, "SMS", "Contact does not have a phone number"),
        (GRACE_HOPPER_ID, "WhatsApp", "Contact does not have a phone number"),
        (ALAN_TURING_ID, "Email", "Contact does not have an email address"),
    ],
)
async def test_channel_checks_are_422(
    api: httpx.AsyncClient, sim: HighLevelSimulator, contact_id: str, channel: str, message: str
) -> None:
    body = {"type": channel, "contactId": contact_id, "message": "x", "html": "x"}
    answer = await post(api, body, status=422)
    assert answer["message"] == [message]
    assert sim.conversation_for(contact_id) is None  # nothing stored


async def test_global_dnd_blocks_every_channel(
    api: httpx.AsyncClient, sim: HighLevelSimulator
) -> None:
    contact = sim.add_contact(
        "Dee", "Endee", phone="+14155550177", email="dee@example.com", dnd=True
    )
    for channel in ("SMS", "Email"):
        answer = await post(
            api, {"type": channel, "contactId": contact.id, "message": "x"}, status=422
        )
        assert answer["message"] == [f"Contact has DND enabled for {channel}"]
    # DND on SMS only leaves email open.
    alan_email = sim.add_contact("Al", phone="+14155550178", email="al@example.com")
    alan_email.dnd_settings = {"SMS": {"status": "active"}}
    await post(api, {"type": "Email", "contactId": alan_email.id, "html": "ok"})


async def test_gmb_send_returns_one_id_per_stored_message(
    api: httpx.AsyncClient, sim: HighLevelSimulator
) -> None:
    answer = await post(
        api,
        {
            "type": "GMB",
            "contactId": KATHERINE_JOHNSON_ID,
            "message": "Our menu",
            "attachments": ["https://example.com/menu.pdf"],
        },
    )
    text_id, file_id = answer["messageIds"]
    assert sim.messages[text_id].body == "Our menu"
    assert sim.messages[file_id].attachments == ["https://example.com/menu.pdf"]
    assert sim.sent_count("GMB") == 2


async def test_scheduled_message_is_delivered_at_its_time(
    api: httpx.AsyncClient, sim: HighLevelSimulator, receiver: Receiver
) -> None:
    sim.webhook_url = receiver.url
    answer = await post(
        api,
        {
            "type": "SMS",
            "contactId": ADA_LOVELACE_ID,
            "message": "Reminder",
            "scheduledTimestamp": time.time() + 0.3,
        },
    )
    got = await api.get(f"/conversations/messages/{answer['messageId']}")
    assert got.json()["message"]["status"] == "scheduled"
    await sim.drain_webhooks()
    assert receiver.bodies == []  # nothing goes out before its time
    await asyncio.sleep(0.45)
    await sim.drain_webhooks()
    assert sim.messages[answer["messageId"]].status == "delivered"
    (event,) = [json.loads(body) for body in receiver.bodies]
    assert (event["messageId"], event["status"]) == (answer["messageId"], "delivered")


async def test_cancelled_schedule_is_never_delivered(
    api: httpx.AsyncClient, sim: HighLevelSimulator, receiver: Receiver
) -> None:
    sim.webhook_url = receiver.url
    answer = await post(
        api,
        {
            "type": "SMS",
            "contactId": ADA_LOVELACE_ID,
            "message": "Never",
            "scheduledTimestamp": time.time() + 0.2,
        },
    )
    cancel = await api.delete(f"/conversations/messages/{answer['messageId']}/schedule")
    assert cancel.json()["status"] == 200
    await asyncio.sleep(0.35)
    await sim.drain_webhooks()
    assert receiver.bodies == []
    assert answer["messageId"] not in sim.messages and answer["messageId"] in sim.cancelled
    assert sim.sent_count() == 0


async def test_cancel_after_delivery_answers_status_404(
    api: httpx.AsyncClient, sim: HighLevelSimulator
) -> None:
    answer = await post(
        api,
        {
            "type": "SMS",
            "contactId": ADA_LOVELACE_ID,
            "message": "Soon",
            "scheduledTimestamp": time.time() + 0.1,
        },
    )
    await asyncio.sleep(0.25)
    cancel = await api.delete(f"/conversations/messages/{answer['messageId']}/schedule")
    assert cancel.status_code == 200
    assert cancel.json() == {"status": 404, "message": "Failed cancel the scheduled message"}
    assert sim.messages[answer["messageId"]].status == "delivered"
    unknown = await api.delete("/conversations/messages/" + "u" * 20 + "/schedule")
    assert unknown.status_code == 200 and unknown.json()["status"] == 404


async def test_scheduled_email_cancelled_by_email_message_id(
    api: httpx.AsyncClient, sim: HighLevelSimulator
) -> None:
    answer = await post(
        api,
        {
            "type": "Email",
            "contactId": ADA_LOVELACE_ID,
            "subject": "Later",
            "html": "x",
            "scheduledTimestamp": time.time() + 0.2,
        },
    )
    assert sim.emails[answer["emailMessageId"]].status == "scheduled"
    cancel = await api.delete(f"/conversations/messages/email/{answer['emailMessageId']}/schedule")
    assert cancel.json()["status"] == 200
    await asyncio.sleep(0.3)
    assert answer["emailMessageId"] not in sim.emails
    assert sim.sent_count("Email") == 0


async def test_schedule_in_the_past_is_422(api: httpx.AsyncClient) -> None:
    answer = await post(
        api,
        {
            "type": "SMS",
            "contactId": ADA_LOVELACE_ID,
            "message": "x",
            "scheduledTimestamp": time.time() - 5,
        },
        status=422,
    )
    assert answer["message"] == ["scheduledTimestamp must be in the future"]


async def test_whatsapp_to_a_number_not_on_whatsapp_fails_after_queueing(
    api: httpx.AsyncClient, sim: HighLevelSimulator, receiver: Receiver
) -> None:
    sim.webhook_url = receiver.url
    failed = await post(api, {"type": "WhatsApp", "contactId": ADA_LOVELACE_ID, "message": "x"})
    ok = await post(api, {"type": "WhatsApp", "contactId": KATHERINE_JOHNSON_ID, "message": "y"})
    assert failed["status"] == "pending" and ok["status"] == "delivered"
    await sim.drain_webhooks()
    statuses = [(e["messageId"], e["status"]) for e in map(json.loads, receiver.bodies)]
    assert statuses == [
        (failed["messageId"], "pending"),
        (failed["messageId"], "failed"),
        (ok["messageId"], "delivered"),
    ]


async def test_auto_delivery_sends_a_status_update(receiver: Receiver) -> None:
    sim = HighLevelSimulator(webhook_url=receiver.url, auto_deliver_after=0.05)
    await sim.start()
    try:
        async with httpx.AsyncClient(base_url=sim.base_url, headers=api_headers(sim)) as client:
            response = await client.post(
                "/conversations/messages",
                json={"type": "SMS", "contactId": ADA_LOVELACE_ID, "message": "x"},
            )
        assert response.json()["status"] == "pending"
        await asyncio.sleep(0.15)
        await sim.drain_webhooks()
    finally:
        await sim.stop()
    assert [json.loads(b)["status"] for b in receiver.bodies] == ["pending", "delivered"]


async def test_set_message_status_on_an_email(sim: HighLevelSimulator, receiver: Receiver) -> None:
    sim.webhook_url = receiver.url
    email = await sim.send_from_highlevel_app(ADA_LOVELACE_ID, "Email", "hi", subject="S")
    await sim.set_message_status(email.id, "read")
    await sim.drain_webhooks()
    assert sim.emails[email.id].status == "read"
    assert sim.messages[email.thread_id].status == "read"
    last = json.loads(receiver.bodies[-1])
    assert (last["emailMessageId"], last["status"], last["source"]) == (email.id, "read", "app")
    with pytest.raises(ValueError, match="unknown status"):
        await sim.set_message_status(email.id, "teleported")


async def test_upload_files_then_send_them(api: httpx.AsyncClient, sim: HighLevelSimulator) -> None:
    sent = await post(api, {"type": "SMS", "contactId": ADA_LOVELACE_ID, "message": "x"})
    form = {"conversationId": sent["conversationId"], "locationId": sim.location_id}
    response = await api.post(
        "/conversations/messages/upload",
        data=form,
        files=[
            ("fileAttachment", ("plan one.pdf", b"%PDF-1.4 one", "application/pdf")),
            ("fileAttachment", ("photo.jpg", b"\xff\xd8jpeg", "image/jpeg")),
        ],
    )
    assert response.status_code == 200, response.text
    uploaded = response.json()["uploadedFiles"]
    assert set(uploaded) == {"plan one.pdf", "photo.jpg"}
    async with httpx.AsyncClient() as anonymous:  # attachment URLs are public, like storage links
        fetched = await anonymous.get(uploaded["plan one.pdf"])
    assert fetched.content == b"%PDF-1.4 one"
    mms = await post(
        api,
        {"type": "SMS", "contactId": ADA_LOVELACE_ID, "attachments": list(uploaded.values())},
    )
    assert sim.messages[mms["messageId"]].attachments == list(uploaded.values())
    record = sim.requests_to("POST", "/conversations/messages/upload")[0]
    assert record.body["fileAttachment"] == ["plan one.pdf", "photo.jpg"]


async def test_upload_errors(api: httpx.AsyncClient, sim: HighLevelSimulator) -> None:
    sent = await post(api, {"type": "SMS", "contactId": ADA_LOVELACE_ID, "message": "x"})
    path = "/conversations/messages/upload"
    one_file = {"fileAttachment": ("a.txt", b"text", "text/plain")}
    unknown = await api.post(
        path, data={"conversationId": "c" * 20, "locationId": sim.location_id}, files=one_file
    )
    assert unknown.status_code == 500  # what HighLevel answers for an unknown conversation
    foreign = await api.post(
        path,
        data={"conversationId": sent["conversationId"], "locationId": "elsewhere00000000001"},
        files=one_file,
    )
    assert foreign.status_code == 403
    empty = await api.post(
        path, data={"conversationId": sent["conversationId"], "locationId": sim.location_id}
    )
    assert empty.status_code == 400
    wrong_key = await api.post(
        path,
        data={"conversationId": sent["conversationId"], "locationId": sim.location_id},
        files={"file": ("a.txt", b"text", "text/plain")},
    )
    assert wrong_key.status_code == 422
    assert "property file should not exist" in wrong_key.json()["message"]


async def test_list_messages_pages_and_filters(
    api: httpx.AsyncClient, sim: HighLevelSimulator
) -> None:
    for text in ("m1", "m2", "m3"):
        await post(api, {"type": "SMS", "contactId": ADA_LOVELACE_ID, "message": text})
    await post(api, {"type": "Email", "contactId": ADA_LOVELACE_ID, "html": "e1"})
    conversation = sim.conversation_for(ADA_LOVELACE_ID)
    assert conversation is not None
    url = f"/conversations/{conversation.id}/messages"
    first = (await api.get(url, params={"limit": 2})).json()["messages"]
    assert first["nextPage"] is True
    assert [m["messageType"] for m in first["messages"]] == ["TYPE_EMAIL", "TYPE_SMS"]
    rest = (
        await api.get(url, params={"limit": 2, "lastMessageId": first["lastMessageId"]})
    ).json()["messages"]
    assert [m["body"] for m in rest["messages"]] == ["m2", "m1"] and rest["nextPage"] is False
    sms_only = (await api.get(url, params={"type": "TYPE_SMS,TYPE_CALL"})).json()["messages"]
    assert [m["body"] for m in sms_only["messages"]] == ["m3", "m2", "m1"]
    bad = await api.get(url, params={"type": "TYPE_SMS,TYPE_FAX"})
    assert bad.status_code == 422


async def test_search_finds_by_text_and_lags_when_asked(sim: HighLevelSimulator) -> None:
    headers = api_headers(sim)
    async with httpx.AsyncClient(base_url=sim.base_url, headers=headers) as client:
        await sim.customer_reply(KATHERINE_JOHNSON_ID, "SMS", "hi")
        params = {"locationId": sim.location_id, "query": "+447911123456"}
        found = (await client.get("/conversations/search", params=params)).json()
        assert found["total"] == 1
        assert found["conversations"][0]["contactId"] == KATHERINE_JOHNSON_ID
        assert found["conversations"][0]["unreadCount"] == 1
        sim.search_lag = 60.0  # HighLevel's index lags behind new conversations
        await sim.customer_reply(ADA_LOVELACE_ID, "SMS", "hello")
        lagging = await client.get(
            "/conversations/search",
            params={"locationId": sim.location_id, "contactId": ADA_LOVELACE_ID},
        )
        assert lagging.json() == {"conversations": [], "total": 0}


async def test_upsert_and_duplicate_search(api: httpx.AsyncClient, sim: HighLevelSimulator) -> None:
    location = sim.location_id
    updated = (
        await api.post(
            "/contacts/upsert",
            json={"locationId": location, "email": "ADA@example.com", "tags": ["vip"]},
        )
    ).json()
    assert updated["new"] is False and updated["contact"]["id"] == ADA_LOVELACE_ID
    assert sim.contacts[ADA_LOVELACE_ID].tags == ["vip"]
    created = (
        await api.post(
            "/contacts/upsert",
            json={"locationId": location, "name": "Dorothy Vaughan", "phone": "+1 415 555 0150"},
        )
    ).json()
    assert created["new"] is True
    assert created["contact"]["firstName"] == "Dorothy"
    assert created["contact"]["phone"] == "+14155550150"
    found = await api.get(
        "/contacts/search/duplicate", params={"locationId": location, "number": "+14155550150"}
    )
    assert found.json()["contact"]["id"] == created["contact"]["id"]
    # An unencoded '+' arrives as a space: HighLevel finds nothing, and neither does the sandbox.
    raw = await api.get(f"/contacts/search/duplicate?locationId={location}&number=+14155550150")
    assert raw.json() == {"contact": None}
    neither = await api.get("/contacts/search/duplicate", params={"locationId": location})
    assert neither.status_code == 400
