"""One column's world: both simulators, seeded for the bench, and the bridge processes of the
column pointed at them, sharing one database; what the bridges stored, read through the store."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench._config import BenchConfig, Column
from bench._loadgen import LoadPlan, LoadResult, PlannedRequest
from bench._procs import (
    LoadGenerator,
    Placement,
    Profiler,
    ServerProcess,
    cpu_seconds_of,
    start_bridge,
)
from bench._report import Report
from bench._stats import load_average
from bot.sandbox.highlevel import HighLevelSimulator, SimContact
from bot.sandbox.highlevel._webhooks import WebhookDelivery, WebhookSender
from bot.sandbox.slack import SlackSimulator
from storage import InboundState, OutboxState, Store, open_store

SIGNING_SECRET = "bench-signing-secret"  # noqa: S105 - a fake shared with the load generator
AGENT_USER = "U0AGENT"
INBOX_CHANNEL = "C0INBOX"


class BridgeDatabase:
    """What the bridges stored, through the store itself (either backend): is their work done,
    and what became of each send. Opened after the bridges, which create and migrate it."""

    def __init__(self, store: Store) -> None:
        self._store = store

    @classmethod
    async def open(cls, database_url: str) -> BridgeDatabase:
        return cls(await open_store(database_url, instance_id="bench-observer"))

    async def close(self) -> None:
        await self._store.close()

    async def busy(self) -> bool:
        """An acknowledged send not yet in the outbox, an outbox entry or an inbound event not
        yet settled. A send is acked once its compose intent is saved, and queued after."""
        store = self._store
        if await store.list_open_intents(created_before=time.time() + 3600, limit=1):
            return True
        outbox = await store.count_outbox_by_state()
        if outbox[OutboxState.PENDING] or outbox[OutboxState.SENDING]:
            return True
        for state in (InboundState.PENDING, InboundState.PROCESSING):
            if await store.count_inbound(state):
                return True
        return False

    async def outbox_states(self) -> dict[str, str]:
        """message text -> outbox state, for every send the bridges queued."""
        return {text: state for text, (state, _) in (await self._outbox()).items()}

    async def queued_at(self, texts: set[str]) -> list[float]:
        """When each of these sends was written to the outbox (epoch seconds), sorted."""
        return sorted(at for text, (_, at) in (await self._outbox()).items() if text in texts)

    async def _outbox(self) -> dict[str, tuple[str, float]]:
        rows: dict[str, tuple[str, float]] = {}
        for entry in await self._store.list_outbox(limit=1 << 40):
            message = entry.payload.get("request", {}).get("message")
            if isinstance(message, str):
                rows[message] = (str(entry.state), entry.created_at)
        return rows


class SpreadWebhooks(WebhookSender):
    """HighLevel's webhook sender with a round-robin balancer in front of the bridges: each
    event goes to the next of ``targets`` (a None URL still means: deliver nowhere)."""

    def __init__(self, like: WebhookSender, rng: random.Random) -> None:
        super().__init__(
            like.signing_key,
            timeout=like.timeout,
            max_attempts=like.max_attempts,
            retry_delay=like.retry_delay,
            rng=rng,
        )
        self.targets: list[str] = []
        self._turn = 0
        self.emitted = 0  # events sent to the bridges so far

    def emit(self, payload: dict[str, Any]) -> WebhookDelivery:
        if self.url is not None:
            self.emitted += 1
        if self.url is not None and self.targets:
            self.url = self.targets[self._turn % len(self.targets)]
            self._turn += 1
        return super().emit(payload)


class Sandbox:
    """The simulators and the column's bridge processes; the load generator is the run's."""

    def __init__(
        self,
        config: BenchConfig,
        column: Column,
        database_url: str,
        workdir: Path,
        loadgen: LoadGenerator,
        *,
        profile_dir: Path | None = None,
        placement: Placement | None = None,
    ) -> None:
        self.config = config
        self.column = column
        self.database_url = database_url
        self.workdir = workdir
        self.loadgen = loadgen
        self.profile_dir = profile_dir
        self.placement = placement
        self.signing_key = Ed25519PrivateKey.generate()
        self.highlevel = HighLevelSimulator(
            rate_limit_max=config.highlevel_rate_max,
            rate_limit_interval_ms=config.highlevel_rate_interval_ms,
            signing_key=self.signing_key,
        )
        self.webhooks = SpreadWebhooks(self.highlevel.webhooks, self.highlevel.rng)
        self.highlevel.webhooks = self.webhooks
        self.slack = SlackSimulator(
            post_rate_per_second=config.slack_post_rate, post_burst=config.slack_post_burst
        )
        self.send_channels = [f"C0SEND{i:04d}" for i in range(config.send_channels)]
        self.inbound_channels = [f"C0RECV{i:04d}" for i in range(config.inbound_channels)]
        self.send_contacts: list[SimContact] = []
        self.inbound_contacts: list[SimContact] = []
        self.bridges: list[ServerProcess] = []
        self._database: BridgeDatabase | None = None
        self._serial = 0

    @property
    def database(self) -> BridgeDatabase:
        if self._database is None:
            raise RuntimeError("the bridges are not started")
        return self._database

    async def start(self) -> None:
        self.slack.add_user(AGENT_USER, "agent", "Avery Agent")
        self.slack.add_channel(INBOX_CHANNEL, "inbox")
        for channel in [*self.send_channels, *self.inbound_channels]:
            self.slack.add_channel(channel, channel.lower())
        for i in range(self.config.contacts):
            self.send_contacts.append(
                self.highlevel.add_contact(f"Send{i}", "Bench", phone=f"+1415555{2000 + i:04d}")
            )
        for i in range(self.config.inbound_channels):
            self.inbound_contacts.append(
                self.highlevel.add_contact(f"Recv{i}", "Bench", phone=f"+1415555{3000 + i:04d}")
            )
        await self.slack.start()
        await self.highlevel.start()

    def _settings(self, instance: int) -> dict[str, str]:
        return {
            "SLACK_BOT_TOKEN": self.slack.bot_token,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": self.slack.api_url,
            "SLACK_INBOX_CHANNEL": INBOX_CHANNEL,
            "GHL_API_TOKEN": self.highlevel.token,
            "GHL_LOCATION_ID": self.highlevel.location_id,
            "GHL_API_URL": self.highlevel.base_url,
            "GHL_WEBHOOK_PUBLIC_KEY": self.highlevel.public_key_pem,
            "DATABASE_URL": self.database_url,
            "INSTANCE_ID": f"bench-{self.column.key}-{instance}",
            "HOST": "127.0.0.1",
            "PORT": "0",
            "GHL_POLL_SECONDS": "0",
            "SLACK_POST_RATE": str(self.config.slack_post_rate),
            "LOG_LEVEL": "INFO",  # what `ghl-bridge serve` runs with unless told otherwise
        }

    async def start_bridges(self) -> list[ServerProcess]:
        """The column's bridge processes, started together, all healthy; HighLevel's webhooks
        go to them in turn."""
        cpus = self.placement.server if self.placement else None
        started = await asyncio.gather(
            *(
                start_bridge(
                    self._settings(instance),
                    workdir=self.workdir,
                    log_path=self.workdir / f"bridge-{instance}.log",
                    cpus=cpus,
                )
                for instance in range(1, self.column.instances + 1)
            ),
            return_exceptions=True,
        )
        # Those that did start are stopped by stop(), also when another did not.
        self.bridges = [bridge for bridge in started if isinstance(bridge, ServerProcess)]
        for outcome in started:
            if isinstance(outcome, BaseException):
                raise outcome
        self.webhooks.targets = self.urls("/ghl/webhooks")
        self.highlevel.webhook_url = self.webhooks.targets[0]
        self._database = await BridgeDatabase.open(self.database_url)
        return self.bridges

    async def stop(self) -> list[int]:
        """Stop everything; returns the bridges' exit codes."""
        try:
            if self._database is not None:
                await self._database.close()
            codes = list(await asyncio.gather(*(bridge.stop() for bridge in self.bridges)))
        finally:
            await self.highlevel.stop()
            await self.slack.stop()
        return codes

    def urls(self, path: str) -> list[str]:
        """``path`` on every bridge of the column, in turn order."""
        return [f"{bridge.url}{path}" for bridge in self.bridges]

    def bridge_cpu(self) -> float:
        """The CPU seconds all the column's bridge processes have used so far (/proc)."""
        return sum(cpu_seconds_of(bridge.pid) for bridge in self.bridges)

    async def load(self, plan: LoadPlan, name: str) -> LoadResult:
        """Run ``plan`` from the load generator process."""
        return await self.loadgen.run(plan, f"{self.column.key}-{name}")

    def slack_plan(
        self, requests: list[PlannedRequest], concurrency: int, *, warmup: int = 0
    ) -> LoadPlan:
        """Signed Slack requests, round robin over the bridges."""
        return LoadPlan(
            urls=self.urls("/slack/events"),
            concurrency=concurrency,
            requests=requests,
            warmup=warmup,
            slack_signing_secret=SIGNING_SECRET,
        )

    def slash_command(self, channel_id: str, text: str) -> PlannedRequest:
        """A `/sendsms` request body exactly as `SlackDriver.slash_command` builds it."""
        response_url = self.slack.new_response_url(channel_id=channel_id, user_id=AGENT_USER)
        fields = {
            "token": "sandbox-verification-token",
            "team_id": self.slack.team_id,
            "team_domain": self.slack.team_domain,
            "channel_id": channel_id,
            "channel_name": channel_id.lower(),
            "user_id": AGENT_USER,
            "user_name": "agent",
            "command": "/sendsms",
            "text": text,
            "api_app_id": "A0SANDBOX",
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": self.slack.issue_trigger_id(AGENT_USER),
        }
        return PlannedRequest(body=urlencode(fields))

    def quick_sends(
        self,
        count: int,
        label: str,
        *,
        channels: Sequence[str] | None = None,
        contacts: Sequence[SimContact] | None = None,
    ) -> tuple[list[PlannedRequest], list[str]]:
        """``count`` quick sends, round-robin over channels and contacts (by default the send
        channels and contacts); each text unique."""
        channels = self.send_channels if channels is None else channels
        contacts = self.send_contacts if contacts is None else contacts
        requests: list[PlannedRequest] = []
        texts: list[str] = []
        for i in range(count):
            self._serial += 1
            text = f"bench {label} #{self._serial:06d}"
            contact = contacts[i % len(contacts)]
            channel = channels[i % len(channels)]
            requests.append(self.slash_command(channel, f"{contact.phone} {text}"))
            texts.append(text)
        return requests, texts

    def sent_texts(self) -> collections.Counter[str]:
        """How many times HighLevel stored each outbound text sent through its API."""
        return collections.Counter(
            m.body for m in self.highlevel.messages.values() if m.direction == "outbound"
        )

    def send_times(self, texts: set[str]) -> list[float]:
        return sorted(
            m.date_added.timestamp()
            for m in self.highlevel.messages.values()
            if m.direction == "outbound" and m.body in texts
        )

    async def wait_idle(self, within: float) -> float:
        """Wait until HighLevel's webhooks are delivered and the bridges have nothing in flight."""
        started = time.monotonic()
        deadline = started + within
        quiet = 0
        while quiet < 3:  # idle on three looks in a row: no echo webhook still on its way
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"the bridges were still busy after {within:.0f} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.highlevel.drain_webhooks(), remaining)
            quiet = 0 if await self.database.busy() else quiet + 1
            await asyncio.sleep(0.1)
        return time.monotonic() - started


@contextlib.asynccontextmanager
async def metered(sandbox: Sandbox, report: Report, name: str) -> AsyncIterator[None]:
    """Record the phase's wall time and the CPU the bridges and this process spent in it; with a
    profile folder, py-spy samples every bridge meanwhile."""
    profilers = []
    if sandbox.profile_dir is not None:
        for index, bridge in enumerate(sandbox.bridges, start=1):
            output = sandbox.profile_dir / f"{sandbox.column.key}-{name}-{index}.txt"
            profilers.append(await Profiler.attach(bridge.pid, output))
    wall, bridge_cpu, own_cpu = time.monotonic(), sandbox.bridge_cpu(), time.process_time()
    try:
        yield
    finally:
        report.of(sandbox.column).setdefault("cpu_seconds", {})[name] = {
            "wall": time.monotonic() - wall,
            "bridges": sandbox.bridge_cpu() - bridge_cpu,
            "simulators_and_orchestrator": time.process_time() - own_cpu,
            "load_average_after": load_average(),
        }
        for profiler in profilers:
            await profiler.finish()
