"""Several real `ghl-bridge serve` processes on one database: start, `kill -9`, restart, stop.

Each `Instance` is a name (its INSTANCE_ID) whose process may be replaced: a restart runs a
new process with the same environment, as a supervisor would after a crash. Every process
that ran under the name keeps its stderr lines, so the logs of a killed one can be read.
"""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from bot.sandbox.slack import SlackDriver, SlackSimulator
from bot.sandbox.stack import AGENT_USER, SALES_CHANNEL, SANDBOX_SIGNING_SECRET
from tests._serve_process import ServeProcess

TAKEOVER = re.compile(
    r"took over the claims of a stopped instance: (\d+) sends .*?, (\d+) inbound events"
)
HAND_OVER = re.compile(
    r"handed over (\d+) sends back to the queue .*?, (\d+) sends for another instance .*?"
    r", (\d+) inbound events back to the queue"
)


class Instance:
    """One named instance of the cluster. `url` is its last address, also while it is down
    (a request to it then fails at the socket, as one to a crashed server does)."""

    def __init__(self, name: str, env: dict[str, str], cwd: Path, exits: AsyncExitStack) -> None:
        self.name = name
        self.env = {**env, "INSTANCE_ID": name}
        self._cwd = cwd
        self._exits = exits
        self.runs: list[ServeProcess] = []
        self.url = ""
        self.alive = False

    @property
    def process(self) -> ServeProcess:
        return self.runs[-1]

    async def start(self) -> str:
        """Start a new process under this name; its URL once it serves."""
        process = await self._exits.enter_async_context(ServeProcess(self.env, self._cwd))
        self.runs.append(process)
        self.url = await process.url(within=60)
        self.alive = True
        return self.url

    @property
    def pid(self) -> int:
        assert self.process.process is not None
        return self.process.process.pid

    async def reap(self) -> int:
        """Wait for a process killed from elsewhere; its exit code."""
        self.alive = False
        return await self.process.exit_code(within=30)

    async def kill9(self) -> int:
        """SIGKILL: no cleanup, no finishing of work in flight. The exit code (-9)."""
        self.alive = False
        self.process.send_signal(signal.SIGKILL)
        return await self.process.exit_code(within=30)

    async def stop(self, *, within: float = 60) -> int:
        """SIGTERM, then its exit code once it has finished by itself."""
        self.alive = False
        self.process.send_signal(signal.SIGTERM)
        return await self.process.exit_code(within=within)

    @property
    def lines(self) -> list[str]:
        """The stderr lines of every process that ran under this name, oldest first."""
        return [line for run in self.runs for line in run.lines]


class Cluster:
    """`count` instances named `<prefix>-a`, `<prefix>-b`, … started together on `env`;
    `overrides` adds to the environment of some of them (by index)."""

    def __init__(
        self,
        env: dict[str, str],
        cwd: Path,
        *,
        count: int,
        prefix: str,
        overrides: Mapping[int, Mapping[str, str]] | None = None,
    ) -> None:
        self._exits = AsyncExitStack()
        self.logs_dir: Path | None = None
        extra = overrides or {}
        self.instances = [
            Instance(f"{prefix}-{chr(ord('a') + i)}", {**env, **extra.get(i, {})}, cwd, self._exits)
            for i in range(count)
        ]

    def __len__(self) -> int:
        return len(self.instances)

    def __getitem__(self, index: int) -> Instance:
        return self.instances[index]

    async def __aenter__(self) -> Self:
        await self._exits.__aenter__()
        try:
            # All at once, as a deployment starts them: the migrations queue on their lock.
            await asyncio.gather(*(instance.start() for instance in self.instances))
        except BaseException:
            await self._exits.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Any process still running is killed and reaped (ServeProcess.__aexit__).
        await self._exits.__aexit__(exc_type, exc, tb)

    def live_urls(self) -> list[str]:
        return [instance.url for instance in self.instances if instance.alive]

    def takeovers(self) -> tuple[int, int]:
        """(sends, inbound events) taken over from dead instances, as the logs say."""
        sends = events = 0
        for instance in self.instances:
            for line in instance.lines:
                match = TAKEOVER.search(line)
                if match:
                    sends += int(match.group(1))
                    events += int(match.group(2))
        return sends, events

    def hand_overs(self) -> tuple[int, int, int]:
        """(sends put back in the queue, sends left to take over, inbound events put back in
        the queue) by instances stopping, as the logs say."""
        requeued = expired = events = 0
        for instance in self.instances:
            for line in instance.lines:
                match = HAND_OVER.search(line)
                if match:
                    requeued += int(match.group(1))
                    expired += int(match.group(2))
                    events += int(match.group(3))
        return requeued, expired, events

    def log_lines(self, pattern: re.Pattern[str]) -> list[str]:
        """Every stderr line matching `pattern`, prefixed with its instance's name."""
        return [
            f"{instance.name}: {line}"
            for instance in self.instances
            for line in instance.lines
            if pattern.search(line)
        ]

    def save_logs(self, directory: Path) -> Path:
        """Write each process's stderr to `directory`/<name>.<n>.log; the directory."""
        directory.mkdir(parents=True, exist_ok=True)
        for instance in self.instances:
            for number, run in enumerate(instance.runs, start=1):
                (directory / f"{instance.name}.{number}.log").write_text(run.output + "\n")
        self.logs_dir = directory
        return directory


class Drivers:
    """One signed-request driver per instance address (a restart brings a new address)."""

    def __init__(self, slack: SlackSimulator) -> None:
        self._slack = slack
        self._drivers: dict[str, SlackDriver] = {}

    def __call__(self, url: str) -> SlackDriver:
        if url not in self._drivers:
            self._drivers[url] = SlackDriver(
                f"{url}/slack/events", SANDBOX_SIGNING_SECRET, self._slack, timeout_seconds=30
            )
        return self._drivers[url]

    async def aclose(self) -> None:
        for driver in self._drivers.values():
            await driver.aclose()


@dataclass
class CommandTally:
    """What happened to the /sendsms commands, by text."""

    acked: list[str] = field(default_factory=list)  # 200 with an empty body: taken
    refused: list[tuple[str, str]] = field(default_factory=list)  # 200 saying why not
    cut: list[str] = field(default_factory=list)  # the connection broke after it was sent
    other: list[tuple[str, int]] = field(default_factory=list)  # any other answer
    passed_on: int = 0  # a dead or stopped instance's closed port: sent to the next instance


async def send_command(
    cluster: Cluster,
    drivers: Drivers,
    first: int,
    phone: str,
    text: str,
    tally: CommandTally,
    *,
    channel: str = SALES_CHANNEL,
) -> None:
    """`/sendsms phone text` to instance `first`, or the next one whose port is open, as a load
    balancer does with a refused connect; what came of it goes into `tally`."""
    for step in range(len(cluster)):
        instance = cluster[(first + step) % len(cluster)]
        try:
            result = await drivers(instance.url).slash_command(
                "/sendsms", f"{phone} {text}", user_id=AGENT_USER, channel_id=channel
            )
        except httpx.ConnectError:
            tally.passed_on += 1
            continue
        except httpx.TransportError:
            # Killed while answering: Slack shows the person an error and does not retry.
            tally.cut.append(text)
            return
        if result.status == 200 and not result.text:
            tally.acked.append(text)
        elif result.status == 200:
            tally.refused.append((text, result.text))
        else:
            tally.other.append((text, result.status))
        return
    tally.cut.append(text)  # every instance refused the connection
