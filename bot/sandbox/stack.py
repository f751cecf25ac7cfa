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


@dataclass(frozen=True)
class SlackInstallPage:
    """What a browser ends on after `/slack/install`: the bridge's redirect page, and the hops."""

    status: int
    text: str
    authorize_url: str  # where /slack/install sent the browser (Slack's authorize page)
    redirect_url: str  # where Slack sent it back (the bridge's /slack/oauth_redirect, code, state)


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

    With `slack_oauth` the bridge is also (or instead) a distributed Slack app of the Slack
    simulator (its client id and secret, SLACK_AUTHORIZE_URL the simulator's authorize page) and
    has no SLACK_BOT_TOKEN unless `keep_slack_token`: `install_slack()` installs it into a
    workspace as a person's browser would, `driver_for()` talks to it as a person of one. Both
    OAuth modes share the port, PUBLIC_URL and TOKEN_ENCRYPTION_KEY.
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
        slack_oauth: bool = False,
        keep_slack_token: bool = False,
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
        self.slack_oauth = slack_oauth
        self._keep_slack_token = keep_slack_token
        self._workspace_drivers: list[SlackDriver] = []
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
        values |= self._oauth_settings()
        self.settings = Settings(_env_file=None, **(values | self._overrides))
        self._bridge = RunningBridge(self.settings, self.slack)
        await self.start_bridge()

    @property
    def _needs_public_url(self) -> bool:
        # Both installs send a browser back to the bridge, which must know its address first.
        return self.oauth or self.slack_oauth

    def _oauth_settings(self) -> dict[str, Any]:
        """The settings of the OAuth modes (none without one): one port, PUBLIC_URL and key."""
        if not self._needs_public_url:
            return {}
        values: dict[str, Any] = _public_address() | {"token_encryption_key": generate_key()}
        if self.oauth:
            values |= {
                "ghl_client_id": self.highlevel.oauth.client_id,
                "ghl_client_secret": self.highlevel.oauth.client_secret,
                "ghl_marketplace_url": self.highlevel.base_url,
            }
            if not self._keep_pit:
                values |= {"ghl_api_token": None, "ghl_location_id": None}
        if self.slack_oauth:
            values |= {
                "slack_client_id": self.slack.client_id,
                "slack_client_secret": self.slack.client_secret,
                "slack_authorize_url": self.slack.authorize_url,
            }
            if not self._keep_slack_token:
                values["slack_bot_token"] = None
        return values

    async def start_bridge(self) -> None:
        """Start (or, after `stop_bridge`, restart) the bridge on the same database, with
        `settings` as they are now (a test may change them between a stop and a start)."""
        if self.settings is not None:
            self.bridge.settings = self.settings
        await self.bridge.start()
        if self._webhooks:
            self.highlevel.webhook_url = f"{self.bridge_url}/ghl/webhooks"
        if self.slack_oauth:
            # The app's configured Redirect URL and Request URL, as its manifest would set them:
            # authorize falls back to the one, uninstall() POSTs its events to the other.
            assert self.settings is not None  # noqa: S101 - set by start()
            public_url = self.settings.public_url or self.bridge_url
            self.slack.oauth_redirect_uri = f"{public_url}/slack/oauth_redirect"
            self.slack.events_url = f"{self.bridge_url}/slack/events"

    async def stop_bridge(self) -> None:
        await self.bridge.stop()

    async def add_bridge(self, **overrides: Any) -> RunningBridge:
        """Another instance on the same database and simulators (a shared database needs
        PostgreSQL). An OAuth one gets its own port and PUBLIC_URL; the simulator's webhooks
        keep going to the first bridge."""
        assert self.settings is not None  # noqa: S101 - set by start()
        values: dict[str, Any] = _public_address() if self._needs_public_url else {"port": 0}
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

    async def install_slack(
        self,
        team_id: str | None = None,
        *,
        user: str | None = None,
        bridge_url: str | None = None,
        enterprise: str | None = None,
    ) -> SlackInstallPage:
        """Install the app into workspace `team_id` (default the simulator's own) as `user`'s
        browser would: GET {bridge}/slack/install (not following redirects), follow its 302 to
        the simulator's authorize page (`team=`, `user=`, and `enterprise=` for an org-wide
        install), follow that 302 to the bridge's redirect URL, and return the page it ends on.

        Bolt's state cookie is `Secure`: browsers still send it to http://127.0.0.1, httpx does
        not, so it is carried to the redirect by hand."""
        base = bridge_url or self.bridge_url
        async with httpx.AsyncClient(timeout=30, follow_redirects=False) as browser:
            first = await browser.get(f"{base}/slack/install")
            if first.status_code != 302:
                raise AssertionError(f"/slack/install answered {first.status_code}: {first.text}")
            authorize = first.headers["location"]
            chosen = {"team": team_id, "user": user, "enterprise": enterprise}
            extra = {name: value for name, value in chosen.items() if value is not None}
            approved = await browser.get(with_query(authorize, extra))
            if approved.status_code != 302:
                raise AssertionError(
                    f"Slack's authorize page answered {approved.status_code}: {approved.text}"
                )
            redirect = approved.headers["location"]
            cookies = cookie_header(first.headers.get_list("set-cookie"))
            page = await browser.get(redirect, headers={"Cookie": cookies} if cookies else None)
        return SlackInstallPage(page.status_code, page.text, authorize, redirect)

    def driver_for(self, team_id: str, *, bridge: RunningBridge | None = None) -> SlackDriver:
        """A driver sending signed requests to the bridge (or `bridge`) as a person of
        workspace `team_id`; `stop()` closes it."""
        driver = (bridge or self.bridge).driver.for_workspace(team_id)
        self._workspace_drivers.append(driver)
        return driver

    async def stop(self) -> None:
        for driver in self._workspace_drivers:
            await driver.aclose()
        self._workspace_drivers.clear()
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


def _public_address() -> dict[str, Any]:
    """A port to listen on and the PUBLIC_URL that names it."""
    port = free_port()
    return {"port": port, "public_url": f"http://127.0.0.1:{port}"}


def cookie_header(set_cookies: list[str]) -> str:
    """The `Cookie` header a browser sends back for these `Set-Cookie` headers (name=value
    pairs; attributes such as `Secure` or `Path` dropped)."""
    pairs = (header.split(";", 1)[0].strip() for header in set_cookies)
    return "; ".join(pair for pair in pairs if "=" in pair)


def with_query(url: str, extra: dict[str, str]) -> str:
    """`url` with `extra` added to (or replacing in) its query."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in extra]
    return urlunsplit(parts._replace(query=urlencode([*query, *extra.items()])))
