"""A 401 is answered before HighLevel acts: the request goes out once more with the token the
`TokenSource` refreshed (a send too), and a second 401 is reported to the source."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from bot.highlevel import (
    AuthError,
    HighLevelClient,
    MessageChannel,
    RateLimiter,
    SendMessageRequest,
)

from .conftest import LOCATION_ID, FakeHighLevel, Recorded, Reply

SMS = SendMessageRequest(type=MessageChannel.SMS, contact_id="c1", message="Hi")
SEND_OK = {"conversationId": "cv1", "messageId": "m1"}
EXPIRED = Reply({"statusCode": 401, "message": "Invalid JWT", "error": "Unauthorized"}, 401)


class RotatingToken:
    """A source whose refresh hands out token-1, token-2, … and records what it was told."""

    def __init__(self, *, can_refresh: bool = True) -> None:
        self.current = SecretStr("token-0")
        self.can_refresh = can_refresh
        self.rejected: list[str] = []
        self.refused_tokens: list[str] = []

    async def access_token(self) -> SecretStr:
        return self.current

    async def refreshed(self, rejected: SecretStr) -> SecretStr | None:
        self.rejected.append(rejected.get_secret_value())
        if not self.can_refresh:
            return None
        number = int(self.current.get_secret_value().rsplit("-", 1)[1]) + 1
        self.current = SecretStr(f"token-{number}")
        return self.current

    async def refused(self, rejected: SecretStr) -> None:
        self.refused_tokens.append(rejected.get_secret_value())


def _bearer(request: Recorded) -> str:
    return request.headers["Authorization"].removeprefix("Bearer ")


def _client(fake: FakeHighLevel, source: RotatingToken) -> HighLevelClient:
    return HighLevelClient(
        token=source,
        location_id=LOCATION_ID,
        base_url=fake.url,
        timeout=httpx.Timeout(2.0),
        limiter=RateLimiter(max_requests=1000, interval=1.0),
        max_send_attempts=1,  # the repeat after a 401 is not one of the attempts
        backoff_base=0.001,
    )


async def test_a_send_answered_401_goes_out_once_more_with_the_refreshed_token(
    fake: FakeHighLevel,
) -> None:
    fake.responder = lambda r: EXPIRED if _bearer(r) == "token-0" else Reply(SEND_OK)
    source = RotatingToken()
    async with _client(fake, source) as client:
        sent = await client.send_message(SMS)
    assert sent.message_id == "m1"
    sends = fake.to("POST", "/conversations/messages")
    assert [_bearer(r) for r in sends] == ["token-0", "token-1"]
    assert source.rejected == ["token-0"]
    assert source.refused_tokens == []


async def test_a_second_401_is_reported_to_the_source_and_raised(fake: FakeHighLevel) -> None:
    fake.script("POST", "/conversations/messages", EXPIRED)
    source = RotatingToken()
    async with _client(fake, source) as client:
        with pytest.raises(AuthError) as raised:
            await client.send_message(SMS)
    assert raised.value.status_code == 401
    assert raised.value.may_have_acted is False
    assert [_bearer(r) for r in fake.to("POST", "/conversations/messages")] == [
        "token-0",
        "token-1",
    ]
    assert source.refused_tokens == ["token-1"]


async def test_a_401_stands_when_the_source_has_nothing_newer(fake: FakeHighLevel) -> None:
    fake.script("GET", "/conversations/cv1", EXPIRED)
    source = RotatingToken(can_refresh=False)
    async with _client(fake, source) as client:
        with pytest.raises(AuthError):
            await client.get_conversation("cv1")
    assert len(fake.to("GET", "/conversations/cv1")) == 1
    assert source.rejected == ["token-0"]


async def test_a_403_is_not_a_reason_to_refresh(fake: FakeHighLevel) -> None:
    fake.script(
        "GET",
        "/conversations/cv1",
        Reply(
            {"statusCode": 403, "message": "The token does not have access to this location."}, 403
        ),
    )
    source = RotatingToken()
    async with _client(fake, source) as client:
        with pytest.raises(AuthError) as raised:
            await client.get_conversation("cv1")
    assert raised.value.status_code == 403
    assert source.rejected == []


async def test_a_static_token_sends_the_same_token_every_time(fake: FakeHighLevel) -> None:
    fake.script("GET", "/conversations/cv1", Reply({"id": "cv1"}))
    async with HighLevelClient(
        token=SecretStr("pit-1"), location_id=LOCATION_ID, base_url=fake.url
    ) as client:
        await client.get_conversation("cv1")
        await client.get_conversation("cv1")
    assert [_bearer(r) for r in fake.to("GET", "/conversations/cv1")] == ["pit-1", "pit-1"]
