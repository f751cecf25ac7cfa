"""Every error class from real HTTP answers (and non-answers) of the fake server."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bot.highlevel import (
    AuthError,
    HighLevelError,
    MessageChannel,
    NotFoundError,
    RateLimitedError,
    SendMessageRequest,
    ServerError,
    UnavailableError,
    ValidationError,
)

from .conftest import ClientFactory, FakeHighLevel, Reply

SMS = SendMessageRequest(type=MessageChannel.SMS, contact_id="c1", message="Hi")


@pytest.mark.parametrize(
    ("status", "body", "error_class", "message"),
    [
        (
            401,
            {
                "statusCode": 401,
                "message": "Invalid token: access token is invalid",
                "error": "Unauthorized",
            },
            AuthError,
            "Invalid token: access token is invalid",
        ),
        (
            403,
            {"statusCode": 403, "message": "The token does not have access to this location."},
            AuthError,
            "The token does not have access to this location.",
        ),
        (404, {"statusCode": 404, "message": "Not found"}, NotFoundError, "Not found"),
        (
            400,
            {"statusCode": 400, "message": "Bad Request", "traceId": "tr-400"},
            ValidationError,
            "Bad Request",
        ),
        (
            422,
            {
                "statusCode": 422,
                "message": ["contactId must be a string", "type must be a valid enum value"],
                "error": "Unprocessable Entity",
                "traceId": "tr-422",
            },
            ValidationError,
            "contactId must be a string; type must be a valid enum value",
        ),
        (
            413,
            {"status": 413, "message": "File too large"},
            ValidationError,
            "File too large",
        ),
        (500, {"statusCode": 500, "message": "Internal server error"}, ServerError, None),
        (503, None, ServerError, None),
    ],
)
async def test_status_maps_to_error_class_on_reads(
    fake: FakeHighLevel,
    make_client: ClientFactory,
    status: int,
    body: dict[str, Any] | None,
    error_class: type[HighLevelError],
    message: str | None,
) -> None:
    reply = Reply(body, status=status) if body is not None else Reply(raw=b"", status=status)
    fake.script("GET", "/contacts/c1", reply)
    with pytest.raises(error_class) as info:
        await make_client(max_read_attempts=1).get_contact("c1")
    error = info.value
    assert type(error) is error_class
    assert error.status_code == status
    assert error.may_have_acted is False  # reads never act
    if message is not None:
        assert error.message == message
    if body is not None and "traceId" in body:
        assert error.trace_id == body["traceId"]
    assert error.message  # always some text, even for an empty 503 body


@pytest.mark.parametrize(
    ("status", "error_class", "may_have_acted"),
    [
        (400, ValidationError, False),
        (401, AuthError, False),
        (403, AuthError, False),
        (404, NotFoundError, False),
        (422, ValidationError, False),
        (500, ServerError, True),
        (502, ServerError, True),
        (503, ServerError, True),
    ],
)
async def test_send_errors_say_whether_highlevel_may_have_acted(
    fake: FakeHighLevel,
    make_client: ClientFactory,
    status: int,
    error_class: type[HighLevelError],
    may_have_acted: bool,
) -> None:
    fake.script(
        "POST", "/conversations/messages", Reply({"statusCode": status, "message": "x"}, status)
    )
    with pytest.raises(error_class) as info:
        await make_client().send_message(SMS)
    assert info.value.may_have_acted is may_have_acted
    assert len(fake.requests) == 1  # none of these is retried for a send


async def test_429_after_last_attempt_is_rate_limited(
    fake: FakeHighLevel, make_client: ClientFactory
) -> None:
    fake.script(
        "GET",
        "/conversations/cv1",
        Reply({"statusCode": 429, "message": "Too many requests"}, 429, {"Retry-After": "0.05"}),
    )
    with pytest.raises(RateLimitedError) as info:
        await make_client(max_read_attempts=2).get_conversation("cv1")
    assert info.value.status_code == 429
    assert info.value.retry_after == pytest.approx(0.05)
    assert info.value.may_have_acted is False
    assert len(fake.requests) == 2


async def test_connection_refused_is_unavailable(
    make_client: ClientFactory, closed_port_url: str
) -> None:
    with pytest.raises(UnavailableError) as info:
        await make_client(base_url=closed_port_url, max_read_attempts=2).get_contact("c1")
    assert info.value.status_code is None
    assert info.value.may_have_acted is False
    assert isinstance(info.value.__cause__, httpx.ConnectError)


async def test_read_timeout_is_unavailable(fake: FakeHighLevel, make_client: ClientFactory) -> None:
    fake.script("GET", "/conversations/cv1", Reply({"id": "cv1"}, delay=0.3))
    client = make_client(
        timeout=httpx.Timeout(connect=1.0, read=0.05, write=1.0, pool=1.0), max_read_attempts=1
    )
    with pytest.raises(UnavailableError) as info:
        await client.get_conversation("cv1")
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)
    assert info.value.may_have_acted is False


def test_error_str_carries_status_trace_and_outcome() -> None:
    error = ServerError("boom", status_code=502, trace_id="tr-1", may_have_acted=True)
    assert str(error) == "boom (HTTP 502, traceId tr-1, HighLevel may have acted on the request)"
    assert str(HighLevelError("plain")) == "plain"
