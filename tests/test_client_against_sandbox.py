"""ghl-bridge's own HighLevel client end to end against the project's HighLevel simulator.

Both sides are real: the simulator serves HTTP on 127.0.0.1 and validates every request against
HighLevel's OpenAPI; the client talks to it through its own rate limiter. The simulator shares no
code with the client, so agreement here is evidence, not an echo.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Protocol

import httpx
import pytest
from pydantic import SecretStr

from bot.highlevel import (
    AuthError,
    HighLevelClient,
    MessageChannel,
    NotFoundError,
    RateLimiter,
    SendMessageRequest,
    ServerError,
    UnavailableError,
    UpsertContactRequest,
    ValidationError,
)
from bot.sandbox.highlevel import (
    ADA_LOVELACE_ID,
    ALAN_TURING_ID,
    GRACE_HOPPER_ID,
    KATHERINE_JOHNSON_ID,
    HighLevelSimulator,
)

SEND_PATH = "/conversations/messages"
# Short windows keep waits after a 429 (the client waits out the advertised interval) small.
SIM_INTERVAL_MS = 250


class ClientFactory(Protocol):
    def __call__(
        self,
        *,
        token: str | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> HighLevelClient: ...


@pytest.fixture
async def sim() -> AsyncIterator[HighLevelSimulator]:
    simulator = HighLevelSimulator(rate_limit_interval_ms=SIM_INTERVAL_MS)
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest.fixture
async def make_client(sim: HighLevelSimulator) -> AsyncIterator[ClientFactory]:
    """Clients of ``sim`` with their own limiter and tiny backoff; closed after the test."""
    clients: list[HighLevelClient] = []

    def factory(
        *,
        token: str | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> HighLevelClient:
        client = HighLevelClient(
            token=SecretStr(token if token is not None else sim.token),
            location_id=sim.location_id,
            base_url=sim.base_url,
            limiter=RateLimiter(max_requests=100, interval=SIM_INTERVAL_MS / 1000),
            timeout=timeout or httpx.Timeout(5.0),
            backoff_base=0.01,
            backoff_max=0.05,
        )
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.aclose()


@pytest.fixture
def client(make_client: ClientFactory) -> HighLevelClient:
    return make_client()


def sms(contact_id: str, text: str, **extra: object) -> SendMessageRequest:
    return SendMessageRequest.model_validate(
        {"type": MessageChannel.SMS, "contact_id": contact_id, "message": text, **extra}
    )


# ---------------------------------------------------------------------------------------------
# Contacts


async def test_find_contact_by_phone_and_by_email(
    client: HighLevelClient, sim: HighLevelSimulator
) -> None:
    by_phone = await client.find_contact(phone="+14155550100")
    assert by_phone is not None
    assert by_phone.id == ADA_LOVELACE_ID
    assert by_phone.email == "ada@example.com"

    by_email = await client.find_contact(email="grace@example.com")
    assert by_email is not None
    assert by_email.id == GRACE_HOPPER_ID
    assert by_email.phone is None

    # The "+" must reach the simulator intact (it must not decode to a space).
    [first, *_] = sim.requests_to("GET", "/contacts/search/duplicate")
    assert first.query["number"] == "+14155550100"
    assert first.query["locationId"] == sim.location_id


async def test_find_contact_not_found_is_none(client: HighLevelClient) -> None:
    assert await client.find_contact(phone="+14155559999") is None
    assert await client.find_contact(email="nobody@example.com") is None


async def test_upsert_creates_then_updates(
    client: HighLevelClient, sim: HighLevelSimulator
) -> None:
    created = await client.upsert_contact(
        UpsertContactRequest(
            first_name="Mary", last_name="Jackson", email="mary@example.com", phone="+14155550199"
        )
    )
    assert created.is_new is True
    assert created.contact.id in sim.contacts
    assert created.contact.name == "Mary Jackson"

    updated = await client.upsert_contact(
        UpsertContactRequest(email="mary@example.com", tags=["engineer"])
    )
    assert updated.is_new is False
    assert updated.contact.id == created.contact.id
    assert updated.contact.tags == ["engineer"]
    assert sim.contacts[created.contact.id].tags == ["engineer"]
    [body, _] = [r.body for r in sim.requests_to("POST", "/contacts/upsert")]
    assert body["locationId"] == sim.location_id

    found = await client.find_contact(phone="+14155550199")
    assert found is not None
    assert found.id == created.contact.id


async def test_get_contact(client: HighLevelClient) -> None:
    contact = await client.get_contact(ALAN_TURING_ID)
    assert contact.id == ALAN_TURING_ID
    assert contact.first_name == "Alan"
    assert contact.dnd_settings is not None
    assert contact.dnd_settings["SMS"].status == "active"


async def test_get_contact_unknown_id_raises(client: HighLevelClient) -> None:
    # HighLevel's v2 (and v3) contacts spec lists 200/400/401/422 for GET /contacts/{id}, no
    # 404; the simulator answers 400 "Contact not found", which the client files as validation.
    with pytest.raises(ValidationError) as caught:
        await client.get_contact("noSuchContact0000000")
    assert caught.value.status_code == 400
    assert caught.value.message == "Contact not found"
    assert caught.value.trace_id
    assert caught.value.may_have_acted is False


# ---------------------------------------------------------------------------------------------
# SMS, conversations, message listing


async def test_send_sms_stores_exactly_one_message(
    client: HighLevelClient, sim: HighLevelSimulator
) -> None:
    sent = await client.send_message(sms(ADA_LOVELACE_ID, "Your order is ready"))
    assert sent.message_id is not None
    assert sent.status == "delivered"
    assert sim.sent_count() == 1
    conversation = sim.conversation_for(ADA_LOVELACE_ID)
    assert conversation is not None
    assert sent.conversation_id == conversation.id
    [stored] = sim.messages_for(conversation.id)
    assert stored.id == sent.message_id
    assert stored.body == "Your order is ready"
    assert stored.channel == "SMS"

    message = await client.get_message(sent.message_id)  # wrapped {"message": {...}}
    assert message.id == sent.message_id
    assert message.body == "Your order is ready"
    assert message.type == 2
    assert message.message_type == "TYPE_SMS"
    assert message.direction == "outbound"
    assert message.conversation_id == conversation.id


async def test_conversation_search_and_get(client: HighLevelClient) -> None:
    sent = await client.send_message(sms(KATHERINE_JOHNSON_ID, "Launch window confirmed"))
    await client.send_message(sms(ADA_LOVELACE_ID, "Unrelated"))

    found = await client.search_conversations(contact_id=KATHERINE_JOHNSON_ID)
    [conversation] = found.conversations
    assert found.total == 1
    assert conversation.id == sent.conversation_id
    assert conversation.contact_id == KATHERINE_JOHNSON_ID
    assert conversation.last_message_body == "Launch window confirmed"

    by_id = await client.get_conversation(sent.conversation_id)
    assert by_id.id == sent.conversation_id
    assert by_id.contact_id == KATHERINE_JOHNSON_ID
    assert by_id.type == 1  # phone conversation


async def test_list_messages_newest_first_with_pagination(client: HighLevelClient) -> None:
    ids: list[str] = []
    conversation_id = ""
    for n in range(3):
        sent = await client.send_message(sms(ADA_LOVELACE_ID, f"message {n}"))
        assert sent.message_id is not None
        ids.append(sent.message_id)
        conversation_id = sent.conversation_id

    first = await client.list_messages(conversation_id, limit=2)
    assert [m.id for m in first.messages] == [ids[2], ids[1]]
    assert [m.body for m in first.messages] == ["message 2", "message 1"]
    assert first.next_page is True
    assert first.last_message_id == ids[1]

    second = await client.list_messages(conversation_id, last_message_id=first.last_message_id)
    assert [m.id for m in second.messages] == [ids[0]]
    assert second.next_page is False

    everything = await client.list_messages(conversation_id)
    assert [m.id for m in everything.messages] == list(reversed(ids))


# ---------------------------------------------------------------------------------------------
# Email


async def test_email_send_thread_and_read_back(
    client: HighLevelClient, sim: HighLevelSimulator
) -> None:
    first = await client.send_message(
        SendMessageRequest(
            type=MessageChannel.EMAIL,
            contact_id=ADA_LOVELACE_ID,
            subject="Your invoice",
            html="<p>Invoice attached</p>",
            email_cc=["billing@example.com"],
            email_bcc=["audit@example.com"],
        )
    )
    assert first.email_message_id is not None
    assert first.message_id is not None  # the thread id
    reply = await client.send_message(
        SendMessageRequest(
            type=MessageChannel.EMAIL,
            contact_id=ADA_LOVELACE_ID,
            message="Following up on the invoice",
            thread_id=first.message_id,
        )
    )
    assert reply.message_id == first.message_id
    assert reply.email_message_id is not None
    assert reply.email_message_id != first.email_message_id
    assert reply.conversation_id == first.conversation_id

    emails = sim.emails_for(first.conversation_id)
    assert [e.id for e in emails] == [first.email_message_id, reply.email_message_id]
    assert {e.thread_id for e in emails} == {first.message_id}
    assert sim.sent_count("Email") == 2

    email = await client.get_email(first.email_message_id)  # wrapped {"emailMessage": {...}}
    assert email.id == first.email_message_id
    assert email.thread_id == first.message_id
    assert email.subject == "Your invoice"
    assert email.body == "<p>Invoice attached</p>"
    assert email.content_type == "text/html"
    assert email.to == ["ada@example.com"]
    assert email.cc == ["billing@example.com"]
    assert email.bcc == ["audit@example.com"]

    second = await client.get_email(reply.email_message_id)
    assert second.subject == "Re: Your invoice"
    assert second.body == "Following up on the invoice"

    thread = await client.get_message(first.message_id)
    assert thread.message_type == "TYPE_EMAIL"
    assert thread.meta is not None
    assert thread.meta.email is not None
    assert thread.meta.email.message_ids == [first.email_message_id, reply.email_message_id]


# ---------------------------------------------------------------------------------------------
# Scheduling


async def test_schedule_then_cancel_message(
    client: HighLevelClient, sim: HighLevelSimulator
) -> None:
    sent = await client.send_message(
        sms(ADA_LOVELACE_ID, "Reminder", scheduled_timestamp=int(time.time()) + 5)
    )
    assert sent.message_id is not None
    assert sim.messages[sent.message_id].status == "scheduled"

    cancelled = await client.cancel_scheduled_message(sent.message_id)
    assert cancelled.status == 200
    assert sent.message_id in sim.cancelled
    assert sent.message_id not in sim.messages

    # Nothing left to cancel: HighLevel answers 200 with {"status": 404, ...} in the body.
    with pytest.raises(NotFoundError) as caught:
        await client.cancel_scheduled_message(sent.message_id)
    assert caught.value.status_code == 404
    assert caught.value.may_have_acted is False
    [_, again] = sim.requests_to("DELETE", f"{SEND_PATH}/{sent.message_id}/schedule")
    assert again.status == 200


async def test_schedule_then_cancel_email(client: HighLevelClient, sim: HighLevelSimulator) -> None:
    sent = await client.send_message(
        SendMessageRequest(
            type=MessageChannel.EMAIL,
            contact_id=GRACE_HOPPER_ID,
            subject="Tomorrow",
            message="See you at ten",
            scheduled_timestamp=int(time.time()) + 5,
        )
    )
    assert sent.email_message_id is not None
    assert sim.emails[sent.email_message_id].status == "scheduled"

    cancelled = await client.cancel_scheduled_email(sent.email_message_id)
    assert cancelled.status == 200
    assert sent.email_message_id in sim.cancelled
    assert sent.email_message_id not in sim.emails

    with pytest.raises(NotFoundError):
        await client.cancel_scheduled_email(sent.email_message_id)


# ---------------------------------------------------------------------------------------------
# Attachments and GMB


async def test_upload_attachments_returns_urls_then_send_them(
    client: HighLevelClient, sim: HighLevelSimulator
) -> None:
    first = await client.send_message(sms(ADA_LOVELACE_ID, "Photos coming"))
    photo = b"\x89PNG\r\n\x1a\n fake image bytes"
    urls = await client.upload_attachments(
        conversation_id=first.conversation_id,
        contact_id=ADA_LOVELACE_ID,
        files=[("receipt.txt", b"total: 42", "text/plain"), ("photo.png", photo, "image/png")],
    )
    assert set(urls) == {"receipt.txt", "photo.png"}
    [request] = sim.requests_to("POST", f"{SEND_PATH}/upload")
    assert request.status == 200
    assert request.body["fileAttachment"] == ["receipt.txt", "photo.png"]
    async with httpx.AsyncClient() as plain:  # the URLs are public storage links
        downloaded = await plain.get(urls["photo.png"])
    assert downloaded.content == photo

    with_files = await client.send_message(
        sms(ADA_LOVELACE_ID, "Here they are", attachments=list(urls.values()))
    )
    assert with_files.message_id is not None
    assert sim.messages[with_files.message_id].attachments == list(urls.values())


async def test_gmb_send_returns_message_ids(
    client: HighLevelClient, sim: HighLevelSimulator
) -> None:
    sent = await client.send_message(
        SendMessageRequest(
            type=MessageChannel.GMB,
            contact_id=ADA_LOVELACE_ID,
            message="Thanks for the review",
            attachments=["https://example.com/menu.pdf"],
        )
    )
    assert sent.message_id is None
    assert sent.message_ids is not None
    assert len(sent.message_ids) == 2  # the text and each attachment are separate messages
    assert sim.sent_count("GMB") == 2
    assert {m.id for m in sim.messages_for(sent.conversation_id)} == set(sent.message_ids)


# ---------------------------------------------------------------------------------------------
# Errors


async def test_sms_to_dnd_contact_is_a_validation_error(
    client: HighLevelClient, sim: HighLevelSimulator
) -> None:
    with pytest.raises(ValidationError) as caught:
        await client.send_message(sms(ALAN_TURING_ID, "Hello?"))
    assert caught.value.status_code == 422
    assert "DND" in caught.value.message
    assert caught.value.may_have_acted is False
    assert sim.sent_count() == 0
    assert len(sim.requests_to("POST", SEND_PATH)) == 1  # a 4xx is not retried


async def test_email_to_contact_without_email_is_a_validation_error(
    client: HighLevelClient, sim: HighLevelSimulator
) -> None:
    request = SendMessageRequest(
        type=MessageChannel.EMAIL, contact_id=ALAN_TURING_ID, subject="Hi", message="Hello"
    )
    with pytest.raises(ValidationError) as caught:
        await client.send_message(request)
    assert caught.value.status_code == 422
    assert "email" in caught.value.message
    assert sim.sent_count() == 0


async def test_wrong_token_is_an_auth_error(
    make_client: ClientFactory, sim: HighLevelSimulator
) -> None:
    intruder = make_client(token="not-the-sandbox-token")
    with pytest.raises(AuthError) as caught:
        await intruder.get_contact(ADA_LOVELACE_ID)
    assert caught.value.status_code == 401
    with pytest.raises(AuthError):
        await intruder.send_message(sms(ADA_LOVELACE_ID, "Hi"))
    assert sim.sent_count() == 0
    assert [r.status for r in sim.requests] == [401, 401]  # neither retried


# ---------------------------------------------------------------------------------------------
# Faults: retries where safe, never a second send


async def test_429_burst_is_waited_out_and_sent_once(
    client: HighLevelClient, sim: HighLevelSimulator
) -> None:
    sim.faults.burst_429 = 2
    started = time.monotonic()
    sent = await client.send_message(sms(ADA_LOVELACE_ID, "Through the storm"))
    elapsed = time.monotonic() - started

    assert [r.status for r in sim.requests_to("POST", SEND_PATH)] == [429, 429, 200]
    assert sim.sent_count() == 1
    conversation = sim.conversation_for(ADA_LOVELACE_ID)
    assert conversation is not None
    assert [m.id for m in sim.messages_for(conversation.id)] == [sent.message_id]
    # No Retry-After: the client waits out the advertised window after each 429.
    assert elapsed >= 2 * SIM_INTERVAL_MS / 1000 * 0.9


async def test_server_error_on_read_is_retried(
    client: HighLevelClient, sim: HighLevelSimulator
) -> None:
    sim.faults.error_next = 1
    contact = await client.get_contact(GRACE_HOPPER_ID)
    assert contact.id == GRACE_HOPPER_ID
    assert [r.status for r in sim.requests_to("GET", f"/contacts/{GRACE_HOPPER_ID}")] == [500, 200]


async def test_stored_then_500_send_is_not_resent(
    client: HighLevelClient, sim: HighLevelSimulator
) -> None:
    sim.faults.store_then_500_next = 1
    with pytest.raises(ServerError) as caught:
        await client.send_message(sms(ADA_LOVELACE_ID, "Only once, please"))
    assert caught.value.status_code == 500
    assert caught.value.may_have_acted is True
    assert [r.status for r in sim.requests_to("POST", SEND_PATH)] == [500]
    # HighLevel did act: the message exists, so resending would text the customer twice.
    assert sim.sent_count() == 1
    conversation = sim.conversation_for(ADA_LOVELACE_ID)
    assert conversation is not None
    [stored] = sim.messages_for(conversation.id)
    assert stored.body == "Only once, please"


async def test_hung_send_times_out_without_resending(
    make_client: ClientFactory, sim: HighLevelSimulator
) -> None:
    impatient = make_client(timeout=httpx.Timeout(1.0, read=0.3))
    sim.faults.hang_next = 1
    started = time.monotonic()
    with pytest.raises(UnavailableError) as caught:
        await impatient.send_message(sms(ADA_LOVELACE_ID, "Are you there?"))
    assert time.monotonic() - started < 1.0
    assert caught.value.may_have_acted is True
    assert caught.value.status_code is None
    [request] = sim.requests_to("POST", SEND_PATH)
    for _ in range(50):  # the simulator notices the dropped connection asynchronously
        if request.status == 499:
            break
        await asyncio.sleep(0.02)
    assert request.status == 499
    assert sim.sent_count() == 0


# ---------------------------------------------------------------------------------------------
# Rate limit


@pytest.fixture
async def tight_sim() -> AsyncIterator[HighLevelSimulator]:
    simulator = HighLevelSimulator(rate_limit_max=5, rate_limit_interval_ms=500)
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


def tight_client(
    sim: HighLevelSimulator,
    limiter: RateLimiter,
    transport: httpx.AsyncBaseTransport | None = None,
) -> HighLevelClient:
    return HighLevelClient(
        token=SecretStr(sim.token),
        location_id=sim.location_id,
        base_url=sim.base_url,
        limiter=limiter,
        timeout=httpx.Timeout(5.0),
        backoff_base=0.01,
        backoff_max=0.05,
        transport=transport,
    )


class SlowFirstRequest(httpx.AsyncBaseTransport):
    """Holds the first request back before it leaves, like a TLS handshake on a new connection."""

    def __init__(self, delay: float) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._delay = delay
        self._first = True

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._first:
            self._first = False
            await asyncio.sleep(self._delay)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def test_matching_limiter_never_walks_into_a_429(tight_sim: HighLevelSimulator) -> None:
    limiter = RateLimiter(max_requests=5, interval=0.5)
    async with tight_client(tight_sim, limiter) as client:
        started = time.monotonic()
        for _ in range(12):
            contact = await client.get_contact(ADA_LOVELACE_ID)
            assert contact.id == ADA_LOVELACE_ID
        elapsed = time.monotonic() - started

    statuses = [r.status for r in tight_sim.requests]
    assert statuses == [200] * 12  # one request each, none answered 429
    assert elapsed >= 0.95  # 12 = 5 + 5 + 2: two full windows waited


async def test_limiter_counts_a_request_until_its_answer(tight_sim: HighLevelSimulator) -> None:
    # The server counts a request when it arrives, which can be well after the client started
    # it; a window kept from the start would reopen too early and walk into a 429.
    limiter = RateLimiter(max_requests=5, interval=0.5)
    async with tight_client(tight_sim, limiter, SlowFirstRequest(0.1)) as client:
        for _ in range(7):
            await client.get_contact(KATHERINE_JOHNSON_ID)

    assert [r.status for r in tight_sim.requests] == [200] * 7


async def test_too_loose_limiter_is_corrected_by_headers(tight_sim: HighLevelSimulator) -> None:
    limiter = RateLimiter(max_requests=100, interval=10.0)
    async with tight_client(tight_sim, limiter) as client:
        for _ in range(12):
            contact = await client.get_contact(GRACE_HOPPER_ID)
            assert contact.id == GRACE_HOPPER_ID

    # The server's X-RateLimit-* headers replaced the configured budget.
    assert limiter.max_requests == 5
    assert limiter.interval == 0.5
    statuses = [r.status for r in tight_sim.requests]
    assert statuses.count(200) == 12  # every read got through; any 429 was absorbed by a retry
    assert set(statuses) <= {200, 429}
