"""Both simulators and a real bridge on loopback: what the demo, the tests and dry runs stand on."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from bot.sandbox.highlevel import HighLevelSimulator
from bot.sandbox.slack import SlackDriver, SlackSimulator
from bot.server import serve
from bot.settings import Settings

SANDBOX_SIGNING_SECRET = "sandbox-signing-secret"  # noqa: S105 - a fake for the sandbox
SALES_CHANNEL = "C0SALES"
INBOX_CHANNEL = "C0INBOX"
NO_BOT_CHANNEL = "C0NOBOT"
AGENT_USER = "U0AGENT"
OTHER_USER = "U0OTHER"


class SandboxStack:
    """HighLevel simulator + Slack simulator + `ghl-bridge serve`, wired to each other.

    The Slack workspace has #sales and #inbox (bot a member) and #no-bot (bot not added), and
    two people, U0AGENT and U0OTHER. `settings_overrides` change the bridge's settings; with
    `webhooks` the HighLevel simulator delivers its webhooks to the bridge.
    """

    def __init__(
        self,
        database_path: Path,
        *,
        highlevel: HighLevelSimulator | None = None,
        slack: SlackSimulator | None = None,
        settings_overrides: dict[str, Any] | None = None,
        webhooks: bool = True,
    ) -> None:
        self.database_path = database_path
        self.highlevel = highlevel or HighLevelSimulator()
        self.slack = slack or SlackSimulator(post_rate_per_second=50.0, post_burst=50)
        self._overrides = settings_overrides or {}
        self._webhooks = webhooks
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.bridge_url = ""
        self.settings: Settings | None = None
        self._driver: SlackDriver | None = None

    @property
    def driver(self) -> SlackDriver:
        """Sends signed requests to the bridge as Slack would."""
        if self._driver is None:
            raise RuntimeError("start() the stack first")
        return self._driver

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
        self.settings = Settings(_env_file=None, **(values | self._overrides))
        await self.start_bridge()

    async def start_bridge(self) -> None:
        """Start (or, after `stop_bridge`, restart) the bridge on the same database."""
        assert self.settings is not None  # noqa: S101 - set by start()
        self._stop = asyncio.Event()
        ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(
            serve(self.settings, stop=self._stop, on_ready=ready.set_result)
        )
        waiters: set[asyncio.Future[Any]] = {ready, self._task}
        await asyncio.wait(waiters, timeout=15, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            if self._task.done():
                self._task.result()  # re-raise why it stopped
            raise TimeoutError("the bridge did not start within 15 s")
        self.bridge_url = ready.result()
        if self._webhooks:
            self.highlevel.webhook_url = f"{self.bridge_url}/ghl/webhooks"
        if self._driver is not None:
            await self._driver.aclose()
        self._driver = SlackDriver(
            f"{self.bridge_url}/slack/events", SANDBOX_SIGNING_SECRET, self.slack
        )

    async def stop_bridge(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, 20)
            self._task = None

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.stop_bridge()
        if self._driver is not None:
            await self._driver.aclose()
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
