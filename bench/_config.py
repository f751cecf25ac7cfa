"""The sizes of a run, the targets its figures are judged against, and its columns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# The targets the table judges against.
ACK_P99_RATIO_MAX = 1.2
OUTBOUND_MIN_FRACTION = 0.95
CPU_PER_SEND_MAX_MS = 3.0
CPU_PER_INBOUND_MAX_MS = 1.5
INGEST_MIN_FLOOR_RATIO = 0.8
LOOKUP_P99_MAX_SECONDS = 0.001
RSS_MAX_MB = 100.0  # idle and after the load, per bridge process
OPEN_LOOP_CONNECTIONS = 256  # at most this many webhooks in flight in the open loop
# Open loop runs at this fraction of the bridge's closed-loop rate: latency below capacity.
OPEN_LOOP_LOAD = 0.5
# The load generator must start open-loop requests on time (p99 of how late each started);
# beyond this the latencies are its own and the run is not valid.
GENERATOR_LAG_P99_MAX_SECONDS = 0.005
# HighLevel's limit while the bridge's own outbound capacity is measured: out of reach.
LIFTED_RATE_MAX = 1_000_000


@dataclass(frozen=True, slots=True)
class Column:
    """One database set-up the whole bench runs against: a column of the table."""

    key: str  # in results.json and file names
    title: str  # the table's header
    backend: Literal["sqlite", "postgresql"]
    instances: int  # bridge processes sharing the database


SQLITE = Column("sqlite-1", "SQLite x1", "sqlite", 1)


def postgres_column(instances: int) -> Column:
    return Column(f"postgresql-{instances}", f"PostgreSQL x{instances}", "postgresql", instances)


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """The sizes of one run; `FULL` and `QUICK` are the two the command offers."""

    name: str
    ack_concurrency: tuple[int, ...] = (1, 10, 50)
    # Timed, per level and per server: with 400, p99 is the 4th-worst request. Every ack is a
    # real send the bridges then make: they are most of a column's time.
    ack_requests: int = 400
    ack_rounds: int = 4  # the requests of a level go in this many rounds, alternating servers
    # Sent first in every round, not timed (at least twice the concurrency, so every
    # connection of the round is open and used before the clock starts).
    ack_warmup: int = 20
    outbound_sends: int = 400  # into HighLevel's ceiling: four of its windows (about 32 s)
    outbound_concurrency: int = 20
    capacity_sends: int = 300  # with the ceiling lifted: the bridges' own outbound capacity
    inbound_webhooks: int = 1200  # closed loop, into the floor and then into the bridges
    inbound_rounds: int = 3  # the closed loop's webhooks go in this many rounds, floor first
    inbound_concurrency: int = 20
    inbound_rate: float = 1000.0  # open loop: at most this many per second
    open_loop_seconds: float = 4.0  # open loop: about this long
    inbound_channels: int = 10
    send_channels: int = 20  # outbound sends spread over these, so Slack pacing is not the limit
    contacts: int = 10  # few, so contact look-ups are cached and nearly every request is a send
    storage_threads: int = 1_000_000
    storage_samples: int = 5000
    slack_post_rate: float = 20.0  # bridge SLACK_POST_RATE and the Slack simulator's, per channel
    slack_post_burst: int = 8  # the simulator's; the bridge's pacer bursts 4
    highlevel_rate_max: int = 100
    # HighLevel's own 100 per 10 s: the outbound phase judges the bridges against the real
    # ceiling (and its real window, against which delays of a few ms are small); their own
    # capacity is the capacity phase's, with the ceiling lifted.
    highlevel_rate_interval_ms: int = 10_000
    settle_seconds: float = 2.0  # after start-up, before "idle" memory is read
    drain_timeout: float = 180.0
    # The PostgreSQL columns: how many bridge processes share the database in each.
    postgres_instances: tuple[int, ...] = (1, 3)


FULL = BenchConfig(name="full")
QUICK = BenchConfig(
    name="quick",
    ack_concurrency=(1, 10),
    ack_requests=50,
    ack_rounds=2,
    ack_warmup=10,
    outbound_sends=120,  # more than one window of HighLevel's ceiling (about 11 s)
    capacity_sends=80,
    # 200 a round: 80 (four per connection at concurrency 20, some 40 ms) left the ratio to
    # the floor at the mercy of one stall (x0.57-1.04 over two rounds of one run).
    inbound_webhooks=600,
    inbound_rounds=3,
    open_loop_seconds=1.0,
    storage_threads=100_000,
    storage_samples=2000,
    settle_seconds=1.0,
    drain_timeout=60.0,
)
