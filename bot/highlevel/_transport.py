"""httpx's transport over an aiohttp session: the HighLevel client keeps httpx's API, its
MockTransport seam and its exception tree, and pays aiohttp's cost per request.

httpcore's pool scans every pooled connection, polling its socket, on each request; with a
few connections in flight a request cost about 2-3 ms of CPU against 0.8 ms through aiohttp
(`python -m bench.run`: the stack's floor). aiohttp notices a connection the server closed from
the event loop instead of polling for it.

Errors keep the meaning the client's retry rules need (`_client._NEVER_SENT_ERRORS`): only a
failure to get a connection says the request never left; anything later may have reached
HighLevel, so a send that meets it is looked up before anyone resends it.
"""

from __future__ import annotations

import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests through one aiohttp ClientSession, made on first use."""

    def __init__(self, *, max_connections: int = 20, keepalive_seconds: float = 15.0) -> None:
        self._max_connections = max_connections
        self._keepalive_seconds = keepalive_seconds
        self._session: aiohttp.ClientSession | None = None
        # HTTP(S)_PROXY and NO_PROXY, as httpx's own transport reads them, read once: aiohttp's
        # trust_env reads them (and ~/.netrc) again for every request, on a worker thread.
        self._proxies = urllib.request.getproxies_environment()
        self._proxy_of: dict[tuple[str, str], str | None] = {}

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, keepalive_timeout=self._keepalive_seconds
            )
            # httpx decodes and decompresses, follows no redirect and sets every header itself.
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    def proxy_for(self, scheme: str, host: str) -> str | None:
        """The proxy the environment names for ``scheme://host``, None for NO_PROXY hosts."""
        key = (scheme, host)
        if key not in self._proxy_of:
            proxy = self._proxies.get(scheme)
            if proxy and urllib.request.proxy_bypass(host):  # NO_PROXY
                proxy = None
            self._proxy_of[key] = proxy or None
        return self._proxy_of[key]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout: dict[str, float | None] = request.extensions.get("timeout", {})
        connect, pool = timeout.get("connect"), timeout.get("pool")
        # As httpx would send them: names in their own case, repeated names kept.
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        body: bytes | AsyncIterator[bytes] | None
        try:
            body = request.content or None
        except httpx.RequestNotRead:  # a streamed upload: aiohttp does the chunking
            body = _chunks(request.stream)
            headers = [(k, v) for k, v in headers if k.lower() != "transfer-encoding"]
        try:
            response = await self._client().request(
                request.method,
                str(request.url),
                headers=headers,
                data=body,
                proxy=self.proxy_for(request.url.scheme, request.url.host),
                allow_redirects=False,
                compress=False,
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    # aiohttp's `connect` includes waiting for a pooled connection.
                    connect=None if connect is None or pool is None else connect + pool,
                    sock_connect=connect,
                    sock_read=timeout.get("read"),
                ),
            )
        except Exception as exc:
            mapped = _as_httpx_error(exc, request)
            if mapped is exc:
                raise
            raise mapped from exc
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_ResponseStream(response, request),
            request=request,
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": (response.reason or "").encode("ascii", "replace"),
            },
        )

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except Exception as exc:
            mapped = _as_httpx_error(exc, self._request)
            if mapped is exc:
                raise
            raise mapped from exc

    async def aclose(self) -> None:
        self._response.release()


async def _chunks(stream: Any) -> AsyncIterator[bytes]:
    async for chunk in stream:
        yield chunk


def _as_httpx_error(exc: Exception, request: httpx.Request) -> Exception:
    """The httpx error that says the same: before a connection (never sent) or after."""
    if isinstance(exc, httpx.HTTPError):
        return exc
    message = str(exc) or type(exc).__name__
    # Before a connection was made: the request cannot have left this process.
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message, request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message, request=request)
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return httpx.UnsupportedProtocol(message, request=request)
    # With a connection: the request may have reached HighLevel.
    if isinstance(exc, aiohttp.ServerTimeoutError | TimeoutError):
        return httpx.ReadTimeout(message, request=request)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientResponseError):
        return httpx.RemoteProtocolError(message, request=request)
    if isinstance(exc, aiohttp.ClientError | OSError):
        return httpx.ReadError(message, request=request)
    return exc
