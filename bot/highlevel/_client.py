"""Async HighLevel (LeadConnector) API client for one location (sub-account)."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import httpx
import pydantic
from pydantic import SecretStr

from ._contact_calls import ContactCalls
from ._conversation_models import (
    CancelScheduledResponse,
    Conversation,
    ConversationSearchResult,
    EmailMessage,
    Message,
    MessagePage,
)
from ._errors import UnavailableError, error_for_status
from ._inbox_calls import InboxCalls
from ._models import SendMessageRequest, SendMessageResponse
from ._ratelimit import RateLimiter
from ._seams import RequestObserver, StaticToken, TokenSource
from ._transport import AiohttpTransport
from ._uploads import UploadCalls
from ._wire import (
    _decode_json,
    _error_message,
    _Kind,
    _retry_after,
    _seg,
    _trace_id,
    _try_json,
    _unexpected,
    _unwrap,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_TIMEOUT",
    "HighLevelClient",
    "RequestObserver",
    "StaticToken",
    "TokenSource",
]

logger = logging.getLogger("bot.highlevel")

DEFAULT_BASE_URL = "https://services.leadconnectorhq.com"
DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=20.0, write=20.0, pool=10.0)
CONVERSATIONS_VERSION = "2021-04-15"
CONTACTS_VERSION = "2021-07-28"

try:
    _PACKAGE_VERSION = version("ghl-bridge")
except PackageNotFoundError:  # running from a source tree that is not installed
    _PACKAGE_VERSION = "0+unknown"
USER_AGENT = f"ghl-bridge/{_PACKAGE_VERSION}"

# Errors raised before the request could have left this process: retrying cannot duplicate.
_NEVER_SENT_ERRORS: tuple[type[httpx.RequestError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
)

_ModelT = TypeVar("_ModelT", bound=pydantic.BaseModel)
_jitter = random.SystemRandom()


class HighLevelClient(UploadCalls, InboxCalls, ContactCalls):
    """Typed client of the HighLevel conversations and contacts API for one location.

    Every request first waits on the location's ``RateLimiter``. Reads are retried with jittered
    exponential backoff; writes (send, upload, upsert, cancel) are retried only after a 429 or a
    failure to connect, because a retried send after a timeout or 5xx could text a customer twice.
    A 401 is answered before HighLevel acts, so any request answered 401 is made once more with
    the token ``TokenSource.refreshed`` gives (an OAuth token that expired early).
    Failures raise the ``HighLevelError`` tree (see ``bot.highlevel._errors``).
    """

    def __init__(
        self,
        *,
        token: SecretStr | TokenSource,
        location_id: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout: httpx.Timeout | None = None,
        limiter: RateLimiter | None = None,
        max_read_attempts: int = 4,
        max_send_attempts: int = 3,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        max_rate_limit_wait: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        conversations_version: str = CONVERSATIONS_VERSION,
        contacts_version: str = CONTACTS_VERSION,
        observer: RequestObserver | None = None,
    ) -> None:
        if not location_id:
            raise ValueError("location_id is required")
        if max_read_attempts < 1 or max_send_attempts < 1:
            raise ValueError("attempt counts must be at least 1")
        self._tokens: TokenSource = StaticToken(token) if isinstance(token, SecretStr) else token
        self._location_id = location_id
        self._limiter = limiter if limiter is not None else RateLimiter.for_location(location_id)
        self._max_attempts = {_Kind.READ: max_read_attempts, _Kind.WRITE: max_send_attempts}
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._max_rate_limit_wait = max_rate_limit_wait
        self._conversations_version = conversations_version
        self._contacts_version = contacts_version
        self._observer = observer
        self._http = httpx.AsyncClient(
            base_url=base_url,
            timeout=timeout if timeout is not None else DEFAULT_TIMEOUT,
            # aiohttp underneath unless a test gives its own (see _transport: CPU per request).
            transport=transport if transport is not None else AiohttpTransport(),
            headers={"Accept": "application/json", "User-Agent": USER_AGENT},
            follow_redirects=False,
        )

    @property
    def location_id(self) -> str:
        return self._location_id

    @property
    def limiter(self) -> RateLimiter:
        return self._limiter

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -----------------------------------------------------------------------------------------
    # Conversations: messages

    async def send_message(self, req: SendMessageRequest) -> SendMessageResponse:
        """POST /conversations/messages. Never retried once it may have reached HighLevel."""
        body = await self._request(
            "POST",
            "/conversations/messages",
            kind=_Kind.WRITE,
            version=self._conversations_version,
            json=req.to_wire(),
        )
        return self._parse(SendMessageResponse, body, kind=_Kind.WRITE)

    async def get_message(self, message_id: str) -> Message:
        """GET /conversations/messages/{id}; real answers wrap it as ``{"message": {...}}``."""
        body = await self._read(f"/conversations/messages/{_seg(message_id)}")
        return self._parse(Message, _unwrap(body, "message"), kind=_Kind.READ)

    async def get_email(self, email_message_id: str) -> EmailMessage:
        """GET /conversations/messages/email/{id}; sometimes wrapped in ``emailMessage``."""
        body = await self._read(f"/conversations/messages/email/{_seg(email_message_id)}")
        return self._parse(EmailMessage, _unwrap(body, "emailMessage"), kind=_Kind.READ)

    async def list_messages(
        self,
        conversation_id: str,
        *,
        last_message_id: str | None = None,
        limit: int = 20,
        types: Sequence[str] | None = None,
    ) -> MessagePage:
        """GET /conversations/{id}/messages, newest first; page on with ``last_message_id``."""
        params: dict[str, str | int] = {"limit": limit}
        if last_message_id:
            params["lastMessageId"] = last_message_id
        if types:
            params["type"] = ",".join(types)
        body = await self._read(f"/conversations/{_seg(conversation_id)}/messages", params=params)
        # Real shape {"messages": {"lastMessageId", "nextPage", "messages": [...]}} (HLD#54);
        # the documented shape is the inner object.
        return self._parse(MessagePage, _unwrap(body, "messages"), kind=_Kind.READ)

    async def cancel_scheduled_message(self, message_id: str) -> CancelScheduledResponse:
        """DELETE /conversations/messages/{id}/schedule."""
        return await self._cancel(f"/conversations/messages/{_seg(message_id)}/schedule")

    async def cancel_scheduled_email(self, email_message_id: str) -> CancelScheduledResponse:
        """DELETE /conversations/messages/email/{id}/schedule."""
        return await self._cancel(
            f"/conversations/messages/email/{_seg(email_message_id)}/schedule"
        )

    async def _cancel(self, path: str) -> CancelScheduledResponse:
        # The spec declares no Version for the email variant, but HighLevel requires one
        # everywhere (HLD#335), so both send the conversations version.
        body = await self._request(
            "DELETE", path, kind=_Kind.WRITE, version=self._conversations_version
        )
        result = self._parse(CancelScheduledResponse, body, kind=_Kind.WRITE)
        if not 200 <= result.status < 300:
            # A 200 whose body says e.g. 404 "Failed cancel the scheduled message": not cancelled.
            raise error_for_status(
                result.status,
                result.message or "HighLevel did not cancel the scheduled message",
                trace_id=_trace_id(body),
                may_have_acted=False,
            )
        return result

    # -----------------------------------------------------------------------------------------
    # Conversations

    async def get_conversation(self, conversation_id: str) -> Conversation:
        """GET /conversations/{id}."""
        body = await self._read(f"/conversations/{_seg(conversation_id)}")
        return self._parse(Conversation, _unwrap(body, "conversation"), kind=_Kind.READ)

    async def search_conversations(
        self,
        *,
        contact_id: str | None = None,
        query: str | None = None,
        sort_by: Literal[
            "last_manual_message_date", "last_message_date", "score_profile", "overdue_at", "due_at"
        ]
        | None = None,
        sort: Literal["asc", "desc"] | None = None,
        limit: int | None = None,
        start_after_date: int | None = None,
        last_message_direction: Literal["inbound", "outbound"] | None = None,
        last_message_type: str | None = None,
        status: Literal["all", "read", "unread", "starred", "recents"] | None = None,
        assigned_to: str | None = None,
    ) -> ConversationSearchResult:
        """GET /conversations/search in this location."""
        candidates: dict[str, str | int | None] = {
            "locationId": self._location_id,
            "contactId": contact_id,
            "query": query,
            "sortBy": sort_by,
            "sort": sort,
            "limit": limit,
            "startAfterDate": start_after_date,
            "lastMessageDirection": last_message_direction,
            "lastMessageType": last_message_type,
            "status": status,
            "assignedTo": assigned_to,
        }
        params = {key: value for key, value in candidates.items() if value is not None}
        body = await self._read("/conversations/search", params=params)
        return self._parse(ConversationSearchResult, body, kind=_Kind.READ)

    # -----------------------------------------------------------------------------------------
    # Transport

    async def _read(
        self,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        version: str | None = None,
    ) -> Any:
        return await self._request(
            "GET",
            path,
            kind=_Kind.READ,
            version=version or self._conversations_version,
            params=params,
        )

    async def _request(
        self,
        method: str,
        path: str,
        *,
        kind: _Kind,
        version: str,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        files: list[tuple[str, tuple[str, bytes, str]]] | None = None,
    ) -> Any:
        """Send one logical request (with retries) and return the decoded JSON body."""
        token = await self._tokens.access_token()
        renewed = False  # this request already went out again with a refreshed token
        max_attempts = self._max_attempts[kind]
        attempt = 0
        while True:
            attempt += 1
            headers = {"Authorization": f"Bearer {token.get_secret_value()}", "Version": version}
            stamp = await self._limiter.acquire(max_wait=self._max_rate_limit_wait)
            started = time.monotonic()
            try:
                try:
                    response = await self._http.request(
                        method,
                        path,
                        params=params,
                        json=json,
                        data=data,
                        files=files,
                        headers=headers,
                    )
                finally:
                    # HighLevel counted it on arrival, some time before now: count it from now.
                    self._limiter.settle(stamp)
            except httpx.RequestError as exc:
                elapsed_ms = (time.monotonic() - started) * 1000
                self._observe(method, elapsed_ms, None)
                never_sent = isinstance(exc, _NEVER_SENT_ERRORS)
                logger.debug(
                    "%s %s -> %s after %.0f ms", method, path, type(exc).__name__, elapsed_ms
                )
                retryable = kind is _Kind.READ or never_sent
                if retryable and attempt < max_attempts:
                    await self._backoff(method, path, attempt, type(exc).__name__)
                    continue
                raise UnavailableError(
                    f"HighLevel unreachable ({type(exc).__name__}: {exc})",
                    may_have_acted=kind is _Kind.WRITE and not never_sent,
                ) from exc

            elapsed_ms = (time.monotonic() - started) * 1000
            self._observe(method, elapsed_ms, response.status_code)
            logger.debug("%s %s -> %d in %.0f ms", method, path, response.status_code, elapsed_ms)
            self._limiter.observe_headers(response.headers)
            status = response.status_code

            if 200 <= status < 300:
                return _decode_json(response, path, kind)

            if status == 401:
                if not renewed:
                    newer = await self._tokens.refreshed(token)
                    if newer is not None:
                        # Not acted on, so even a send goes out again; not counted as an attempt.
                        token, renewed, attempt = newer, True, attempt - 1
                        continue
                else:
                    await self._tokens.refused(token)
            retry_after = 0.0
            if status == 429:
                # No Retry-After is documented: then wait out the window (NOTES.md §5).
                asked = _retry_after(response.headers)
                retry_after = asked if asked is not None else self._limiter.interval
                self._limiter.block_for(retry_after)
            # Only a 429 proves a write was not acted on; a 5xx may come after the message went out.
            retryable = status == 429 or (kind is _Kind.READ and status >= 500)
            if retryable and attempt < max_attempts:
                await self._backoff(method, path, attempt, f"HTTP {status}")
                continue
            error_body = _try_json(response)
            raise error_for_status(
                status,
                _error_message(error_body, response),
                trace_id=_trace_id(error_body),
                may_have_acted=kind is _Kind.WRITE and status >= 500,
                retry_after=retry_after,
            )

    def _observe(self, method: str, elapsed_ms: float, status: int | None) -> None:
        if self._observer is not None:
            self._observer.highlevel_request(
                location_id=self._location_id,
                method=method,
                seconds=elapsed_ms / 1000,
                status=status,
            )

    async def _backoff(self, method: str, path: str, attempt: int, reason: str) -> None:
        ceiling = min(self._backoff_max, self._backoff_base * 2 ** (attempt - 1))
        delay = ceiling / 2 + _jitter.uniform(0, ceiling / 2)
        logger.info(
            "HighLevel %s %s failed (%s), retry %d in %.2f s", method, path, reason, attempt, delay
        )
        await asyncio.sleep(delay)

    @staticmethod
    def _parse(model: type[_ModelT], body: Any, *, kind: _Kind) -> _ModelT:
        try:
            return model.model_validate(body)
        except pydantic.ValidationError as exc:
            # Field paths and reasons only: the input values could be customer data.
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
                for error in exc.errors(include_input=False, include_url=False)
            )
            raise _unexpected(model.__name__, problems, kind=kind) from exc
