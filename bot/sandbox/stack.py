"""Both simulators and a real bridge on loopback: what the demo, the tests and dry runs stand on."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from bot.sandbox.highlevel import HighLevelSimulator
from bot.sandbox.slack import SlackDriver, SlackSimulator
from bot.server import serve
from bot.settings import Settings
from bot.tenancy.crypto import generate_key

SANDBOX_SIGNING_SECRET = "sandbox-signing-secret"  # noqa: S105 - a fake for the sandbox
SALES_CHANNEL = "C0SALES"
INBOX_CHANNEL = "C0INBOX"
NO_BOT_CHANNEL = "C0NOBOT"
AGENT_USER = "U0AGENT"
OTHER_USER = "U0OTHER"
BRIDGE_START_SECONDS = 15.0


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now. An OAuth bridge must know its URL (PUBLIC_URL, where
    HighLevel redirects) before it listens, so it cannot take whatever port 0 gives."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class InstallPage:
    """What a browser ends on after `/ghl/install`: the bridge's callback page, and the hops."""

    status: int
    text: str
    install_redirect: str  # where /ghl/install sent the browser (the marketplace's chooser)
    callback_url: str  # where the chooser sent it back (the bridge's callback, with its code)


class RunningBridge:
    """One `ghl-bridge serve` (in this process) on `settings`; start, stop, start again."""

    def __init__(self, settings: Settings, slack: SlackSimulator) -> None:
        self.settings = settings
        self._slack = slack
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.url = ""
        self._driver: SlackDriver | None = None

    @property
    def driver(self) -> SlackDriver:
        """Sends signed requests to this bridge as Slack would."""
        if self._driver is None:
            raise RuntimeError("start() the bridge first")
        return self._driver

    async def start(self) -> str:
        self._stop = asyncio.Event()
        ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(
            serve(self.settings, stop=self._stop, on_ready=ready.set_result)
        )
        waiters: set[asyncio.Future[Any]] = {ready, self._task}
        await asyncio.wait(
            waiters, timeout=BRIDGE_START_SECONDS, return_when=asyncio.FIRST_COMPLETED
        )
        if not ready.done():
            if self._task.done():
                self._task.result()  # re-raise why it stopped
            raise TimeoutError(f"the bridge did not start within {BRIDGE_START_SECONDS:.0f} s")
        self.url = ready.result()
        if self._driver is not None:
            await self._driver.aclose()
        self._driver = SlackDriver(f"{self.url}/slack/events", SANDBOX_SIGNING_SECRET, self._slack)
        return self.url

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, 20)
            self._task = None

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self.stop()
        if self._driver is not None:
            await self._driver.aclose()
            self._driver = None


class SandboxStack:
    """HighLevel simulator + Slack simulator + `ghl-bridge serve`, wired to each other.

    The Slack workspace has #sales and #inbox (bot a member) and #no-bot (bot not added), and
    two people, U0AGENT and U0OTHER. `settings_overrides` change the bridge's settings; with
    `webhooks` the HighLevel simulator delivers its webhooks to the bridge.

    With `oauth` the bridge is a Marketplace app of the simulator (its client id and secret,
    GHL_MARKETPLACE_URL the simulator, PUBLIC_URL the bridge's own address, a fresh
    TOKEN_ENCRYPTION_KEY) and connects no sub-account by itself: `install()` connects them as a
    person's browser would. `keep_pit` keeps GHL_API_TOKEN/GHL_LOCATION_ID beside OAuth.
    """

    def __init__(
        self,
        database_path: Path,
        *,
        highlevel: HighLevelSimulator | None = None,
        slack: SlackSimulator | None = None,
        settings_overrides: dict[str, Any] | None = None,
        webhooks: bool = True,
        oauth: bool = False,
        keep_pit: bool = False,
    ) -> None:
        self.database_path = database_path
        self.highlevel = highlevel or HighLevelSimulator()
        # U0AGENT is a workspace admin (may `/highlevel link` and `inbox`); U0OTHER is not.
        self.slack = slack or SlackSimulator(
            post_rate_per_second=50.0, post_burst=50, admins=(AGENT_USER,)
        )
        self._overrides = settings_overrides or {}
        self._webhooks = webhooks
        self.oauth = oauth
        self._keep_pit = keep_pit
        self.settings: Settings | None = None
        self._bridge: RunningBridge | None = None
        self.extra_bridges: list[RunningBridge] = []

    @property
    def bridge(self) -> RunningBridge:
        if self._bridge is None:
            raise RuntimeError("start() the stack first")
        return self._bridge

    @property
    def bridge_url(self) -> str:
        return self._bridge.url if self._bridge is not None else ""

    @property
    def driver(self) -> SlackDriver:
        """Sends signed requests to the bridge as Slack would."""
        if self._bridge is None:
            raise RuntimeError("start() the stack first")
        return self._bridge.driver

    async def start(self) -> None:
        self.slack.add_channel(SALES_CHANNEL, "sales")
        self.slack.add_channel(INBOX_CHANNEL, "inbox")
        self.slack.add_channel(NO_BOT_CHANNEL, "no-bot", is_member=False)
        self.slack.add_user(AGENT_USER, "agent", "Avery Agent")
        self.slack.add_user(OTHER_USER, "other", "Olu Other")
        await self.slack.start()
        await self.highlevel.start()
        values: dict[str, Any] = {
            "slack_bot_token": self.slack.bot_token,
            "slack_signing_secret": SANDBOX_SIGNING_SECRET,
            "slack_api_url": self.slack.api_url,
            "slack_inbox_channel": INBOX_CHANNEL,
            "ghl_api_token": self.highlevel.token,
            "ghl_location_id": self.highlevel.location_id,
            "ghl_api_url": self.highlevel.base_url,
            "ghl_webhook_public_key": self.highlevel.public_key_pem,
            "database_url": f"sqlite:///{self.database_path}",
            "host": "127.0.0.1",
            "port": 0,
            "ghl_poll_seconds": 0,
        }
        if self.oauth:
            values |= self._oauth_settings()
        self.settings = Settings(_env_file=None, **(values | self._overrides))
        self._bridge = RunningBridge(self.settings, self.slack)
        await self.start_bridge()

    def _oauth_settings(self) -> dict[str, Any]:
        port = free_port()
        values: dict[str, Any] = {
            "port": port,
            "public_url": f"http://127.0.0.1:{port}",
            "ghl_client_id": self.highlevel.oauth.client_id,
            "ghl_client_secret": self.highlevel.oauth.client_secret,
            "ghl_marketplace_url": self.highlevel.base_url,
            "token_encryption_key": generate_key(),
        }
        if not self._keep_pit:
            values |= {"ghl_api_token": None, "ghl_location_id": None}
        return values

    async def start_bridge(self) -> None:
        """Start (or, after `stop_bridge`, restart) the bridge on the same database, with
        `settings` as they are now (a test may change them between a stop and a start)."""
        if self.settings is not None:
            self.bridge.settings = self.settings
        await self.bridge.start()
        if self._webhooks:
            self.highlevel.webhook_url = f"{self.bridge_url}/ghl/webhooks"

    async def stop_bridge(self) -> None:
        await self.bridge.stop()

    async def add_bridge(self, **overrides: Any) -> RunningBridge:
        """Another instance on the same database and simulators (a shared database needs
        PostgreSQL). An OAuth one gets its own port and PUBLIC_URL; the simulator's webhooks
        keep going to the first bridge."""
        assert self.settings is not None  # noqa: S101 - set by start()
        values: dict[str, Any] = {"port": 0}
        if self.oauth:
            port = free_port()
            values = {"port": port, "public_url": f"http://127.0.0.1:{port}"}
        settings = self.settings.model_copy(update=values | overrides)
        bridge = RunningBridge(settings, self.slack)
        self.extra_bridges.append(bridge)
        await bridge.start()
        return bridge

    async def install(
        self,
        *,
        location: str | None = None,
        company: bool = False,
        bridge_url: str | None = None,
    ) -> InstallPage:
        """Connect sub-accounts as a person's browser would: GET {bridge}/ghl/install (not
        following redirects), follow its 302 to the simulator's chooser (with `location=`, or
        `user_type=Company` for an agency install), follow that 302 to the bridge's callback,
        and return the page it ends on."""
        base = bridge_url or self.bridge_url
        async with httpx.AsyncClient(timeout=30, follow_redirects=False) as browser:
            first = await browser.get(f"{base}/ghl/install")
            if first.status_code != 302:
                raise AssertionError(f"/ghl/install answered {first.status_code}: {first.text}")
            chooser = first.headers["location"]
            extra = {"user_type": "Company"} if company else {}
            if location is not None:
                extra["location"] = location
            chosen = await browser.get(with_query(chooser, extra))
            if chosen.status_code != 302:
                raise AssertionError(f"chooselocation answered {chosen.status_code}: {chosen.text}")
            callback = chosen.headers["location"]
            page = await browser.get(callback)
        return InstallPage(page.status_code, page.text, chooser, callback)

    async def stop(self) -> None:
        for extra in self.extra_bridges:
            await extra.aclose()
        if self._bridge is not None:
            await self._bridge.aclose()
        await self.highlevel.stop()
        await self.slack.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def with_query(url: str, extra: dict[str, str]) -> str:
    """`url` with `extra` added to (or replacing in) its query."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in extra]
    return urlunsplit(parts._replace(query=urlencode([*query, *extra.items()])))
