"""Inbound: signed HighLevel webhooks into the bridges and into the floor servers, then on to
Slack."""

from __future__ import annotations

import asyncio
import collections
import math
from collections.abc import Callable, Sequence
from typing import Any

from bench._config import (
    CPU_PER_INBOUND_MAX_MS,
    GENERATOR_LAG_P99_MAX_SECONDS,
    INGEST_MIN_FLOOR_RATIO,
    OPEN_LOOP_CONNECTIONS,
    OPEN_LOOP_LOAD,
)
from bench._loadgen import LoadPlan, LoadResult, PlannedRequest
from bench._procs import ServerProcess, cpu_seconds_of, start_floor
from bench._report import Report, at_least, at_most, holds, reported
from bench._sandbox import Sandbox
from bench._stats import cpu_ms_per, latency_summary, spread


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


def check_schedule(report: Report, result: LoadResult, into: str, rate: float) -> None:
    """An open loop whose generator started requests late measured the generator: say so."""
    lag = result.start_lag_p99
    if lag > GENERATOR_LAG_P99_MAX_SECONDS:
        report.invalid.append(
            f"the load generator fell behind its schedule of {rate:.0f}/s into {into}: p99 "
            f"start lag {lag * 1000:.1f} ms > {GENERATOR_LAG_P99_MAX_SECONDS * 1000:.0f} ms"
        )


async def _start_floors(sandbox: Sandbox) -> list[ServerProcess]:
    """As many floor servers as the column has bridges, on the column's backend."""
    column = sandbox.column
    database = (
        sandbox.database_url
        if column.backend == "postgresql"
        else str(sandbox.workdir / "floor.sqlite3")
    )
    return list(
        await asyncio.gather(
            *(
                start_floor(
                    public_key_pem=sandbox.highlevel.public_key_pem,
                    database=database,
                    workdir=sandbox.workdir,
                    log_path=sandbox.workdir / f"floor-{index}.log",
                    cpus=sandbox.placement.server if sandbox.placement else None,
                )
                for index in range(1, column.instances + 1)
            )
        )
    )


async def _make_threads(sandbox: Sandbox) -> None:
    """One existing thread per inbound channel: a first send from each to its own contact."""
    setup, _ = sandbox.quick_sends(
        len(sandbox.inbound_channels),
        "thread",
        channels=sandbox.inbound_channels,
        contacts=sandbox.inbound_contacts,
    )
    await sandbox.load(sandbox.slack_plan(setup, len(setup)), "inbound-threads")
    await sandbox.wait_idle(sandbox.config.drain_timeout)
    roots = {c: len(sandbox.slack.channel_messages(c)) for c in sandbox.inbound_channels}
    if set(roots.values()) != {1}:
        raise RuntimeError(f"expected one thread per inbound channel, found {roots}")


def _posted(sandbox: Sandbox) -> tuple[collections.Counter[str], dict[str, float]]:
    """Per webhook marker: how many times it reached its Slack thread, and when (last)."""
    posted: collections.Counter[str] = collections.Counter()
    post_times: dict[str, float] = {}
    for channel in sandbox.inbound_channels:
        for root in sandbox.slack.channel_messages(channel):
            for message in sandbox.slack.thread(channel, root.ts)[1:]:
                marker = message.text.split(" is my reply", 1)[0].rsplit(" ", 1)[-1]
                if marker.startswith("bench-in-"):
                    posted[marker] += 1
                    post_times[marker] = float(message.ts)
    return posted, post_times


async def inbound_phase(sandbox: Sandbox, report: Report, say: Callable[[str], None]) -> None:
    """Signed webhooks into threads in `inbound_channels` channels, then on to Slack.

    Closed loop at `inbound_concurrency`, the same webhooks into the floor servers and then
    into the bridges (as many of each, round robin), in rounds: how many each accepts per
    second when pushed. Then open loop at OPEN_LOOP_LOAD of the bridges' rate, into both:
    accept latency below capacity. Every webhook the bridges accepted must be posted to its
    Slack thread exactly once.
    """
    config, column = sandbox.config, sandbox.column
    await _make_threads(sandbox)
    floors = await _start_floors(sandbox)
    bridge_urls = sandbox.urls("/ghl/webhooks")
    floor_urls = [f"{floor.url}/ghl/webhooks" for floor in floors]
    rounds = max(1, config.inbound_rounds)
    per_round, extra = divmod(config.inbound_webhooks, rounds)
    closed_markers = [f"bench-in-{i:06d}" for i in range(config.inbound_webhooks)]
    pushed: list[LoadResult] = []
    floor_pushed: list[LoadResult] = []
    bridge_cpu = floor_cpu = 0.0
    try:
        closed_requests = await _signed_webhooks(sandbox, closed_markers, first_index=0)
        start = 0
        for round_index in range(rounds):
            size = per_round + (round_index < extra)
            requests = closed_requests[start : start + size]
            start += size

            def closed_plan(urls: list[str], requests: list[PlannedRequest] = requests) -> LoadPlan:
                return LoadPlan(
                    urls=urls,
                    concurrency=config.inbound_concurrency,
                    requests=requests,
                    content_type="application/json",
                )

            # The floor first, while the bridges are idle: their Slack posts after their own
            # closed loop would otherwise run beside the floor's.
            cpu_before = sum(cpu_seconds_of(floor.pid) for floor in floors)
            floor_pushed.append(
                await sandbox.load(closed_plan(floor_urls), f"inbound-floor-closed-{round_index}")
            )
            floor_cpu += sum(cpu_seconds_of(floor.pid) for floor in floors) - cpu_before
            cpu_before = sandbox.bridge_cpu()
            pushed.append(
                await sandbox.load(closed_plan(bridge_urls), f"inbound-closed-{round_index}")
            )
            await sandbox.wait_idle(config.drain_timeout)
            bridge_cpu += sandbox.bridge_cpu() - cpu_before

        closed, floor_closed = latency_summary(*pushed), latency_summary(*floor_pushed)
        rate = max(1.0, min(config.inbound_rate, OPEN_LOOP_LOAD * closed["per_second"]))
        count = max(1, round(rate * config.open_loop_seconds))
        open_markers = [
            f"bench-in-{i:06d}" for i in range(len(closed_markers), len(closed_markers) + count)
        ]
        open_requests = await _signed_webhooks(
            sandbox, open_markers, first_index=len(closed_markers)
        )

        def open_plan(urls: list[str]) -> LoadPlan:
            return LoadPlan(
                urls=urls,
                concurrency=OPEN_LOOP_CONNECTIONS,
                requests=open_requests,
                content_type="application/json",
                rate_per_second=rate,
            )

        floor_paced = await sandbox.load(open_plan(floor_urls), "inbound-floor-open")
        cpu_before = sandbox.bridge_cpu()
        paced = await sandbox.load(open_plan(bridge_urls), "inbound-open")
        await sandbox.wait_idle(config.drain_timeout)
        bridge_cpu += sandbox.bridge_cpu() - cpu_before
    finally:
        await asyncio.gather(*(floor.stop() for floor in floors))
    check_schedule(report, floor_paced, f"the floor server ({column.title})", rate)
    check_schedule(report, paced, f"the bridges ({column.title})", rate)

    markers = [*closed_markers, *open_markers]
    posted, post_times = _posted(sandbox)
    accepted = sum(result.ok for result in pushed) + paced.ok
    lost = sum(1 for m in markers if not posted[m])
    doubled = sum(1 for m in markers if posted[m] > 1)
    opened, floor_opened = latency_summary(paced), latency_summary(floor_paced)
    for summary, result in ((opened, paced), (floor_opened, floor_paced)):
        summary["generator_start_lag_p99_ms"] = result.start_lag_p99 * 1000
    ratio = closed["per_second"] / floor_closed["per_second"]
    round_ratios = [
        latency_summary(ours)["per_second"] / latency_summary(theirs)["per_second"]
        for ours, theirs in zip(pushed, floor_pushed, strict=True)
    ]
    # Posting pace: the first round's webhooks, a backlog the per-channel pacer works through.
    first_round = closed_markers[: per_round + (extra > 0)]
    backlog_posts = sorted(post_times[m] for m in first_round if m in post_times)
    ceiling = config.slack_post_rate * len(sandbox.inbound_channels)
    all_posted_after = (backlog_posts[-1] - pushed[0].started) if backlog_posts else math.nan
    post_span = (backlog_posts[-1] - backlog_posts[0]) if len(backlog_posts) > 1 else math.nan
    post_rate = len(backlog_posts) / post_span if post_span > 0 else 0.0
    slack_429s = sum(1 for call in sandbox.slack.calls if call.http_status == 429)
    per_message = cpu_ms_per(bridge_cpu, len(markers))
    data: dict[str, Any] = {
        "webhooks": len(markers),
        "accepted": accepted,
        "closed_loop": {"concurrency": config.inbound_concurrency, "rounds": rounds, **closed},
        "floor_closed_loop": {"concurrency": config.inbound_concurrency, **floor_closed},
        "floor_servers": len(floors),
        "ingest_ratio_to_floor": ratio,
        "ingest_ratio_over_rounds": round_ratios,
        "open_loop": {"offered_per_second": rate, **opened},
        "floor_open_loop": {"offered_per_second": rate, **floor_opened},
        "first_round_all_posted_seconds_after_first_webhook": all_posted_after,
        "posts": sum(posted.values()),
        "first_round_post_span_seconds": post_span,
        "first_round_posts_per_second": post_rate,
        "ceiling_per_second": ceiling,
        "fraction_of_ceiling": post_rate / ceiling,
        "lost": lost,
        "doubled": doubled,
        "slack_429s_whole_column": slack_429s,
        "bridge_cpu_seconds": bridge_cpu,
        "bridge_cpu_ms_per_message": per_message,
        # The floor servers' CPU per webhook accepted in the closed loop (bench._stack_floor).
        "floor_cpu_ms_per_webhook": cpu_ms_per(floor_cpu, len(closed_markers)),
    }
    report.of(column)["inbound"] = data
    say(
        f"{column.title} inbound: {closed['per_second']:.0f}/s accepted at "
        f"c={config.inbound_concurrency}, floor {floor_closed['per_second']:.0f}/s "
        f"(x{ratio:.2f}); p99 {opened['p99_ms']:.1f} ms at {rate:.0f}/s; bridge CPU "
        f"{per_message:.2f} ms per message"
    )
    closed_n, open_n = len(closed_markers), len(open_markers)
    report.add(
        column,
        f"webhook ingest c={config.inbound_concurrency} ({closed_n}): bridge / floor",
        f">= {INGEST_MIN_FLOOR_RATIO}x floor, all 2xx",
        at_least(
            ratio,
            INGEST_MIN_FLOOR_RATIO,
            f"{closed['per_second']:.0f} / {floor_closed['per_second']:.0f}/s x{ratio:.2f}",
            also=closed["non_2xx"] == 0 and floor_closed["non_2xx"] == 0,
        ),
    )
    if rounds > 1:
        report.add(
            column,
            f"webhook ingest ratio over {rounds} rounds",
            "(spread)",
            reported(spread(round_ratios)),
        )
    report.add(
        column,
        "webhook ingest p99: bridge / floor",
        "(reported)",
        reported(f"{closed['p99_ms']:.1f} / {floor_closed['p99_ms']:.1f} ms"),
    )
    report.add(
        column,
        f"webhook accept p50 / p99 at {OPEN_LOOP_LOAD:.0%} of capacity",
        "all 2xx; p99 reported",
        holds(
            opened["non_2xx"] == 0 and floor_opened["non_2xx"] == 0,
            f"{opened['p50_ms']:.1f} / {opened['p99_ms']:.1f} ms at {rate:.0f}/s ({open_n})",
        ),
    )
    report.add(
        column,
        "  the floor at the same rate",
        "(reported)",
        reported(f"{floor_opened['p50_ms']:.1f} / {floor_opened['p99_ms']:.1f} ms"),
    )
    report.add(
        column,
        f"inbound posted to Slack ({len(sandbox.inbound_channels)} channels)",
        "(reported)",
        reported(f"{post_rate:.0f}/s of {ceiling:.0f}/s, {slack_429s} x 429"),
    )
    report.add(
        column,
        "inbound lost / doubled",
        "0 / 0",
        holds(lost == 0 and doubled == 0, f"{lost} / {doubled}"),
    )
    report.add(
        column,
        "bridge CPU per inbound message (webhook to Slack post)",
        f"<= {CPU_PER_INBOUND_MAX_MS:.1f} ms",
        at_most(per_message, CPU_PER_INBOUND_MAX_MS, f"{per_message:.2f} ms"),
    )
