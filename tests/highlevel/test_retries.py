"""Retry policy: reads retry transient failures; writes never blindly repeat."""

from __future__ import annotations

import httpx
import pytest

from bot.highlevel import (
    MessageChannel,
    RateLimitedError,
    SendMessageRequest,
    ServerError,
    UnavailableError,
    UpsertContactRequest,
)

from .conftest import ClientFactory, FakeHighLevel, Reply
from .test_models import CONTACT_SAMPLE

SMS = SendMessageRequest(type=MessageChannel.SMS, contact_id="c1", message="Hi")
SEND_OK = {"conversationId": "cv1", "messageId": "m1"}
TOO_MANY = Reply({"statusCode": 429, "message": "Too many requests"}, 429, {"Retry-After": "0"})
BROKEN = Reply({"statusCode": 500, "message": "Internal server error"}, 500)


@pytest.mark.parametrize(
    "failure",
    [BROKEN, Reply(None, 502), Reply(raw=b"", status=503), TOO_MANY],
    ids=["500", "502", "503", "429"],
)
async def test_reads_are_retried_until_success(
    fake: FakeHighLevel, make_client: ClientFactory, failure: Reply
) -> None:
    fake.script("GET", "/conversations/cv1", failure, failure, Reply({"id": "cv1"}))
    conversation = await make_client(max_read_attempts=3).get_conversation("cv1")
    assert conversation.id == "cv1"
    assert len(fake.to("GET", "/conversations/cv1")) == 3


async def test_reads_stop_after_max_attempts(
    fake: FakeHighLevel, make_client: ClientFactory
) -> None:
    fake.script("GET", "/conversations/cv1", BROKEN)
    with pytest.raises(ServerError):
        await make_client(max_read_attempts=4).get_conversation("cv1")
    assert len(fake.requests) == 4


async def test_read_timeout_on_read_is_retried(
    fake: FakeHighLevel, make_client: ClientFactory
) -> None:
    fake.script("GET", "/conversations/cv1", Reply({"id": "slow"}, delay=0.3), Reply({"id": "cv1"}))
    client = make_client(timeout=httpx.Timeout(connect=1.0, read=0.05, write=1.0, pool=1.0))
    assert (await client.get_conversation("cv1")).id == "cv1"
    assert len(fake.requests) == 2


async def test_send_500_is_not_retried_and_may_have_acted(
    fake: FakeHighLevel, make_client: ClientFactory
) -> None:
    fake.script("POST", "/conversations/messages", BROKEN, Reply(SEND_OK))
    with pytest.raises(ServerError) as info:
        await make_client(max_send_attempts=3).send_message(SMS)
    assert info.value.may_have_acted is True
    assert info.value.status_code == 500
    assert len(fake.requests) == 1


async def test_send_read_timeout_is_not_retried_and_may_have_acted(
    fake: FakeHighLevel, make_client: ClientFactory
) -> None:
    fake.script("POST", "/conversations/messages", Reply(SEND_OK, delay=0.3), Reply(SEND_OK))
    client = make_client(
        timeout=httpx.Timeout(connect=1.0, read=0.05, write=1.0, pool=1.0), max_send_attempts=3
    )
    with pytest.raises(UnavailableError) as info:
        await client.send_message(SMS)
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)
    assert info.value.may_have_acted is True
    assert len(fake.requests) == 1


async def test_send_429_is_retried_and_succeeds(
    fake: FakeHighLevel, make_client: ClientFactory
) -> None:
    fake.script("POST", "/conversations/messages", TOO_MANY, Reply(SEND_OK))
    sent = await make_client(max_send_attempts=3).send_message(SMS)
    assert sent.message_id == "m1"
    requests = fake.to("POST", "/conversations/messages")
    assert len(requests) == 2
    assert requests[0].body == requests[1].body


async def test_send_429_every_time_gives_up_without_acting(
    fake: FakeHighLevel, make_client: ClientFactory
) -> None:
    fake.script("POST", "/conversations/messages", TOO_MANY)
    with pytest.raises(RateLimitedError) as info:
        await make_client(max_send_attempts=2).send_message(SMS)
    assert info.value.may_have_acted is False
    assert len(fake.requests) == 2


async def test_send_connection_refused_never_acted(
    make_client: ClientFactory, closed_port_url: str
) -> None:
    with pytest.raises(UnavailableError) as info:
        await make_client(base_url=closed_port_url, max_send_attempts=2).send_message(SMS)
    assert info.value.may_have_acted is False
    assert isinstance(info.value.__cause__, httpx.ConnectError)


async def test_send_dropped_connection_may_have_acted(
    fake: FakeHighLevel, make_client: ClientFactory
) -> None:
    # The fake closes the socket after reading the request: it arrived, but no answer came.
    fake.script("POST", "/conversations/messages", Reply(hang_up=True), Reply(SEND_OK))
    with pytest.raises(UnavailableError) as info:
        await make_client(max_send_attempts=3).send_message(SMS)
    assert info.value.may_have_acted is True
    assert len(fake.requests) == 1


async def test_upsert_500_is_not_retried(fake: FakeHighLevel, make_client: ClientFactory) -> None:
    fake.script("POST", "/contacts/upsert", BROKEN, Reply({"new": True, "contact": CONTACT_SAMPLE}))
    with pytest.raises(ServerError) as info:
        await make_client().upsert_contact(UpsertContactRequest(phone="+15550001111"))
    assert info.value.may_have_acted is True
    assert len(fake.requests) == 1


async def test_cancel_500_not_retried_but_429_is(
    fake: FakeHighLevel, make_client: ClientFactory
) -> None:
    ok = Reply({"status": 200, "message": "ok"})
    fake.script("DELETE", "/conversations/messages/m1/schedule", BROKEN, ok)
    fake.script("DELETE", "/conversations/messages/m2/schedule", TOO_MANY, ok)
    client = make_client()
    with pytest.raises(ServerError) as info:
        await client.cancel_scheduled_message("m1")
    assert info.value.may_have_acted is True
    assert (await client.cancel_scheduled_message("m2")).status == 200
    assert len(fake.to("DELETE", "/conversations/messages/m1/schedule")) == 1
    assert len(fake.to("DELETE", "/conversations/messages/m2/schedule")) == 2


async def test_upload_500_is_not_retried(fake: FakeHighLevel, make_client: ClientFactory) -> None:
    fake.script("POST", "/conversations/messages/upload", BROKEN)
    with pytest.raises(ServerError):
        await make_client().upload_attachments(
            conversation_id="cv1", contact_id="c1", files=[("a.txt", b"a", "text/plain")]
        )
    assert len(fake.requests) == 1
