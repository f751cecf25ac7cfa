"""AttachmentFetcher against real HTTP servers on 127.0.0.1: what it fetches, what it refuses
(schemes, private addresses, redirects into them), and how it bounds size and time."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from bot.files.fetch import (
    AttachmentFetcher,
    FetchFailed,
    FetchProblem,
    attachment_name,
    is_public_address,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PHOTO = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40


class Server:
    """One aiohttp server on 127.0.0.1 and the requests it got (path, Host header). Handlers
    are found by the path's first segment, so a test can add one to a running server."""

    def __init__(self) -> None:
        self.app = web.Application()
        self.handlers: dict[str, Handler] = {}
        self.seen: list[tuple[str, str]] = []
        self.streamed = 0
        self.url = ""
        self.port = 0
        self.app.router.add_get("/{tail:.*}", self._dispatch)

    def route(self, first_segment: str, handler: Handler) -> None:
        self.handlers[first_segment] = handler

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.path, request.headers.get("Host", "")))
        handler = self.handlers.get(request.path.strip("/").split("/", 1)[0])
        if handler is None:
            raise web.HTTPNotFound()
        return await handler(request)


@asynccontextmanager
async def serving(server: Server) -> AsyncIterator[Server]:
    runner = web.AppRunner(server.app)
    await runner.setup()
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    await web.SockSite(runner, listening).start()
    server.port = int(listening.getsockname()[1])
    server.url = f"http://127.0.0.1:{server.port}"
    try:
        yield server
    finally:
        await runner.cleanup()


async def photo(request: web.Request) -> web.StreamResponse:
    return web.Response(body=PHOTO, content_type="image/jpeg")


@pytest.fixture
async def files() -> AsyncIterator[Server]:
    """The 'HighLevel' server: its host and port are the fetcher's trusted base."""
    server = Server()
    server.route("media", photo)
    async with serving(server) as running:
        yield running


@pytest.fixture
async def other() -> AsyncIterator[Server]:
    """Another server on 127.0.0.1: a private address that is not HighLevel's."""
    server = Server()
    server.route("secret", photo)
    async with serving(server) as running:
        yield running


def fetcher_for(
    server: Server | None,
    *,
    max_bytes: int = 1024 * 1024,
    timeout_seconds: float = 5.0,
    trusted_base_url: str | None = None,
) -> AttachmentFetcher:
    """A fetcher whose trusted HighLevel host is `server`'s (or `trusted_base_url`)."""
    return AttachmentFetcher(
        max_bytes=max_bytes,
        timeout_seconds=timeout_seconds,
        trusted_base_url=trusted_base_url or (server.url if server is not None else None),
    )


async def failure(fetcher: AttachmentFetcher, url: str) -> FetchFailed:
    with pytest.raises(FetchFailed) as caught:
        await fetcher.fetch(url)
    return caught.value


async def test_fetches_a_file_from_the_highlevel_host(files: Server) -> None:
    fetched = await fetcher_for(files).fetch(f"{files.url}/media/photo%20one.jpg")
    assert (fetched.name, fetched.content_type, fetched.data) == (
        "photo one.jpg",
        "image/jpeg",
        PHOTO,
    )


async def test_a_private_address_other_than_highlevels_is_refused(
    files: Server, other: Server
) -> None:
    problem = await failure(fetcher_for(files), f"{other.url}/secret")
    assert problem.problem is FetchProblem.PRIVATE_ADDRESS
    assert other.seen == []  # not even connected to


async def test_loopback_is_refused_when_highlevel_is_public(files: Server) -> None:
    fetcher = fetcher_for(None)
    for host in ("127.0.0.1", "localhost", "[::1]"):
        url = f"http://{host}:{files.port}/media/photo%20one.jpg"
        assert (await failure(fetcher, url)).problem is FetchProblem.PRIVATE_ADDRESS
    assert files.seen == []


@pytest.mark.parametrize(
    "addresses",
    [
        ["10.0.0.5"],
        ["169.254.169.254"],  # the cloud metadata service
        ["93.184.215.14", "192.168.1.20"],  # every address is checked, not only the first
        ["::ffff:127.0.0.1"],
        ["fd00::1"],
    ],
)
async def test_a_name_that_resolves_to_a_private_address_is_refused(
    addresses: list[str],
) -> None:
    asked: list[tuple[str, int]] = []

    async def resolver(host: str, port: int) -> Sequence[str]:
        asked.append((host, port))
        return addresses

    fetcher = AttachmentFetcher(max_bytes=1024, resolver=resolver)
    problem = await failure(fetcher, "https://files.example.com/photo.jpg")
    assert problem.problem is FetchProblem.PRIVATE_ADDRESS
    assert asked == [("files.example.com", 443)]


async def test_connects_to_the_address_it_checked_with_the_urls_host_name(files: Server) -> None:
    """The name is resolved once, by the fetcher; the request goes to that address and still
    names the host (no second, unchecked lookup by the HTTP client)."""

    async def resolver(host: str, port: int) -> Sequence[str]:
        assert host == "files.example.test"
        return ["127.0.0.1"]

    fetcher = AttachmentFetcher(
        max_bytes=1024 * 1024,
        trusted_base_url=f"http://files.example.test:{files.port}/",
        resolver=resolver,
    )
    fetched = await fetcher.fetch(f"http://files.example.test:{files.port}/media/photo%20one.jpg")
    assert fetched.data == PHOTO
    assert files.seen == [("/media/photo one.jpg", f"files.example.test:{files.port}")]


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://files.example.com/photo.jpg",
        "javascript:alert(1)",
        "gopher://127.0.0.1:70/",
        "not a url at all",
        "",
    ],
)
async def test_only_web_links_are_fetched(url: str) -> None:
    problem = await failure(AttachmentFetcher(max_bytes=1024), url)
    assert problem.problem is FetchProblem.NOT_WEB_LINK


async def test_a_redirect_into_a_private_address_is_refused(files: Server, other: Server) -> None:
    async def away(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"{other.url}/secret")

    files.route("redirect", away)
    problem = await failure(fetcher_for(files), f"{files.url}/redirect")
    assert problem.problem is FetchProblem.PRIVATE_ADDRESS
    assert other.seen == []


async def test_redirects_are_followed_a_few_times_only(files: Server) -> None:
    async def hop(request: web.Request) -> web.StreamResponse:
        left = int(request.path.rsplit("/", 1)[-1])
        if left == 0:
            return await photo(request)
        raise web.HTTPFound(f"/hop/{left - 1}")

    files.route("hop", hop)
    fetcher = fetcher_for(files)
    fetched = await fetcher.fetch(f"{files.url}/hop/3")
    assert (fetched.data, fetched.name) == (PHOTO, "3.jpg")  # the URL it was given, typed
    problem = await failure(fetcher, f"{files.url}/hop/4")
    assert (problem.problem, problem.status) == (FetchProblem.HTTP_ERROR, None)


async def test_a_declared_size_over_the_limit_stops_before_the_body(files: Server) -> None:
    problem = await failure(
        fetcher_for(files, max_bytes=1000), f"{files.url}/media/photo%20one.jpg"
    )
    assert (problem.problem, problem.size) == (FetchProblem.TOO_BIG, len(PHOTO))


async def test_a_body_without_a_length_is_read_only_to_the_limit(files: Server) -> None:
    """A server that would send a gigabyte: the download stops just past the limit."""
    chunk = b"x" * 65536
    stopped = asyncio.Event()

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            while files.streamed < 1024**3:
                await response.write(chunk)
                files.streamed += len(chunk)
        except (ConnectionError, asyncio.CancelledError):
            stopped.set()
            raise
        return response

    files.route("endless", endless)
    problem = await failure(fetcher_for(files, max_bytes=200_000), f"{files.url}/endless")
    assert (problem.problem, problem.size) == (FetchProblem.TOO_BIG, None)
    await asyncio.wait_for(stopped.wait(), 5)
    assert files.streamed < 32 * 1024 * 1024  # what socket buffers took, not the gigabyte


@pytest.mark.parametrize("status", [403, 404, 500, 503])
async def test_an_http_error_is_reported_with_its_status(files: Server, status: int) -> None:
    async def refuse(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, text="no")

    files.route("refused", refuse)
    problem = await failure(fetcher_for(files), f"{files.url}/refused")
    assert (problem.problem, problem.status) == (FetchProblem.HTTP_ERROR, status)


async def test_a_stalled_download_times_out(files: Server) -> None:
    released = asyncio.Event()

    async def stall(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "1000"})
        await response.prepare(request)
        await response.write(b"x" * 10)
        await released.wait()  # the rest never comes while the fetcher waits
        return response

    files.route("stall", stall)
    fetcher = fetcher_for(files, timeout_seconds=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        problem = await failure(fetcher, f"{files.url}/stall")
    finally:
        released.set()
    assert problem.problem is FetchProblem.TIMED_OUT
    assert loop.time() - started < 3


async def test_nobody_listening_or_no_such_host_is_unreachable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens on it once closed
    base = f"http://127.0.0.1:{port}"
    problem = await failure(fetcher_for(None, trusted_base_url=base), f"{base}/photo.jpg")
    assert problem.problem is FetchProblem.UNREACHABLE

    async def no_such_host(host: str, port: int) -> Sequence[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    fetcher = AttachmentFetcher(max_bytes=1024, resolver=no_such_host)
    problem = await failure(fetcher, "https://nowhere.example.com/photo.jpg")
    assert problem.problem is FetchProblem.UNREACHABLE


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("93.184.215.14", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),  # noqa: S104 - an address under test, not a bind
        ("224.0.0.1", False),
        ("255.255.255.255", False),
        ("::1", False),
        ("::", False),
        ("fe80::1%eth0", False),
        ("fc00::1", False),
        ("::ffff:10.0.0.1", False),
        ("2002:7f00:1::1", False),  # 6to4 around 127.0.0.1
        ("ff02::1", False),
        ("not an address", False),
    ],
)
def test_public_addresses(address: str, public: bool) -> None:
    assert is_public_address(address) is public


@pytest.mark.parametrize(
    ("url", "content_type", "name"),
    [
        ("https://x.example/a/b/photo%20one.jpg?alt=1", "", "photo one.jpg"),
        ("https://x.example/", "", "attachment"),
        ("https://x.example/media/abc123", "image/png", "abc123.png"),
        ("https://x.example/a/..%2F..%2Fetc%2Fpasswd", "", "passwd"),
        ("https://x.example/a/evil%E2%80%AEgpj.exe", "", "evilgpj.exe"),
        ("https://x.example/a/line%0Abreak.pdf", "", "linebreak.pdf"),
    ],
)
def test_attachment_names(url: str, content_type: str, name: str) -> None:
    assert attachment_name(url, content_type) == name


def test_a_long_name_is_shortened_keeping_its_extension() -> None:
    name = attachment_name("https://x.example/" + "a" * 400 + ".pdf")
    assert len(name) <= 150
    assert name.endswith("….pdf")
