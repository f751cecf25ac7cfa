"""Outbound: quick sends through the outbox into HighLevel at its ceiling, then with the ceiling
lifted (the bridges' own capacity); rates, 429s and what became of every send, read from the
HighLevel simulator."""

from __future__ import annotations

import asyncio
import bisect
import collections
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

from bench._config import CPU_PER_SEND_MAX_MS, LIFTED_RATE_MAX, OUTBOUND_MIN_FRACTION
from bench._report import Report, at_least, at_most, holds, reported
from bench._sandbox import Sandbox
from bench._stats import cpu_ms_per, latency_summary

SEND_PATH = ("POST", "/conversations/messages")


def accounting(
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


def rate_from_first(times: Sequence[float], *, interval: float) -> float:
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


def pace(times: Sequence[float], *, limit: int, interval: float) -> float:
    """How near the whole run came to the fastest a sliding window allows: the time a client
    that sends each request the moment the window lets it would need for these sends (all
    of a window at once, the next `interval` after), over the time they took. Unlike the
    rate from the first send it counts the last, partial window and any gap between windows.
    """
    if len(times) <= limit:
        return math.nan
    fastest = ((len(times) - 1) // limit) * interval
    return fastest / (times[-1] - times[0])


async def _burst(sandbox: Sandbox, count: int, label: str) -> dict[str, Any]:
    """``count`` quick sends at once; returns when the last echo webhook is handled."""
    config = sandbox.config
    first_request = len(sandbox.highlevel.requests)
    first_slack_call, first_webhook = len(sandbox.slack.calls), sandbox.webhooks.emitted
    requests, texts = sandbox.quick_sends(count, label)
    plan = sandbox.slack_plan(requests, config.outbound_concurrency)
    # The bridges' CPU from the first command to the last echo webhook handled: the ack, the
    # intent, the outbox, the send and its echo, per send.
    cpu_before = sandbox.bridge_cpu()
    result = await sandbox.load(plan, label)
    await sandbox.wait_idle(config.drain_timeout)
    cpu = sandbox.bridge_cpu() - cpu_before
    phase_requests = sandbox.highlevel.requests[first_request:]
    slack_calls = collections.Counter(c.method for c in sandbox.slack.calls[first_slack_call:])
    posts = slack_calls["chat.postMessage"]
    states = await sandbox.database.outbox_states()
    return {
        "texts": texts,
        "times": sandbox.send_times(set(texts)),
        "queued": await sandbox.database.queued_at(set(texts)),
        "started": result.started,
        "acks": latency_summary(result),
        "requests": collections.Counter(
            "send" if (r.method, r.path) == SEND_PATH else "other" for r in phase_requests
        ),
        "429s": sum(1 for r in phase_requests if r.status == 429),
        # When HighLevel counted each request against its limit (a 429 is not counted).
        "request_times": sorted(r.received_at for r in phase_requests if r.status != 429),
        # What each send cost in calls, for the stack's floor (bench._stack_floor).
        "calls_per_send": {
            "highlevel": len(phase_requests) / count,
            "slack_posts": posts / count,
            "slack_other": (slack_calls.total() - posts) / count,
            "webhooks": (sandbox.webhooks.emitted - first_webhook) / count,
            "slack_by_method": {m: n / count for m, n in sorted(slack_calls.items())},
        },
        "sends": accounting(texts, sandbox.sent_texts(), states),
        "cpu": cpu,
    }


async def outbound_phase(sandbox: Sandbox, report: Report, say: Callable[[str], None]) -> None:
    """N sends through the outbox into HighLevel's limit of 100 requests per 10 s."""
    config, column = sandbox.config, sandbox.column
    interval = config.highlevel_rate_interval_ms / 1000
    # One send per bridge first, as any live bridge has made: its connections are open and
    # it has heard HighLevel's window from the headers of an answer.
    await _burst(sandbox, len(sandbox.bridges), "warm")
    # Start with HighLevel's window empty, as after any quiet spell: earlier sends would
    # otherwise still count against the first window of this phase.
    await asyncio.sleep(interval + 0.5)
    burst = await _burst(sandbox, config.outbound_sends, "out")
    times, texts, sends = burst["times"], burst["texts"], burst["sends"]
    # HighLevel's ceiling is in requests: the sends, and the contact look-ups before a
    # contact's first send (each bridge its own, cached after), count against it alike.
    requests = burst["request_times"]
    ceiling = config.highlevel_rate_max / interval
    achieved = rate_from_first(requests, interval=interval)
    fraction = achieved / ceiling
    sends_per_second = rate_from_first(times, interval=interval)
    paced = pace(requests, limit=config.highlevel_rate_max, interval=interval)
    per_send = cpu_ms_per(burst["cpu"], len(texts))
    rate_limited = burst["429s"]
    report.of(column)["outbound"] = {
        **sends,
        "acks": burst["acks"],
        "send_span_seconds": (times[-1] - times[0]) if len(times) > 1 else 0.0,
        "sends_per_second_from_first_send": sends_per_second,
        "requests_per_second_from_first_request": achieved,
        "longest_pause_between_sends_seconds": max(
            (later - earlier for earlier, later in itertools.pairwise(times)), default=0.0
        ),
        "all_queued_seconds_after_first_command": (
            burst["queued"][-1] - burst["started"] if burst["queued"] else None
        ),
        "first_send_seconds_after_first_command": (
            (times[0] - burst["started"]) if times else None
        ),
        "ceiling_per_second": ceiling,
        "fraction_of_ceiling": fraction,
        "pace_of_the_fastest_client": paced,
        "highlevel_requests": dict(burst["requests"]),
        "highlevel_429s": rate_limited,
        "calls_per_send": burst["calls_per_send"],
        "bridge_cpu_seconds": burst["cpu"],
        "bridge_cpu_ms_per_send": per_send,
    }
    say(
        f"{column.title} outbound: {achieved:.1f} requests/s of {ceiling:.0f}/s from the first "
        f"({sends_per_second:.1f} sends/s), {paced:.2f} of the fastest pace, "
        f"{rate_limited} x 429, bridge CPU {per_send:.2f} ms per send"
    )
    report.add(
        column,
        f"outbound {len(texts)} sends: HighLevel requests/s from the first",
        f">= {OUTBOUND_MIN_FRACTION} x {ceiling:.0f}/s",
        at_least(fraction, OUTBOUND_MIN_FRACTION, f"{achieved:.1f}/s ({fraction:.2f})"),
    )
    report.add(
        column,
        "outbound sends/s from the first (look-ups take the rest)",
        "(reported)",
        reported(f"{sends_per_second:.1f}/s"),
    )
    report.add(
        column,
        "outbound pace of HighLevel requests: fastest possible time / time taken",
        "(reported)",
        reported(f"{paced:.2f}"),
    )
    report.add(
        column, "outbound 429s from HighLevel", "0", holds(rate_limited == 0, str(rate_limited))
    )
    report.add(
        column,
        "outbound lost / doubled (shown failed)",
        "0 / 0",
        holds(
            sends["lost"] == 0 and sends["doubled"] == 0,
            f"{sends['lost']} / {sends['doubled']} ({sends['shown_failed']})",
        ),
    )
    report.add(
        column,
        "bridge CPU per send (command to echo webhook)",
        f"<= {CPU_PER_SEND_MAX_MS:.1f} ms",
        at_most(per_send, CPU_PER_SEND_MAX_MS, f"{per_send:.2f} ms"),
    )


async def capacity_phase(sandbox: Sandbox, report: Report, say: Callable[[str], None]) -> None:
    """The same burst with HighLevel's limit lifted out of reach: how fast the bridges send
    when nothing but themselves holds them back. The limit stays lifted for the column."""
    config, column = sandbox.config, sandbox.column
    sandbox.highlevel.limiter.max_requests = LIFTED_RATE_MAX
    burst = await _burst(sandbox, config.capacity_sends, "capacity")
    times, texts, sends = burst["times"], burst["texts"], burst["sends"]
    span = (times[-1] - burst["started"]) if times else math.nan
    rate = len(times) / span if span > 0 else math.nan
    per_send = cpu_ms_per(burst["cpu"], len(texts))
    report.of(column)["capacity"] = {
        **sends,
        "acks": burst["acks"],
        "sends_per_second_first_command_to_last_send": rate,
        "seconds_first_command_to_last_send": span,
        "highlevel_requests": dict(burst["requests"]),
        "highlevel_429s": burst["429s"],
        "bridge_cpu_seconds": burst["cpu"],
        "bridge_cpu_ms_per_send": per_send,
    }
    say(f"{column.title} capacity: {rate:.1f}/s with HighLevel's ceiling lifted")
    report.add(
        column,
        f"outbound capacity, ceiling lifted ({len(texts)} sends)",
        "(reported)",
        reported(f"{rate:.0f}/s, {per_send:.2f} ms CPU/send"),
    )
    report.add(
        column,
        "outbound lost / doubled, ceiling lifted",
        "0 / 0",
        holds(
            sends["lost"] == 0 and sends["doubled"] == 0,
            f"{sends['lost']} / {sends['doubled']} ({sends['shown_failed']})",
        ),
    )
