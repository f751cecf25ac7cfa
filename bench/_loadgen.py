"""The load generator: a separate process that POSTs prepared requests and times each one.

Run as ``python -m bench._loadgen PLAN.json RESULT.json`` for one plan, or as
``python -m bench._loadgen --serve`` to take plans on stdin (a JSON array per line: plan path,
result path), one after another, answering ``done`` (or ``failed: why``) on stdout for each:
a run makes dozens of plans, and starting Python for each took most of a second. It lives in
its own process so its CPU use never lands in the measured server's process, and the
simulators (which stay in the orchestrator) never delay its clock readings. The plan holds
the target URLs (request i goes to URL i mod their number: round robin over several
servers), the concurrency, how many leading requests are warm-up (sent, not timed), and the
bodies with their headers. Every plan gets a new client session, so new connections. Slack
requests are signed just before they are sent, as Slack does; the signing is not timed.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp

from bot.sandbox.slack import slack_signature


@dataclass(frozen=True, slots=True)
class PlannedRequest:
    body: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """What the load generator sends: ``requests`` round robin over ``urls``, ``concurrency``
    at a time (over all of them together)."""

    urls: list[str]
    concurrency: int
    requests: list[PlannedRequest]
    warmup: int = 0
    content_type: str = "application/x-www-form-urlencoded"
    slack_signing_secret: str | None = None  # sign each body at send time, as Slack does
    timeout_seconds: float = 30.0
    # Open loop: start requests at this fixed rate whatever the answers (``concurrency`` then
    # caps the connections), and time each from the moment it was due, so a server that falls
    # behind is charged for the wait. None: closed loop, ``concurrency`` workers.
    rate_per_second: float | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> LoadPlan:
        data = json.loads(text)
        data["requests"] = [PlannedRequest(**item) for item in data["requests"]]
        return cls(**data)


@dataclass(frozen=True, slots=True)
class LoadResult:
    """Per timed request: seconds from send to the whole answer read, and the HTTP status."""

    latencies: list[float]
    statuses: list[int]  # 0: no answer (connection error or timeout)
    started: float  # wall clock (epoch seconds) of the first timed request
    finished: float  # wall clock when the last timed request was answered
    warmup_statuses: list[int]
    cpu_seconds: float = 0.0  # the load generator's own CPU time (is it the bottleneck?)
    # Open loop: how late the generator itself started requests (it must keep up to be fair).
    start_lag_p99: float = 0.0

    @property
    def wall_seconds(self) -> float:
        return max(self.finished - self.started, 1e-9)

    @property
    def ok(self) -> int:
        return sum(1 for status in self.statuses if 200 <= status < 300)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> LoadResult:
        return cls(**json.loads(text))


def _headers(plan: LoadPlan, request: PlannedRequest) -> dict[str, str]:
    headers = {"Content-Type": plan.content_type, **request.headers}
    if plan.slack_signing_secret is not None:
        timestamp = int(time.time())
        headers["X-Slack-Request-Timestamp"] = str(timestamp)
        headers["X-Slack-Signature"] = slack_signature(
            plan.slack_signing_secret, timestamp, request.body
        )
    return headers


async def _send(
    session: aiohttp.ClientSession,
    plan: LoadPlan,
    index: int,
    requests: list[PlannedRequest],
    due: float | None = None,
) -> tuple[float, int]:
    """Send request ``index``; seconds from ``due`` (default: now) until the whole answer is
    read."""
    request = requests[index]
    headers = _headers(plan, request)
    data = request.body.encode()
    url = plan.urls[index % len(plan.urls)]
    started = time.perf_counter() if due is None else due
    try:
        async with session.post(url, data=data, headers=headers) as response:
            await response.read()
            status = response.status
    except (aiohttp.ClientError, TimeoutError):
        status = 0
    return time.perf_counter() - started, status


async def _closed_loop(
    session: aiohttp.ClientSession, plan: LoadPlan, requests: list[PlannedRequest]
) -> tuple[list[float], list[int]]:
    """``concurrency`` workers, each sending its next request as soon as the last is answered."""
    latencies = [0.0] * len(requests)
    statuses = [0] * len(requests)
    cursor = iter(range(len(requests)))

    async def worker() -> None:
        for index in cursor:
            latencies[index], statuses[index] = await _send(session, plan, index, requests)

    await asyncio.gather(*(worker() for _ in range(max(1, plan.concurrency))))
    return latencies, statuses


async def _open_loop(
    session: aiohttp.ClientSession, plan: LoadPlan, requests: list[PlannedRequest], rate: float
) -> tuple[list[float], list[int], list[float]]:
    """Request i is due at start + i / rate; it goes then, answered or not the ones before."""
    latencies = [0.0] * len(requests)
    statuses = [0] * len(requests)
    lags = [0.0] * len(requests)
    start = time.perf_counter() + 0.05

    async def one(index: int) -> None:
        due = start + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        lags[index] = max(0.0, time.perf_counter() - due)
        latencies[index], statuses[index] = await _send(session, plan, index, requests, due)

    await asyncio.gather(*(one(index) for index in range(len(requests))))
    return latencies, statuses, lags


async def run_plan(plan: LoadPlan) -> LoadResult:
    cpu_before = time.process_time()
    connector = aiohttp.TCPConnector(limit=max(1, plan.concurrency), force_close=False)
    timeout = aiohttp.ClientTimeout(total=plan.timeout_seconds)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        warmup = plan.requests[: plan.warmup]
        timed = plan.requests[plan.warmup :]
        _, warmup_statuses = await _closed_loop(session, plan, warmup)
        started = time.time()
        lags: list[float] = []
        if plan.rate_per_second is None:
            latencies, statuses = await _closed_loop(session, plan, timed)
        else:
            latencies, statuses, lags = await _open_loop(session, plan, timed, plan.rate_per_second)
        finished = time.time()
    lags.sort()
    return LoadResult(
        latencies=latencies,
        statuses=statuses,
        started=started,
        finished=finished,
        warmup_statuses=warmup_statuses,
        cpu_seconds=time.process_time() - cpu_before,
        start_lag_p99=lags[int(0.99 * (len(lags) - 1))] if lags else 0.0,
    )


def run_file(plan_path: str, result_path: str) -> None:
    plan = LoadPlan.from_json(Path(plan_path).read_text("utf-8"))
    result = asyncio.run(run_plan(plan))
    Path(result_path).write_text(result.to_json(), "utf-8")


def serve() -> int:
    """One plan per stdin line (a JSON array: plan path, result path), one answer line each,
    until stdin closes."""
    for line in sys.stdin:
        if not line.strip():
            continue
        gc.collect()  # the last plan's garbage, collected here rather than in the next's timing
        try:
            plan_path, result_path = json.loads(line)
            run_file(str(plan_path), str(result_path))
        except Exception as exc:  # the orchestrator shows it with the log; this process serves on
            traceback.print_exc()  # into the log (stderr)
            print(f"failed: {type(exc).__name__}: {exc}".replace("\n", " "), flush=True)
        else:
            print("done", flush=True)
    return 0


def main(argv: list[str]) -> int:
    if argv == ["--serve"]:
        return serve()
    if len(argv) != 2:
        print("usage: python -m bench._loadgen PLAN.json RESULT.json | --serve", file=sys.stderr)
        return 2
    run_file(argv[0], argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
