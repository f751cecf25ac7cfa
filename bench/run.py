"""`python -m bench.run [--quick]`: the bridge measured against its real limits, in one run.

The bridge runs as its own process (`python -m bot serve`), so its CPU and memory are its own;
the HighLevel and Slack simulators run here, in the orchestrator; the load comes from a third
process (`bench._loadgen`). Phases, in order:

1. ack latency of signed `/sendsms` quick sends at each concurrency, next to a bare Bolt app
   (`bench.baseline`) served the same way, in alternating rounds, each round on connections
   warmed first, with the spread over rounds;
2. outbound: N quick sends through the outbox into a HighLevel whose limit has HighLevel's
   shape scaled in time (100 per 1 s): the send rate from the first send against that
   ceiling, 429s, lost, doubled, and the bridge's CPU per send;
3. inbound: signed webhooks, first closed loop at a fixed concurrency into the floor server
   (`bench.floor`: Ed25519 check, one INSERT and COMMIT) and then into the bridge (ingest as a
   ratio to the floor), then open loop at half the bridge's measured rate into both (accept
   latency below capacity; the run fails if the load generator falls behind its schedule),
   how fast they reach their Slack threads, and the bridge's CPU per inbound message;
4. storage: thread look-ups with many mapped threads (`bench._storage`);
5. the bridge's resident memory, idle, after the load and at peak (/proc/<pid>/status).

CPU is the bridge process's own (utime + stime in /proc/<pid>/stat): the simulators, the load
generator and the floor server run in other processes. It prints a table (pass / MISS against
the targets) and writes `bench/results.json`; it exits 1 on a MISS and 2 when the run is not
valid (the load generator lagged). With `--pin` the servers get one CPU to themselves and
everything else the others; `--profile DIR` samples the bridge with py-spy during each phase.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import collections
import contextlib
import itertools
import json
import math
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench._loadgen import LoadPlan, LoadResult, PlannedRequest
from bench._procs import (
    REPO_ROOT,
    Placement,
    Profiler,
    ServerProcess,
    cpu_seconds_of,
    pin,
    run_load,
    start_baseline,
    start_bridge,
    start_floor,
)
from bench._stats import Row, load_average, machine, ms, percentile, render_table
from bench._storage import StorageResult, run_storage_bench
from bot.sandbox.highlevel import HighLevelSimulator, SimContact
from bot.sandbox.slack import SlackSimulator

SIGNING_SECRET = "bench-signing-secret"  # noqa: S105 - a fake shared with the load generator
AGENT_USER = "U0AGENT"
INBOX_CHANNEL = "C0INBOX"
SEND_PATH = ("POST", "/conversations/messages")
RESULTS_PATH = REPO_ROOT / "bench" / "results.json"

# The targets the table judges against.
ACK_P99_RATIO_MAX = 1.2
OUTBOUND_MIN_FRACTION = 0.95
CPU_PER_SEND_MAX_MS = 3.0
CPU_PER_INBOUND_MAX_MS = 1.5
INGEST_MIN_FLOOR_RATIO = 0.8
LOOKUP_P99_MAX_SECONDS = 0.001
RSS_MAX_MB = 100.0  # idle and after the load
OPEN_LOOP_CONNECTIONS = 256  # at most this many webhooks in flight in the open loop
# Open loop runs at this fraction of the bridge's closed-loop rate: latency below capacity.
OPEN_LOOP_LOAD = 0.5
# The load generator must start open-loop requests on time (p99 of how late each started);
# beyond this the latencies are its own and the run is not valid.
GENERATOR_LAG_P99_MAX_SECONDS = 0.005


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """The sizes of one run; `FULL` and `QUICK` are the two the command offers."""

    name: str
    ack_concurrency: tuple[int, ...] = (1, 10, 50)
    # Timed, per level and per server: with 2,000, p99 is the 20th-worst request.
    ack_requests: int = 2000
    ack_rounds: int = 10  # the requests of a level go in this many rounds, alternating servers
    # Sent first in every round, not timed (at least twice the concurrency, so every
    # connection of the round is open and used before the clock starts).
    ack_warmup: int = 20
    outbound_sends: int = 1000
    outbound_concurrency: int = 20
    inbound_webhooks: int = 2500  # closed loop, into the floor and then into the bridge
    inbound_concurrency: int = 20
    inbound_rate: float = 1000.0  # open loop: at most this many per second
    open_loop_seconds: float = 10.0  # open loop: about this long
    inbound_channels: int = 10
    send_channels: int = 20  # outbound sends spread over these, so Slack pacing is not the limit
    contacts: int = 10  # few, so contact look-ups are cached and nearly every request is a send
    storage_threads: int = 1_000_000
    storage_samples: int = 5000
    slack_post_rate: float = 20.0  # bridge SLACK_POST_RATE and the Slack simulator's, per channel
    slack_post_burst: int = 8  # the simulator's; the bridge's pacer bursts 4
    highlevel_rate_max: int = 100
    highlevel_rate_interval_ms: int = 1000  # HighLevel's 100 per 10 s, ten times faster
    settle_seconds: float = 2.0  # after start-up, before "idle" memory is read
    drain_timeout: float = 180.0


FULL = BenchConfig(name="full")
QUICK = BenchConfig(
    name="quick",
    ack_requests=160,
    ack_rounds=2,
    ack_warmup=20,
    outbound_sends=200,
    inbound_webhooks=500,
    open_loop_seconds=2.0,
    storage_threads=100_000,
    storage_samples=2000,
    settle_seconds=1.0,
    drain_timeout=60.0,
)


@dataclass
class Report:
    """What a run measured: the table's rows and everything behind them (results.json)."""

    config: BenchConfig
    rows: list[Row] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    # Why the run's figures are not valid (the load generator fell behind): exit 2, not judged.
    invalid: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(
            {
                "config": asdict(self.config),
                "table": [{**asdict(row), "verdict": row.verdict} for row in self.rows],
                "invalid": self.invalid,
                **self.data,
            },
            indent=2,
        )


# ------------------------------------------------------------------ the bridge's database


class BridgeDatabase:
    """Read-only look at the bridge's SQLite file: is its work done, and what became of sends."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)

    def close(self) -> None:
        self._db.close()

    def busy(self) -> int:
        """Acknowledged sends not yet in the outbox, outbox entries and inbound events not
        yet settled. A send is acked once its compose intent is saved, and queued after."""
        intents = self._db.execute(
            "SELECT COUNT(*) FROM compose_intents WHERE state = 'open'"
        ).fetchone()[0]
        outbox = self._db.execute(
            "SELECT COUNT(*) FROM outbox WHERE state IN ('pending', 'sending')"
        ).fetchone()[0]
        inbound = self._db.execute(
            "SELECT COUNT(*) FROM inbound_events WHERE state IN ('pending', 'processing')"
        ).fetchone()[0]
        return int(intents) + int(outbox) + int(inbound)

    def outbox_states(self) -> dict[str, str]:
        """message text -> outbox state, for every send the bridge queued."""
        return {text: state for text, (state, _) in self._outbox().items()}

    def queued_at(self, texts: set[str]) -> list[float]:
        """When each of these sends was written to the outbox (epoch seconds), sorted."""
        return sorted(at for text, (_, at) in self._outbox().items() if text in texts)

    def _outbox(self) -> dict[str, tuple[str, float]]:
        rows: dict[str, tuple[str, float]] = {}
        for state, created_at, payload in self._db.execute(
            "SELECT state, created_at, payload FROM outbox"
        ):
            message = json.loads(payload).get("request", {}).get("message")
            if isinstance(message, str):
                rows[message] = (str(state), float(created_at))
        return rows


# ------------------------------------------------------------------ the sandbox


class Sandbox:
    """The two simulators, seeded for the bench, and the bridge process pointed at them."""

    def __init__(
        self,
        config: BenchConfig,
        workdir: Path,
        *,
        profile_dir: Path | None = None,
        placement: Placement | None = None,
    ) -> None:
        self.config = config
        self.workdir = workdir
        self.profile_dir = profile_dir
        self.placement = placement
        self.signing_key = Ed25519PrivateKey.generate()
        self.highlevel = HighLevelSimulator(
            rate_limit_max=config.highlevel_rate_max,
            rate_limit_interval_ms=config.highlevel_rate_interval_ms,
            signing_key=self.signing_key,
        )
        self.slack = SlackSimulator(
            post_rate_per_second=config.slack_post_rate, post_burst=config.slack_post_burst
        )
        self.send_channels = [f"C0SEND{i:04d}" for i in range(config.send_channels)]
        self.inbound_channels = [f"C0RECV{i:04d}" for i in range(config.inbound_channels)]
        self.send_contacts: list[SimContact] = []
        self.inbound_contacts: list[SimContact] = []
        self.bridge: ServerProcess | None = None
        self.database: BridgeDatabase | None = None
        self.database_path = workdir / "bridge.sqlite3"
        self._serial = 0

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

    async def start_bridge(self) -> ServerProcess:
        settings = {
            "SLACK_BOT_TOKEN": self.slack.bot_token,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": self.slack.api_url,
            "SLACK_INBOX_CHANNEL": INBOX_CHANNEL,
            "GHL_API_TOKEN": self.highlevel.token,
            "GHL_LOCATION_ID": self.highlevel.location_id,
            "GHL_API_URL": self.highlevel.base_url,
            "GHL_WEBHOOK_PUBLIC_KEY": self.highlevel.public_key_pem,
            "DATABASE_URL": f"sqlite:///{self.database_path}",
            "HOST": "127.0.0.1",
            "PORT": "0",
            "GHL_POLL_SECONDS": "0",
            "SLACK_POST_RATE": str(self.config.slack_post_rate),
            "LOG_LEVEL": "INFO",  # what `ghl-bridge serve` runs with unless told otherwise
        }
        self.bridge = await start_bridge(
            settings,
            workdir=self.workdir,
            log_path=self.workdir / "bridge.log",
            cpus=self.placement.server if self.placement else None,
        )
        self.highlevel.webhook_url = f"{self.bridge.url}/ghl/webhooks"
        self.database = BridgeDatabase(self.database_path)
        return self.bridge

    async def stop(self) -> int | None:
        code = None
        if self.database is not None:
            self.database.close()
        if self.bridge is not None:
            code = await self.bridge.stop()
        await self.highlevel.stop()
        await self.slack.stop()
        return code

    async def load(self, plan: LoadPlan, name: str) -> LoadResult:
        """Run ``plan`` from the load generator process."""
        cpus = self.placement.others if self.placement else None
        return await run_load(plan, workdir=self.workdir, name=name, cpus=cpus)

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
        self, count: int, label: str, *, channels: Sequence[str], contacts: Sequence[SimContact]
    ) -> tuple[list[PlannedRequest], list[str]]:
        """``count`` quick sends, round-robin over channels and contacts; each text unique."""
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
        """Wait until HighLevel's webhooks are delivered and the bridge has nothing in flight."""
        assert self.database is not None  # noqa: S101 - set by start_bridge
        started = time.monotonic()
        deadline = started + within
        quiet = 0
        while quiet < 3:  # idle on three looks in a row: no echo webhook still on its way
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"the bridge was still busy after {within:.0f} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.highlevel.drain_webhooks(), remaining)
            busy = await asyncio.to_thread(self.database.busy)
            quiet = quiet + 1 if busy == 0 else 0
            await asyncio.sleep(0.1)
        return time.monotonic() - started


def _accounting(
    texts: Sequence[str], sent: collections.Counter[str], states: dict[str, str]
) -> dict[str, int]:
    """Lost: composed, never sent, not shown failed. Doubled: HighLevel stored it twice."""
    shown_failed = sum(1 for t in texts if not sent[t] and states.get(t) in ("failed", "unknown"))
    lost = sum(1 for t in texts if not sent[t] and states.get(t) not in ("failed", "unknown"))
    doubled = sum(1 for t in texts if sent[t] > 1)
    return {
        "composed": len(texts),
        "sent": sum(1 for t in texts if sent[t] >= 1),
        "shown_failed": shown_failed,
        "lost": lost,
        "doubled": doubled,
    }


def _latency_summary(*results: LoadResult) -> dict[str, Any]:
    """Latency percentiles over all timed requests of ``results`` (rounds of one measurement)."""
    latencies = [latency for result in results for latency in result.latencies]
    ok = sum(result.ok for result in results)
    return {
        "requests": len(latencies),
        "ok": ok,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies, default=0.0) * 1000,
        "per_second": len(latencies) / sum(result.wall_seconds for result in results),
        "non_2xx": len(latencies) - ok,
        "warmup_non_2xx": sum(
            1 for result in results for s in result.warmup_statuses if not 200 <= s < 300
        ),
        "load_generator_cpu_seconds": sum(result.cpu_seconds for result in results),
    }


@contextlib.asynccontextmanager
async def metered(sandbox: Sandbox, report: Report, name: str) -> AsyncIterator[None]:
    """Record the phase's wall time and the CPU the bridge and this process spent in it;
    with a profile folder, py-spy samples the bridge meanwhile."""
    assert sandbox.bridge is not None  # noqa: S101 - started by the caller
    pid = sandbox.bridge.pid
    profiler = None
    if sandbox.profile_dir is not None:
        profiler = await Profiler.attach(pid, sandbox.profile_dir / f"{name}.txt")
    wall, bridge_cpu, own_cpu = time.monotonic(), cpu_seconds_of(pid), time.process_time()
    try:
        yield
    finally:
        report.data.setdefault("cpu_seconds", {})[name] = {
            "wall": time.monotonic() - wall,
            "bridge": cpu_seconds_of(pid) - bridge_cpu,
            "simulators_and_orchestrator": time.process_time() - own_cpu,
            "load_average_after": load_average(),
        }
        if profiler is not None:
            await profiler.finish()


# ------------------------------------------------------------------ phases


async def ack_phase(sandbox: Sandbox, report: Report, say: Callable[[str], None]) -> None:
    """Ack latency per concurrency level, the bare Bolt app and the bridge taking turns."""
    config = sandbox.config
    assert sandbox.bridge is not None  # noqa: S101 - started by the caller
    baseline = await start_baseline(
        signing_secret=SIGNING_SECRET,
        bot_token=sandbox.slack.bot_token,
        slack_api_url=sandbox.slack.api_url,
        workdir=sandbox.workdir,
        log_path=sandbox.workdir / "baseline.log",
        cpus=sandbox.placement.server if sandbox.placement else None,
    )
    levels: dict[str, Any] = {}
    all_texts: list[str] = []
    rounds = max(1, config.ack_rounds)
    per_round, extra = divmod(config.ack_requests, rounds)
    sizes = [per_round + (i < extra) for i in range(rounds)]
    try:
        for concurrency in config.ack_concurrency:
            results: dict[str, list[LoadResult]] = {"bolt": [], "bridge": []}
            # Every round is a new load generator process with new connections: it warms
            # them all (twice the concurrency, so every worker has opened one and used it)
            # before its clock starts.
            warmup = max(config.ack_warmup, 2 * concurrency)
            # Short alternating rounds, so whatever else the machine does meanwhile falls on
            # both servers alike rather than on whichever happened to be measured then.
            for round_index, size in enumerate(sizes):
                for target, server in (("bolt", baseline), ("bridge", sandbox.bridge)):
                    requests, texts = sandbox.quick_sends(
                        warmup + size,
                        f"ack c{concurrency} {target}",
                        channels=sandbox.send_channels,
                        contacts=sandbox.send_contacts,
                    )
                    plan = LoadPlan(
                        url=f"{server.url}/slack/events",
                        concurrency=concurrency,
                        requests=requests,
                        warmup=warmup,
                        slack_signing_secret=SIGNING_SECRET,
                    )
                    name = f"ack-c{concurrency}-{target}-{round_index}"
                    results[target].append(await sandbox.load(plan, name))
                    if target == "bridge":
                        all_texts.extend(texts)
                        # The sends behind these acks finish before anything else is timed.
                        await sandbox.wait_idle(config.drain_timeout)
            measured = {target: _latency_summary(*runs) for target, runs in results.items()}
            ratio = measured["bridge"]["p99_ms"] / measured["bolt"]["p99_ms"]
            round_figures = [
                {
                    "bridge_p50_ms": percentile(ours.latencies, 0.5) * 1000,
                    "bridge_p99_ms": percentile(ours.latencies, 0.99) * 1000,
                    "bolt_p50_ms": percentile(theirs.latencies, 0.5) * 1000,
                    "bolt_p99_ms": percentile(theirs.latencies, 0.99) * 1000,
                }
                for ours, theirs in zip(results["bridge"], results["bolt"], strict=True)
            ]
            round_ratios = [r["bridge_p99_ms"] / r["bolt_p99_ms"] for r in round_figures]
            levels[str(concurrency)] = {
                **measured,
                "p99_ratio": ratio,
                "rounds": rounds,
                "warmup_per_round": warmup,
                "per_round": round_figures,
                "p99_ratio_over_rounds": [min(round_ratios), max(round_ratios)],
            }
            say(
                f"ack c={concurrency}: bridge p99 {measured['bridge']['p99_ms']:.2f} ms, "
                f"bolt p99 {measured['bolt']['p99_ms']:.2f} ms"
            )
    finally:
        await baseline.stop()
    assert sandbox.database is not None  # noqa: S101
    sends = _accounting(all_texts, sandbox.sent_texts(), sandbox.database.outbox_states())
    report.data["ack"] = {"levels": levels, "sends_behind_the_acks": sends}
    for concurrency in config.ack_concurrency:
        level = levels[str(concurrency)]
        bridge, bolt = level["bridge"], level["bolt"]
        low, high = level["p99_ratio_over_rounds"]
        report.rows.append(
            Row(
                f"ack c={concurrency} p50 / p99 (bridge | bare Bolt), {bridge['requests']} each",
                f"{bridge['p50_ms']:.2f} / {bridge['p99_ms']:.2f} ms | "
                f"{bolt['p50_ms']:.2f} / {bolt['p99_ms']:.2f} ms  (x{level['p99_ratio']:.2f}; "
                f"x{low:.2f}-{high:.2f} over {rounds} rounds)",
                f"p99 <= {ACK_P99_RATIO_MAX}x Bolt, all 2xx",
                level["p99_ratio"] <= ACK_P99_RATIO_MAX
                and bridge["non_2xx"] == 0
                and bolt["non_2xx"] == 0,
            )
        )
    report.rows.append(
        Row(
            "ack: what the figures above are made of",
            "mostly Bolt's 10 ms ack poll, in both servers; the bridge adds one INSERT",
            "(note)",
        )
    )


def _rate_from_first(times: Sequence[float], *, interval: float) -> float:
    """Sends per second from the first send: those within the whole intervals that follow it.

    A sliding-window limit lets `max` through in any `interval`, so no run of whole intervals
    can hold more than the ceiling allows: a client that keeps the limit busy from its first
    send reaches exactly the ceiling, and a slow start (the bridge still taking a burst of
    commands in) counts against it.
    """
    if not times:
        return 0.0
    span = times[-1] - times[0]
    whole = max(1, math.floor(span / interval)) * interval
    return bisect.bisect_left(times, times[0] + whole) / whole


def _cpu_ms_per(cpu_seconds: float, count: int) -> float:
    return cpu_seconds * 1000 / count if count else math.nan


async def outbound_phase(sandbox: Sandbox, report: Report, say: Callable[[str], None]) -> None:
    """N sends through the outbox into a HighLevel limited to 100 requests per second."""
    config = sandbox.config
    assert sandbox.bridge is not None and sandbox.database is not None  # noqa: S101
    interval = config.highlevel_rate_interval_ms / 1000
    # Start with HighLevel's window empty, as after any quiet spell: the sends of the previous
    # phase would otherwise still count against the first second of this one.
    await asyncio.sleep(interval + 0.5)
    first_request = len(sandbox.highlevel.requests)
    requests, texts = sandbox.quick_sends(
        config.outbound_sends,
        "out",
        channels=sandbox.send_channels,
        contacts=sandbox.send_contacts,
    )
    plan = LoadPlan(
        url=f"{sandbox.bridge.url}/slack/events",
        concurrency=config.outbound_concurrency,
        requests=requests,
        slack_signing_secret=SIGNING_SECRET,
    )
    # The bridge's CPU from the first command to the last echo webhook handled: the ack, the
    # intent, the outbox, the send and its echo, per send.
    cpu_before = cpu_seconds_of(sandbox.bridge.pid)
    result = await sandbox.load(plan, "outbound")
    await sandbox.wait_idle(config.drain_timeout)
    cpu = cpu_seconds_of(sandbox.bridge.pid) - cpu_before
    times = sandbox.send_times(set(texts))
    ceiling = config.highlevel_rate_max / interval
    span = (times[-1] - times[0]) if len(times) > 1 else 0.0
    achieved = _rate_from_first(times, interval=interval)
    queued = sandbox.database.queued_at(set(texts))
    all_queued = queued[-1] if queued else 0.0
    phase_requests = sandbox.highlevel.requests[first_request:]
    by_kind = collections.Counter(
        "send" if (r.method, r.path) == SEND_PATH else "other" for r in phase_requests
    )
    rate_limited = sum(1 for r in phase_requests if r.status == 429)
    sends = _accounting(texts, sandbox.sent_texts(), sandbox.database.outbox_states())
    fraction = achieved / ceiling
    per_send = _cpu_ms_per(cpu, len(texts))
    report.data["outbound"] = {
        **sends,
        "acks": _latency_summary(result),
        "send_span_seconds": span,
        "sends_per_second_from_first_send": achieved,
        "longest_pause_between_sends_seconds": max(
            (later - earlier for earlier, later in itertools.pairwise(times)),
            default=0.0,
        ),
        "all_queued_seconds_after_first_command": all_queued - result.started,
        "first_send_seconds_after_first_command": (times[0] - result.started) if times else None,
        "ceiling_per_second": ceiling,
        "fraction_of_ceiling": fraction,
        "highlevel_requests": dict(by_kind),
        "highlevel_429s": rate_limited,
        "bridge_cpu_seconds": cpu,
        "bridge_cpu_ms_per_send": per_send,
    }
    say(
        f"outbound: {achieved:.1f}/s of {ceiling:.0f}/s from the first send, "
        f"{rate_limited} x 429, bridge CPU {per_send:.2f} ms per send"
    )
    report.rows += [
        Row(
            f"outbound {len(texts)} sends: rate from the first send / ceiling",
            f"{achieved:.1f}/s of {ceiling:.0f}/s ({fraction:.2f}); {by_kind['other']} other "
            "requests",
            f">= {OUTBOUND_MIN_FRACTION}",
            fraction >= OUTBOUND_MIN_FRACTION,
        ),
        Row("outbound 429s received", str(rate_limited), "(reported)"),
        Row(
            "outbound lost / doubled",
            f"{sends['lost']} / {sends['doubled']}  ({sends['shown_failed']} shown failed)",
            "0 / 0",
            sends["lost"] == 0 and sends["doubled"] == 0,
        ),
        Row(
            "bridge CPU per send (command to echo webhook)",
            f"{per_send:.2f} ms ({cpu:.2f} s for {len(texts)})",
            f"<= {CPU_PER_SEND_MAX_MS:.1f} ms",
            per_send <= CPU_PER_SEND_MAX_MS,
        ),
    ]


async def _signed_webhooks(
    sandbox: Sandbox, markers: Sequence[str], *, first_index: int
) -> list[PlannedRequest]:
    """The customers write; HighLevel builds and signs each webhook, and we keep them to send."""
    highlevel = sandbox.highlevel
    webhook_url, highlevel.webhook_url = highlevel.webhook_url, None
    first = len(highlevel.webhook_deliveries)
    try:
        for i, marker in enumerate(markers, start=first_index):
            contact = sandbox.inbound_contacts[i % len(sandbox.inbound_contacts)]
            await highlevel.customer_reply(contact.id, "SMS", f"{marker} is my reply")
    finally:
        highlevel.webhook_url = webhook_url
    return [
        PlannedRequest(body=d.body.decode("utf-8"), headers={"x-ghl-signature": d.signature})
        for d in highlevel.webhook_deliveries[first:]
    ]


def _check_schedule(report: Report, result: LoadResult, into: str, rate: float) -> None:
    """An open loop whose generator started requests late measured the generator: say so."""
    lag = result.start_lag_p99
    if lag > GENERATOR_LAG_P99_MAX_SECONDS:
        report.invalid.append(
            f"the load generator fell behind its schedule of {rate:.0f}/s into {into}: p99 "
            f"start lag {lag * 1000:.1f} ms > {GENERATOR_LAG_P99_MAX_SECONDS * 1000:.0f} ms"
        )


async def inbound_phase(sandbox: Sandbox, report: Report, say: Callable[[str], None]) -> None:
    """Signed webhooks into threads in `inbound_channels` channels, then on to Slack.

    Closed loop at `inbound_concurrency`, the same webhooks into the floor server and then into
    the bridge: how many each accepts per second when pushed. Then open loop at OPEN_LOOP_LOAD
    of the bridge's rate, into both: accept latency below capacity. Every webhook the bridge
    accepted must be posted to its Slack thread exactly once.
    """
    config = sandbox.config
    assert sandbox.bridge is not None and sandbox.database is not None  # noqa: S101
    bridge_pid = sandbox.bridge.pid
    # One existing thread per channel: a first send from each channel to its own contact.
    setup, _ = sandbox.quick_sends(
        len(sandbox.inbound_channels),
        "thread",
        channels=sandbox.inbound_channels,
        contacts=sandbox.inbound_contacts,
    )
    plan = LoadPlan(
        url=f"{sandbox.bridge.url}/slack/events",
        concurrency=len(setup),
        requests=setup,
        slack_signing_secret=SIGNING_SECRET,
    )
    await sandbox.load(plan, "inbound-threads")
    await sandbox.wait_idle(config.drain_timeout)
    roots = {c: len(sandbox.slack.channel_messages(c)) for c in sandbox.inbound_channels}
    if set(roots.values()) != {1}:
        raise RuntimeError(f"expected one thread per inbound channel, found {roots}")

    floor = await start_floor(
        public_key_pem=sandbox.highlevel.public_key_pem,
        database=sandbox.workdir / "floor.sqlite3",
        workdir=sandbox.workdir,
        log_path=sandbox.workdir / "floor.log",
        cpus=sandbox.placement.server if sandbox.placement else None,
    )
    bridge_url = f"{sandbox.bridge.url}/ghl/webhooks"
    floor_url = f"{floor.url}/ghl/webhooks"
    try:
        closed_markers = [f"bench-in-{i:06d}" for i in range(config.inbound_webhooks)]
        closed_requests = await _signed_webhooks(sandbox, closed_markers, first_index=0)

        def closed_plan(url: str) -> LoadPlan:
            return LoadPlan(
                url=url,
                concurrency=config.inbound_concurrency,
                requests=closed_requests,
                content_type="application/json",
            )

        # The floor first, while the bridge is idle: the bridge's Slack posts after its own
        # closed loop would otherwise run beside the floor's.
        floor_pushed = await sandbox.load(closed_plan(floor_url), "inbound-floor-closed")
        cpu_before = cpu_seconds_of(bridge_pid)
        pushed = await sandbox.load(closed_plan(bridge_url), "inbound-closed")
        await sandbox.wait_idle(config.drain_timeout)
        bridge_cpu = cpu_seconds_of(bridge_pid) - cpu_before

        closed, floor_closed = _latency_summary(pushed), _latency_summary(floor_pushed)
        rate = min(config.inbound_rate, OPEN_LOOP_LOAD * closed["per_second"])
        rate = max(rate, 1.0)
        count = max(1, round(rate * config.open_loop_seconds))
        open_markers = [
            f"bench-in-{i:06d}" for i in range(len(closed_markers), len(closed_markers) + count)
        ]
        open_requests = await _signed_webhooks(
            sandbox, open_markers, first_index=len(closed_markers)
        )

        def open_plan(url: str) -> LoadPlan:
            return LoadPlan(
                url=url,
                concurrency=OPEN_LOOP_CONNECTIONS,
                requests=open_requests,
                content_type="application/json",
                rate_per_second=rate,
            )

        floor_paced = await sandbox.load(open_plan(floor_url), "inbound-floor-open")
        cpu_before = cpu_seconds_of(bridge_pid)
        paced = await sandbox.load(open_plan(bridge_url), "inbound-open")
        await sandbox.wait_idle(config.drain_timeout)
        bridge_cpu += cpu_seconds_of(bridge_pid) - cpu_before
    finally:
        await floor.stop()
    _check_schedule(report, floor_paced, "the floor server", rate)
    _check_schedule(report, paced, "the bridge", rate)

    markers = [*closed_markers, *open_markers]
    posted: collections.Counter[str] = collections.Counter()
    post_times: dict[str, float] = {}
    for channel in sandbox.inbound_channels:
        for root in sandbox.slack.channel_messages(channel):
            for message in sandbox.slack.thread(channel, root.ts)[1:]:
                marker = message.text.split(" is my reply", 1)[0].rsplit(" ", 1)[-1]
                if marker.startswith("bench-in-"):
                    posted[marker] += 1
                    post_times[marker] = float(message.ts)
    accepted = pushed.ok + paced.ok
    lost = sum(1 for m in markers if not posted[m])
    doubled = sum(1 for m in markers if posted[m] > 1)
    opened, floor_opened = _latency_summary(paced), _latency_summary(floor_paced)
    for summary, result in ((opened, paced), (floor_opened, floor_paced)):
        summary["generator_start_lag_p99_ms"] = result.start_lag_p99 * 1000
    ratio = closed["per_second"] / floor_closed["per_second"]
    # Posting pace: the closed-loop webhooks, a backlog the per-channel pacer works through.
    backlog_posts = sorted(post_times[m] for m in closed_markers if m in post_times)
    ceiling = config.slack_post_rate * len(sandbox.inbound_channels)
    all_posted_after = (backlog_posts[-1] - pushed.started) if backlog_posts else math.nan
    post_span = (backlog_posts[-1] - backlog_posts[0]) if len(backlog_posts) > 1 else math.nan
    post_rate = len(backlog_posts) / post_span if post_span > 0 else 0.0
    slack_429s = sum(1 for call in sandbox.slack.calls if call.http_status == 429)
    per_message = _cpu_ms_per(bridge_cpu, len(markers))
    report.data["inbound"] = {
        "webhooks": len(markers),
        "accepted": accepted,
        "closed_loop": {"concurrency": config.inbound_concurrency, **closed},
        "floor_closed_loop": {"concurrency": config.inbound_concurrency, **floor_closed},
        "ingest_ratio_to_floor": ratio,
        "open_loop": {"offered_per_second": rate, **opened},
        "floor_open_loop": {"offered_per_second": rate, **floor_opened},
        "closed_loop_all_posted_seconds_after_first_webhook": all_posted_after,
        "posts": sum(posted.values()),
        "closed_loop_post_span_seconds": post_span,
        "closed_loop_posts_per_second": post_rate,
        "ceiling_per_second": ceiling,
        "fraction_of_ceiling": post_rate / ceiling,
        "lost": lost,
        "doubled": doubled,
        "slack_429s_whole_run": slack_429s,
        "bridge_cpu_seconds": bridge_cpu,
        "bridge_cpu_ms_per_message": per_message,
    }
    say(
        f"inbound: {closed['per_second']:.0f}/s accepted at c={config.inbound_concurrency}, "
        f"floor {floor_closed['per_second']:.0f}/s (x{ratio:.2f}); p99 {opened['p99_ms']:.1f} ms "
        f"at {rate:.0f}/s; bridge CPU {per_message:.2f} ms per message"
    )
    closed_n, open_n = len(closed_markers), len(open_markers)
    report.rows += [
        Row(
            f"webhook ingest c={config.inbound_concurrency} ({closed_n}): bridge / floor",
            f"{closed['per_second']:.0f}/s / {floor_closed['per_second']:.0f}/s (x{ratio:.2f}); "
            f"p99 {closed['p99_ms']:.1f} / {floor_closed['p99_ms']:.1f} ms",
            f">= {INGEST_MIN_FLOOR_RATIO}x floor, all 2xx",
            ratio >= INGEST_MIN_FLOOR_RATIO
            and pushed.ok == closed_n
            and floor_pushed.ok == closed_n,
        ),
        Row(
            f"webhook accept at {rate:.0f}/s offered ({open_n}): bridge | floor",
            f"p50 / p99 {opened['p50_ms']:.2f} / {opened['p99_ms']:.2f} ms | "
            f"{floor_opened['p50_ms']:.2f} / {floor_opened['p99_ms']:.2f} ms",
            f"{OPEN_LOOP_LOAD:.0%} of capacity; all 2xx",
            paced.ok == open_n and floor_paced.ok == open_n,
        ),
        Row(
            f"inbound posted to Slack ({len(sandbox.inbound_channels)} channels)",
            f"{closed_n} in {all_posted_after:.1f} s; {post_rate:.1f}/s of {ceiling:.0f}/s "
            f"({post_rate / ceiling:.2f})",
            "(reported)",
        ),
        Row(
            "inbound lost / doubled",
            f"{lost} / {doubled}",
            "0 / 0",
            lost == 0 and doubled == 0,
        ),
        Row(
            "bridge CPU per inbound message (webhook to Slack post)",
            f"{per_message:.2f} ms ({bridge_cpu:.2f} s for {len(markers)})",
            f"<= {CPU_PER_INBOUND_MAX_MS:.1f} ms",
            per_message <= CPU_PER_INBOUND_MAX_MS,
        ),
    ]


def storage_rows(result: StorageResult, report: Report) -> None:
    report.data["storage"] = asdict(result)
    for name, timing in result.lookups.items():
        report.rows.append(
            Row(
                f"{name} p50 / p99 ({result.threads:,} threads)",
                f"{ms(timing.p50)} / {ms(timing.p99)}",
                f"p99 <= {LOOKUP_P99_MAX_SECONDS * 1000:.0f} ms",
                timing.p99 <= LOOKUP_P99_MAX_SECONDS and timing.found == timing.samples,
            )
        )
    report.rows.append(
        Row(
            "database size",
            f"{result.database_bytes / 1e6:.0f} MB ({result.database_bytes / result.threads:.0f} "
            "bytes per thread)",
            "(reported)",
        )
    )


async def run_bench(
    config: BenchConfig,
    workdir: Path,
    *,
    say: Callable[[str], None] = print,
    profile_dir: Path | None = None,
    pinned: bool = False,
) -> Report:
    """One complete run; ``workdir`` receives the databases, logs and load plans.

    ``pinned``: the bridge (and the bare Bolt app) get the last CPU to themselves, this process
    and the load generator the others; otherwise the scheduler places everything.
    """
    report = Report(config)
    report.data["machine_at_start"] = machine()
    started = time.monotonic()
    placement = Placement.split() if pinned else None
    report.data["placement"] = (
        {"server_cpus": sorted(placement.server), "other_cpus": sorted(placement.others)}
        if placement
        else "unpinned"
    )
    if placement is not None:
        pin(os.getpid(), placement.others)  # the simulators stay off the bridge's CPU
    sandbox = Sandbox(config, workdir, profile_dir=profile_dir, placement=placement)
    await sandbox.start()
    exit_code: int | None = None
    try:
        bridge = await sandbox.start_bridge()
        await asyncio.sleep(config.settle_seconds)
        idle_rss = bridge.memory().rss_mb
        say(f"bridge pid {bridge.pid} idle: {idle_rss:.1f} MB")
        async with metered(sandbox, report, "ack"):
            await ack_phase(sandbox, report, say)
        async with metered(sandbox, report, "outbound"):
            await outbound_phase(sandbox, report, say)
        async with metered(sandbox, report, "inbound"):
            await inbound_phase(sandbox, report, say)
        memory = bridge.memory()
        after_rss, peak_rss = memory.rss_mb, memory.peak_mb
    finally:
        exit_code = await sandbox.stop()
    report.data["memory_mb"] = {"idle": idle_rss, "after_load": after_rss, "peak": peak_rss}
    report.data["bridge_exit_code"] = exit_code
    report.rows += [
        Row("bridge RSS idle", f"{idle_rss:.1f} MB", f"<= {RSS_MAX_MB:.0f} MB",
            idle_rss <= RSS_MAX_MB),
        Row("bridge RSS after the load (peak)", f"{after_rss:.1f} MB ({peak_rss:.1f} MB)",
            f"<= {RSS_MAX_MB:.0f} MB", after_rss <= RSS_MAX_MB),
    ]  # fmt: skip
    say("storage: loading threads")
    storage = await run_storage_bench(
        workdir, threads=config.storage_threads, samples=config.storage_samples
    )
    storage_rows(storage, report)
    report.data["machine_at_end"] = {"load_average": load_average()}
    report.data["wall_seconds"] = time.monotonic() - started
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller numbers, under a minute")
    parser.add_argument("--out", type=Path, default=RESULTS_PATH, help="where results go")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, DBs)")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="sample the bridge with py-spy during each phase (collapsed stacks into DIR)",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="give the bridge (and the bare Bolt app) the last CPU to itself; load generator"
        " and simulators get the others",
    )
    args = parser.parse_args(argv)
    config = QUICK if args.quick else FULL
    workdir = Path(tempfile.mkdtemp(prefix="ghl-bench-"))
    try:
        if args.profile is not None:
            args.profile.mkdir(parents=True, exist_ok=True)
        report = asyncio.run(
            run_bench(
                config,
                workdir,
                say=lambda line: print(line, flush=True),
                profile_dir=args.profile,
                pinned=args.pin,
            )
        )
    finally:
        if args.keep:
            print(f"work folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(render_table(report.rows))
    info = report.data["machine_at_start"]
    print(
        f"\n{config.name} run in {report.data['wall_seconds']:.1f} s on {info['cpu_model']}, "
        f"{info['cores']} cores, Python {info['python']}, {report.data['placement']}; "
        "load average at start "
        f"{info['load_average']}, "
        + "".join(
            f"after {phase} {spent['load_average_after']}, "
            for phase, spent in report.data["cpu_seconds"].items()
        )
        + f"at end {report.data['machine_at_end']['load_average']}"
    )
    args.out.write_text(report.to_json(), "utf-8")
    print(f"results: {args.out}")
    if report.invalid:
        print(f"RUN NOT VALID: {'; '.join(report.invalid)}")
        return 2
    return 0 if all(row.passed is not False for row in report.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
