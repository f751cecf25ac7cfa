"""Ack latency of `/sendsms` quick sends, the bridges and a bare Bolt app taking turns."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench._config import ACK_P99_RATIO_MAX
from bench._loadgen import LoadPlan, LoadResult
from bench._outbound import accounting
from bench._procs import cpu_seconds_of, start_baseline
from bench._report import Report, at_most, reported
from bench._sandbox import SIGNING_SECRET, Sandbox
from bench._stats import latency_summary, percentile, spread


async def ack_phase(sandbox: Sandbox, report: Report, say: Callable[[str], None]) -> None:
    """Ack latency per concurrency level, the bare Bolt app and the bridges taking turns (the
    column's bridges in turn within each of their rounds)."""
    config, column = sandbox.config, sandbox.column
    baseline = await start_baseline(
        signing_secret=SIGNING_SECRET,
        bot_token=sandbox.slack.bot_token,
        slack_api_url=sandbox.slack.api_url,
        workdir=sandbox.workdir,
        log_path=sandbox.workdir / "baseline.log",
        cpus=sandbox.placement.server if sandbox.placement else None,
    )
    levels: dict[str, Any] = {}
    # The bare Bolt app's CPU per acked command (every request it answered, warm-up included):
    # the floor of a send's ack (bench._stack_floor).
    bolt_cpu, bolt_acks = 0.0, 0
    all_texts: list[str] = []
    rounds = max(1, config.ack_rounds)
    per_round, extra = divmod(config.ack_requests, rounds)
    sizes = [per_round + (i < extra) for i in range(rounds)]
    targets = {"bolt": [f"{baseline.url}/slack/events"], "bridge": sandbox.urls("/slack/events")}
    try:
        for concurrency in config.ack_concurrency:
            results: dict[str, list[LoadResult]] = {"bolt": [], "bridge": []}
            # Every round is a new client session with new connections: it warms them all
            # (twice the concurrency, so every worker has opened one and used it; with several
            # bridges, each gets its share of both) before its clock starts.
            warmup = max(config.ack_warmup, 2 * concurrency)
            # Short alternating rounds, so whatever else the machine does meanwhile falls on
            # both servers alike rather than on whichever happened to be measured then.
            for round_index, size in enumerate(sizes):
                for target, urls in targets.items():
                    requests, texts = sandbox.quick_sends(
                        warmup + size, f"ack c{concurrency} {target}"
                    )
                    plan = LoadPlan(
                        urls=urls,
                        concurrency=concurrency,
                        requests=requests,
                        warmup=warmup,
                        slack_signing_secret=SIGNING_SECRET,
                    )
                    name = f"ack-c{concurrency}-{target}-{round_index}"
                    cpu_before = cpu_seconds_of(baseline.pid)
                    results[target].append(await sandbox.load(plan, name))
                    if target == "bolt":
                        bolt_cpu += cpu_seconds_of(baseline.pid) - cpu_before
                        bolt_acks += len(requests)
                    if target == "bridge":
                        all_texts.extend(texts)
                        # The sends behind these acks finish before anything else is timed.
                        await sandbox.wait_idle(config.drain_timeout)
            measured = {target: latency_summary(*runs) for target, runs in results.items()}
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
                f"{column.title} ack c={concurrency}: bridge p99 "
                f"{measured['bridge']['p99_ms']:.2f} ms, "
                f"bolt p99 {measured['bolt']['p99_ms']:.2f} ms"
            )
    finally:
        await baseline.stop()
    sends = accounting(all_texts, sandbox.sent_texts(), await sandbox.database.outbox_states())
    report.of(column)["ack"] = {
        "levels": levels,
        "sends_behind_the_acks": sends,
        "bolt_cpu_ms_per_ack": bolt_cpu * 1000 / max(1, bolt_acks),
    }
    spreads: list[str] = []
    for concurrency in config.ack_concurrency:
        level = levels[str(concurrency)]
        bridge, bolt = level["bridge"], level["bolt"]
        report.add(
            column,
            f"ack c={concurrency} p99: bridge / bare Bolt ({bridge['requests']} each)",
            f"<= {ACK_P99_RATIO_MAX}x Bolt, all 2xx",
            at_most(
                level["p99_ratio"],
                ACK_P99_RATIO_MAX,
                f"{bridge['p99_ms']:.1f} / {bolt['p99_ms']:.1f} ms x{level['p99_ratio']:.2f}",
                also=bridge["non_2xx"] == 0 and bolt["non_2xx"] == 0,
            ),
        )
        spreads.append(spread(level["p99_ratio_over_rounds"]))
    levels_shown = ", ".join(str(c) for c in config.ack_concurrency)
    report.add(
        column,
        f"ack p99 ratio over {rounds} rounds (c={levels_shown})",
        "(spread)",
        reported(", ".join(spreads)),
    )
    report.add(
        column,
        "ack p50: bridge / bare Bolt (c=" + levels_shown + ")",
        "(reported)",
        reported(
            ", ".join(
                f"{levels[str(c)]['bridge']['p50_ms']:.1f}/{levels[str(c)]['bolt']['p50_ms']:.1f}"
                for c in config.ack_concurrency
            )
            + " ms"
        ),
    )
