"""AttachmentFetcher: the one place that downloads a customer's file, bounded and guarded.

A HighLevel message's `attachments` are URLs anyone who can message the sub-account chooses
(an email's, an SMS's), so fetching one is a request on the customer's behalf from inside our
network. The fetcher therefore:

- fetches only http(s) URLs, with no proxy from the environment and no cookies;
- resolves the host itself and refuses it if any of its addresses is loopback, private,
  link-local, multicast or otherwise not public, then connects to an address it checked (the
  Host header and TLS name stay the URL's), so a name cannot change its answer in between;
- follows at most a few redirects, each checked the same way;
- stops reading as soon as a file passes `max_bytes` (the Content-Length says so first, when
  there is one), and gives up after `timeout_seconds` in all.

The exception is the HighLevel API's own host and port (`trusted_base_url`): when it is a
private address (the simulator on 127.0.0.1, a test double on a private network), files served
there are fetched.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import mimetypes
import socket
import ssl
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urljoin, urlsplit

import httpx

__all__ = [
    "AttachmentFetcher",
    "FetchFailed",
    "FetchProblem",
    "FetchedFile",
    "attachment_name",
    "is_public_address",
]

DEFAULT_TIMEOUT_SECONDS = 30.0
CONNECT_TIMEOUT_SECONDS = 5.0
MAX_REDIRECTS = 3
_NAME_MAX = 150
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}

# host, port -> the host's addresses (what getaddrinfo answers); a test may give its own.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]


class FetchProblem(enum.StrEnum):
    """Why a file was not fetched."""

    NOT_WEB_LINK = "not_web_link"  # not an http(s) URL
    PRIVATE_ADDRESS = "private_address"  # it (or a redirect) points inside a private network
    TOO_BIG = "too_big"
    HTTP_ERROR = "http_error"  # answered 4xx/5xx (`status`), or redirected too often (None)
    TIMED_OUT = "timed_out"
    UNREACHABLE = "unreachable"  # no such host, connection refused or broken


class FetchFailed(Exception):
    """The file was not fetched: `problem`, and what is known (`size` when TOO_BIG and the
    server said it; `status` for HTTP_ERROR)."""

    def __init__(
        self, problem: FetchProblem, *, size: int | None = None, status: int | None = None
    ) -> None:
        super().__init__(problem.value if status is None else f"{problem.value} ({status})")
        self.problem = problem
        self.size = size
        self.status = status


@dataclass(frozen=True, slots=True)
class FetchedFile:
    """A downloaded file: its name (from the URL), declared content type and bytes."""

    url: str
    name: str
    content_type: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)


def is_public_address(address: str) -> bool:
    """`address` (an IPv4 or IPv6 literal) is a public unicast address, the only kind fetched.

    IPv6 forms that carry an IPv4 address (mapped, 6to4, Teredo) are judged by it too.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None and not is_public_address(str(embedded)):
            return False
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def attachment_name(url: str, content_type: str = "") -> str:
    """A file name for `url`: its last path segment, readable and safe to show or upload
    (no path, control or format characters), with an extension from `content_type` when it
    has none; "attachment" when the URL names nothing."""
    try:
        path = urlsplit(url.strip()).path
    except ValueError:
        path = ""
    # The last segment, and of that (decoded) the part after any slash it hides.
    name = unquote(path.rstrip("/").rsplit("/", 1)[-1]).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf"))
    name = " ".join(name.split()).strip(". ")
    if not name:
        name = "attachment"
    if "." not in name and content_type:
        extension = mimetypes.guess_extension(content_type)
        if extension:
            name += extension
    if len(name) > _NAME_MAX:
        stem, dot, extension = name.rpartition(".")
        if dot and 0 < len(extension) <= 10:
            name = f"{stem[: _NAME_MAX - len(extension) - 2]}….{extension}"
        else:
            name = name[: _NAME_MAX - 1] + "…"
    return name


async def _system_resolver(host: str, port: int) -> Sequence[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _origin(url: httpx.URL) -> tuple[str, int]:
    """The URL's host (ASCII: an IDN as punycode) and port."""
    return url.raw_host.decode("ascii").lower(), url.port or _DEFAULT_PORTS.get(url.scheme, 0)


class AttachmentFetcher:
    """Downloads customers' files: http(s) only, public addresses only (but for the HighLevel
    API's own host when that is private), at most `max_bytes`, within `timeout_seconds`."""

    def __init__(
        self,
        *,
        max_bytes: int,
        trusted_base_url: str | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        max_redirects: int = MAX_REDIRECTS,
        resolver: Resolver | None = None,
    ) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        self.max_bytes = max_bytes
        self.timeout_seconds = timeout_seconds
        self._max_redirects = max_redirects
        self._resolve = resolver or _system_resolver
        self._trusted: tuple[str, int] | None = None
        if trusted_base_url:
            trusted = httpx.URL(trusted_base_url)
            if trusted.scheme in _DEFAULT_PORTS and trusted.host:
                self._trusted = _origin(trusted)
        # Made once (loading the CA bundle is the slow part of a client), shared by the
        # short-lived clients of each fetch.
        self._ssl: ssl.SSLContext | None = None

    async def fetch(self, url: str) -> FetchedFile:
        """The file at `url`; FetchFailed saying why not."""
        try:
            async with asyncio.timeout(self.timeout_seconds):
                return await self._fetch(url)
        except TimeoutError as exc:
            raise FetchFailed(FetchProblem.TIMED_OUT) from exc

    async def _fetch(self, url: str) -> FetchedFile:
        if self._ssl is None:
            # As the other clients verify (certifi, or SSL_CERT_FILE/DIR when set); the
            # environment's proxies are not used (trust_env=False below).
            self._ssl = httpx.create_ssl_context()
        timeout = httpx.Timeout(
            min(CONNECT_TIMEOUT_SECONDS, self.timeout_seconds), read=self.timeout_seconds
        )
        async with httpx.AsyncClient(
            verify=self._ssl, trust_env=False, follow_redirects=False, timeout=timeout
        ) as client:
            current = url
            for _ in range(self._max_redirects + 1):
                target = _web_url(current)
                response = await self._open(client, target)
                try:
                    location = response.headers.get("location")
                    if response.status_code in _REDIRECTS and location:
                        current = urljoin(str(target), location)
                        continue
                    if not response.is_success:
                        raise FetchFailed(FetchProblem.HTTP_ERROR, status=response.status_code)
                    data = await self._read(response)
                finally:
                    await response.aclose()
                content_type = response.headers.get("content-type", "").split(";")[0].strip()
                return FetchedFile(
                    url=url,
                    name=attachment_name(url, content_type),
                    content_type=content_type or "application/octet-stream",
                    data=data,
                )
        raise FetchFailed(FetchProblem.HTTP_ERROR)  # redirected too often

    async def _open(self, client: httpx.AsyncClient, target: httpx.URL) -> httpx.Response:
        """The response's head, from one of the host's checked addresses in turn."""
        host, port = _origin(target)
        try:
            addresses = list(await self._resolve(host, port))
        except (OSError, UnicodeError) as exc:  # socket.gaierror: no such host
            raise FetchFailed(FetchProblem.UNREACHABLE) from exc
        if not addresses:
            raise FetchFailed(FetchProblem.UNREACHABLE)
        if (host, port) != self._trusted and not all(is_public_address(a) for a in addresses):
            raise FetchFailed(FetchProblem.PRIVATE_ADDRESS)
        headers = {"Host": target.netloc.decode("ascii"), "Accept-Encoding": "identity"}
        extensions = {"sni_hostname": host} if target.scheme == "https" else {}
        for address in addresses:
            request = client.build_request(
                "GET",
                target.copy_with(host=address.split("%", 1)[0]),
                headers=headers,
                extensions=extensions,
            )
            try:
                return await client.send(request, stream=True)
            except httpx.ConnectError:
                continue  # the next address, if any
            except httpx.TimeoutException as exc:
                raise FetchFailed(FetchProblem.TIMED_OUT) from exc
            except httpx.HTTPError as exc:
                raise FetchFailed(FetchProblem.UNREACHABLE) from exc
        raise FetchFailed(FetchProblem.UNREACHABLE)

    async def _read(self, response: httpx.Response) -> bytes:
        """The body, or TOO_BIG as soon as it passes `max_bytes`."""
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise FetchFailed(FetchProblem.TOO_BIG, size=int(declared))
        body = bytearray()
        try:
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > self.max_bytes:
                    raise FetchFailed(FetchProblem.TOO_BIG)
        except httpx.TimeoutException as exc:
            raise FetchFailed(FetchProblem.TIMED_OUT) from exc
        except httpx.HTTPError as exc:
            raise FetchFailed(FetchProblem.UNREACHABLE) from exc
        return bytes(body)


def _web_url(url: str) -> httpx.URL:
    """`url` as an http(s) URL with a host; NOT_WEB_LINK otherwise."""
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise FetchFailed(FetchProblem.NOT_WEB_LINK) from exc
    if parsed.scheme not in _DEFAULT_PORTS or not parsed.host:
        raise FetchFailed(FetchProblem.NOT_WEB_LINK)
    return parsed
