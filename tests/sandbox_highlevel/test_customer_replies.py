"""A person makes a sandbox customer reply: POST /_sandbox/customers/{who}/reply."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from bot.sandbox.highlevel import (
    ADA_LOVELACE_ID,
    GRACE_HOPPER_ID,
    KATHERINE_JOHNSON_ID,
    HighLevelSimulator,
)
from bot.sandbox.highlevel._prompt import SandboxPrompt
from tests.sandbox_highlevel.conftest import Receiver


def reply_url(who: str) -> str:
    return f"/_sandbox/customers/{who}/reply"


@pytest.fixture
async def control(sim: HighLevelSimulator) -> AsyncIterator[httpx.AsyncClient]:
    # No Version header and no token: the route is the sandbox's own, not HighLevel's API.
    async with httpx.AsyncClient(base_url=sim.base_url, timeout=30.0) as client:
        yield client


async def test_a_reply_is_stored_where_polling_finds_it(
    control: httpx.AsyncClient, api: httpx.AsyncClient, sim: HighLevelSimulator
) -> None:
    response = await control.post(reply_url("+1 (415) 555-0100"), json={"body": "Is it ready?"})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["contactId"], answer["channel"]) == (ADA_LOVELACE_ID, "SMS")
    assert answer["webhooks"][0]["outcome"] == "no_url"
    assert "polls" in answer["note"]

    listed = await api.get(f"/conversations/{answer['conversationId']}/messages")
    assert listed.status_code == 200
    [newest] = listed.json()["messages"]["messages"]
    assert newest["id"] == answer["messageId"]
    assert (newest["direction"], newest["body"], newest["messageType"]) == (
        "inbound",
        "Is it ready?",
        "TYPE_SMS",
    )
    found = await api.get(
        "/conversations/search",
        params={"locationId": sim.location_id, "contactId": ADA_LOVELACE_ID},
    )
    assert [c["id"] for c in found.json()["conversations"]] == [answer["conversationId"]]
    # The control route is no API traffic: it is neither recorded nor rate limited.
    assert not [r for r in sim.requests if r.path.startswith("/_sandbox/")]


async def test_a_reply_arrives_as_a_signed_inbound_webhook(
    control: httpx.AsyncClient, sim: HighLevelSimulator, receiver: Receiver
) -> None:
    sim.webhook_url = receiver.url
    response = await control.post(
        reply_url("Katherine Johnson"), json={"body": "Ça marche 👍", "channel": "whatsapp"}
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    # The route waits for the webhook's first answer, so the receiver has it already.
    assert answer["webhooks"][0]["outcome"] == "delivered"
    assert answer["webhooks"][0]["attempts"] == [200]
    assert answer["note"] == f"Webhook delivered to {receiver.url} (HTTP 200)."
    [body] = receiver.bodies
    [signature] = receiver.signatures
    assert signature is not None
    key = load_pem_public_key(sim.public_key_pem.encode())
    assert isinstance(key, Ed25519PublicKey)
    key.verify(base64.b64decode(signature), body)  # raises if the signature is wrong
    event = json.loads(body)
    assert event["type"] == "InboundMessage"
    assert (event["contactId"], event["messageType"]) == (KATHERINE_JOHNSON_ID, "WhatsApp")
    assert (event["direction"], event["body"]) == ("inbound", "Ça marche 👍")
    assert (event["messageId"], event["conversationId"]) == (
        answer["messageId"],
        answer["conversationId"],
    )
    assert event["locationId"] == sim.location_id and event["webhookId"]


async def test_an_email_reply_carries_its_email_ids(
    control: httpx.AsyncClient, sim: HighLevelSimulator, receiver: Receiver
) -> None:
    sim.webhook_url = receiver.url
    response = await control.post(
        reply_url("grace@example.com"), json={"body": "Thanks!", "subject": "Order 12"}
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["contactId"], answer["channel"]) == (GRACE_HOPPER_ID, "Email")
    event = json.loads(receiver.bodies[0])
    assert (event["messageType"], event["subject"]) == ("Email", "Order 12")
    assert event["emailMessageId"] == answer["emailMessageId"]
    assert event["threadId"] == answer["messageId"]
    assert sim.emails[answer["emailMessageId"]].body == "Thanks!"


async def test_a_refused_webhook_is_reported_not_hidden(
    control: httpx.AsyncClient, sim: HighLevelSimulator, receiver: Receiver
) -> None:
    sim.webhook_url = receiver.url
    receiver.answers = [401]
    response = await control.post(reply_url("ada"), json={"body": "Hello?"})
    assert response.status_code == 200
    answer = response.json()
    assert answer["webhooks"][0]["outcome"] == "dropped"
    assert "failed (401)" in answer["note"] and "polling" in answer["note"]


@pytest.mark.parametrize(
    ("who", "content", "status", "expected"),
    [
        ("nobody", b'{"body": "hi"}', 404, "No contact 'nobody' in the sandbox"),
        (ADA_LOVELACE_ID, b'{"body": "   "}', 400, '"body" must be the text'),
        (ADA_LOVELACE_ID, b'{"body": 5}', 400, '"body" must be the text'),
        (ADA_LOVELACE_ID, b"", 400, "The request has no body"),
        (ADA_LOVELACE_ID, b'{"body": "hi"', 400, "The body is not valid JSON"),
        (ADA_LOVELACE_ID, b"\xff\xfe", 400, "The body is not valid JSON"),
        (ADA_LOVELACE_ID, b'["hi"]', 400, "The body must be a JSON object"),
        (ADA_LOVELACE_ID, b'{"body": "hi", "text": "x"}', 400, "Unknown field(s) text"),
        (ADA_LOVELACE_ID, b'{"body": "hi", "channel": "Fax"}', 422, "Unknown channel 'Fax'"),
        (ADA_LOVELACE_ID, b'{"body": "hi", "channel": 2}', 400, '"channel" must be a string'),
        (ADA_LOVELACE_ID, b'{"body": "hi", "subject": "S"}', 422, "for Email replies only"),
        ("Alan Turing", b'{"body": "hi", "channel": "Email"}', 422, "has no email address"),
        (GRACE_HOPPER_ID, b'{"body": "hi", "channel": "SMS"}', 422, "has no phone number"),
        (ADA_LOVELACE_ID, b'{"body": "\\ud800"}', 422, "not valid Unicode"),
    ],
)
async def test_bad_input_gets_a_4xx_that_says_what_to_fix(
    control: httpx.AsyncClient,
    sim: HighLevelSimulator,
    who: str,
    content: bytes,
    status: int,
    expected: str,
) -> None:
    response = await control.post(
        reply_url(who), content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == status, response.text
    assert expected in response.json()["message"]
    assert sim.messages == {} and sim.emails == {} and sim.webhook_deliveries == []


async def test_an_ambiguous_name_lists_the_candidates(
    control: httpx.AsyncClient, sim: HighLevelSimulator
) -> None:
    other = sim.add_contact("Ada", "Byron", phone="+14155550111")
    response = await control.post(reply_url("ada"), json={"body": "hi"})
    assert response.status_code == 409
    message = response.json()["message"]
    assert ADA_LOVELACE_ID in message and other.id in message
    by_id = await control.post(reply_url(other.id), json={"body": "hi"})
    assert by_id.status_code == 200 and by_id.json()["contactId"] == other.id


async def test_the_sandbox_routes_explain_themselves(control: httpx.AsyncClient) -> None:
    listed = await control.get("/_sandbox/customers")
    assert listed.status_code == 200
    assert {c["id"] for c in listed.json()["customers"]} >= {ADA_LOVELACE_ID, GRACE_HOPPER_ID}
    wrong_method = await control.get(reply_url("ada"))
    assert wrong_method.status_code == 405 and "use POST" in wrong_method.json()["message"]
    unknown = await control.post("/_sandbox/customer/ada/reply", json={"body": "hi"})
    assert unknown.status_code == 404
    assert "/_sandbox/customers/{customer}/reply" in unknown.json()["message"]


async def test_prompt_commands(sim: HighLevelSimulator, receiver: Receiver) -> None:
    sim.webhook_url = receiver.url
    out = io.StringIO()
    stop = asyncio.Event()
    prompt = SandboxPrompt(sim, out, stop)
    await prompt.execute('reply "Grace Hopper" --channel email Got it, thanks')
    [email] = sim.emails.values()
    assert (email.contact_id, email.body, email.direction) == (
        GRACE_HOPPER_ID,
        "Got it, thanks",
        "inbound",
    )
    assert "✓ Grace Hopper replied by Email" in out.getvalue()
    assert f"Webhook delivered to {receiver.url} (HTTP 200)." in out.getvalue()
    for line, expected in [
        ("reply ada", "Say who replies and what they write.\nUsage: reply"),
        ('reply "Ada hi', "Close the quote"),
        ("reply ada --channel Fax hi", "✗ Unknown channel 'Fax'"),
        ("reply alan -c email hi", "✗ Alan Turing has no email address"),
        ("contacts", "Katherine Johnson  phone=+447911123456"),
        ("help", "reply [--channel CH] WHO TEXT"),
        ("dance", "Unknown command 'dance'. Type help"),
    ]:
        out.seek(0)
        out.truncate()
        await prompt.execute(line)
        assert expected in out.getvalue(), (line, out.getvalue())
        assert not stop.is_set()
    assert len(sim.emails) == 1 and len(sim.messages) == 1  # the bad lines stored nothing
    await prompt.execute("quit")
    assert stop.is_set()
