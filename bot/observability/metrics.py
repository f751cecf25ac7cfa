"""`/metrics` in Prometheus text format, from one registry per bridge (never the global one).

Label values come only from bounded sets: states, outcomes, HTTP and Slack API method names,
Slack error codes (others are "other"), the served location ids. Never message text, phone
numbers, emails, contact or user ids, or tokens.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections.abc import Callable, Iterable
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import CollectorRegistry, Counter, Histogram, Info
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from bot.outbound.presenter import SEND_OUTCOMES
from storage import InboundBacklog, OutboxState, Store

log = logging.getLogger(__name__)

PREFIX = "ghl_bridge"
CONTENT_TYPE = CONTENT_TYPE_LATEST
# HighLevel answers in 100 ms to a few s; a send that took 20 s is the timeout's business.
LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, math.inf)
HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
# The Web API errors the bridge can meet (chat.*, conversations.*, reactions.add, auth.test);
# any other code is counted as "other", so a code Slack invents cannot grow the label set.
SLACK_ERROR_CODES = frozenset(
    {
        "no_answer",
        "ratelimited",
        "not_in_channel",
        "channel_not_found",
        "is_archived",
        "thread_not_found",
        "message_not_found",
        "cant_update_message",
        "already_reacted",
        "msg_too_long",
        "no_text",
        "invalid_blocks",
        "invalid_metadata_format",
        "missing_scope",
        "not_allowed_token_type",
        "not_authed",
        "invalid_auth",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "restricted_action",
        "user_not_in_channel",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
        "unknown_error",
    }
)
SCRAPE_PARTS = ("outbox", "inbound")


def new_instance_id() -> str:
    """A random id for this process: tells instances (and restarts) apart in metrics and logs."""
    return secrets.token_hex(6)


def program_version() -> str:
    try:
        return version("ghl-bridge")
    except PackageNotFoundError:  # a source tree that is not installed
        return "0+unknown"


class BridgeMetrics:
    """The bridge's counters and histograms, and the gauges read from the store at scrape time.

    It is the observer the HighLevel client, the Slack poster and the outbox worker report to.
    """

    def __init__(
        self,
        *,
        store: Store,
        instance_id: str,
        version: str,
        clock: Callable[[], float] = time.time,
        answer_within: float = 2.0,
    ) -> None:
        self.instance_id = instance_id
        self.registry = CollectorRegistry(auto_describe=False)
        registry = self.registry
        Info(
            f"{PREFIX}_instance",
            "This process: a random id per start (also logged at start-up) and the version.",
            registry=registry,
        ).info({"instance_id": instance_id, "version": version})
        self._sends = Counter(
            f"{PREFIX}_sends",
            "How attempts at outbox sends ended: " + ", ".join(SEND_OUTCOMES) + ".",
            ["outcome"],
            registry=registry,
        )
        for outcome in SEND_OUTCOMES:
            self._sends.labels(outcome=outcome)
        self._highlevel_latency = Histogram(
            f"{PREFIX}_highlevel_request_duration_seconds",
            "HighLevel API requests (each attempt), from sending to HighLevel's answer or to "
            "giving up on one, by location and HTTP method.",
            ["location_id", "method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._highlevel_429 = Counter(
            f"{PREFIX}_highlevel_rate_limited",
            "HighLevel API answers 429 (rate limited), by location.",
            ["location_id"],
            registry=registry,
        )
        self._highlevel_errors = Counter(
            f"{PREFIX}_highlevel_request_errors",
            "HighLevel API attempts without success, by location and kind: "
            "no_answer, 4xx (429 excluded), 5xx.",
            ["location_id", "kind"],
            registry=registry,
        )
        self._slack_errors = Counter(
            f"{PREFIX}_slack_api_errors",
            "Slack Web API calls refused or unanswered (each attempt), by API method and "
            "Slack's error code (no_answer: none came; other: a code not listed here).",
            ["method", "error"],
            registry=registry,
        )
        self._slack_429 = Counter(
            f"{PREFIX}_slack_rate_limited",
            "Slack Web API answers 429 (rate limited), by API method.",
            ["method"],
            registry=registry,
        )
        self._takeovers = Counter(
            f"{PREFIX}_lease_takeovers",
            "Claims taken over by this instance from one whose lease expired: sends (then "
            "reconciled, never resent blindly) and inbound events (queued again).",
            ["kind"],
            registry=registry,
        )
        for kind in ("send", "inbound"):
            self._takeovers.labels(kind=kind)
        self._scrape_errors = Counter(
            f"{PREFIX}_scrape_errors",
            "Scrapes that served no figure for a part read from the database (outbox, "
            "inbound): it was busy or failed. The other figures are served.",
            ["part"],
            registry=registry,
        )
        for part in SCRAPE_PARTS:
            self._scrape_errors.labels(part=part)
        self._database = DatabaseGauges(store, clock=clock, answer_within=answer_within)
        registry.register(self._database)

    async def exposition(self) -> bytes:
        """The text a scrape gets: what can be read now; never an error for a busy database."""
        for part in await self._database.refresh():
            self._scrape_errors.labels(part=part).inc()
        return generate_latest(self.registry)

    # ------------------------------------------------------------------ observers

    def lease_takeovers(self, kind: str, count: int) -> None:
        if count:
            self._takeovers.labels(kind=kind).inc(count)

    def send_outcome(self, outcome: str) -> None:
        self._sends.labels(outcome=outcome if outcome in SEND_OUTCOMES else "other").inc()

    def highlevel_request(
        self, *, location_id: str, method: str, seconds: float, status: int | None
    ) -> None:
        method = method.upper() if method.upper() in HTTP_METHODS else "OTHER"
        self._highlevel_latency.labels(location_id=location_id, method=method).observe(seconds)
        if status == 429:
            self._highlevel_429.labels(location_id=location_id).inc()
        elif status is None or status >= 400:
            kind = "no_answer" if status is None else f"{status // 100}xx"
            self._highlevel_errors.labels(location_id=location_id, kind=kind).inc()

    def slack_api_error(self, *, method: str, error: str, rate_limited: bool) -> None:
        if rate_limited:
            self._slack_429.labels(method=method).inc()
        code = error if error in SLACK_ERROR_CODES else "other"
        self._slack_errors.labels(method=method, error=code).inc()


class DatabaseGauges(Collector):
    """Outbox entries by state and the inbound queue, read from the store when scraped.

    `refresh` (async) reads; `collect` (called by prometheus_client, synchronously) serves what
    the last refresh read. A read still running after `answer_within` (the database locked by
    another program, up to the store's busy timeout) is not waited for: its part is left out
    of this scrape, and the next scrape waits for that same read instead of queueing another.
    """

    def __init__(self, store: Store, *, clock: Callable[[], float], answer_within: float) -> None:
        self._store = store
        self._clock = clock
        self._answer_within = answer_within
        self._outbox: dict[OutboxState, int] | None = None
        self._backlog: InboundBacklog | None = None
        self._reading: asyncio.Task[None] | None = None

    async def refresh(self) -> list[str]:
        """Read both parts; the parts that could not be read in time (or at all)."""
        self._outbox = self._backlog = None
        if self._reading is None:
            self._reading = asyncio.create_task(self._read(), name="metrics:database")
        await asyncio.wait({self._reading}, timeout=self._answer_within)
        missing = []
        if self._outbox is None:
            missing.append("outbox")
        if self._backlog is None:
            missing.append("inbound")
        return missing

    async def _read(self) -> None:
        try:
            try:
                self._outbox = await self._store.count_outbox_by_state()
            except Exception as exc:  # a scrape serves what it can, whatever the store did
                log.warning("metrics: could not count the outbox (%s)", _one_line(exc))
            try:
                self._backlog = await self._store.inbound_backlog()
            except Exception as exc:
                log.warning("metrics: could not read the inbound queue (%s)", _one_line(exc))
        finally:
            self._reading = None

    def describe(self) -> Iterable[Metric]:
        return []  # names are not reserved: nothing else in this registry uses them

    def collect(self) -> Iterable[Metric]:
        if self._outbox is not None:
            outbox = GaugeMetricFamily(
                f"{PREFIX}_outbox_entries",
                "Outbox entries waiting (pending), in flight (sending), of unknown outcome, or "
                "failed; sent and cancelled ones are counted by ghl_bridge_sends_total instead.",
                labels=["state"],
            )
            for state, count in self._outbox.items():
                outbox.add_metric([state.value], count)
            yield outbox
        if self._backlog is not None:
            backlog = self._backlog
            depth = GaugeMetricFamily(
                f"{PREFIX}_inbound_queue_depth",
                "Inbound events (webhooks, polled messages) stored and not yet shown in Slack.",
                labels=["state"],
            )
            depth.add_metric(["pending"], backlog.pending)
            depth.add_metric(["processing"], backlog.processing)
            yield depth
            oldest = backlog.oldest_pending_received_at
            yield GaugeMetricFamily(
                f"{PREFIX}_inbound_oldest_pending_age_seconds",
                "How long the longest-waiting pending inbound event has waited (0: none).",
                value=0.0 if oldest is None else max(0.0, self._clock() - oldest),
            )


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())
