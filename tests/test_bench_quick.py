"""The benchmark's whole path on tiny numbers, so `python -m bench.run` cannot rot unnoticed.

Nothing here judges speed (CI times nothing): it checks that every phase ran against a real
bridge process and that the bench's own bookkeeping adds up — every send and every webhook
accounted for exactly once, every look-up found, memory read from /proc.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from bench._stats import render_table
from bench.run import QUICK, run_bench

SMOKE = dataclasses.replace(
    QUICK,
    name="smoke",
    ack_concurrency=(1, 5),
    ack_requests=21,
    ack_rounds=2,
    ack_warmup=5,
    outbound_sends=30,
    outbound_concurrency=5,
    inbound_webhooks=60,
    inbound_concurrency=5,
    inbound_rate=200.0,
    inbound_channels=3,
    send_channels=4,
    contacts=3,
    storage_threads=2000,
    storage_samples=200,
    settle_seconds=0.2,
    drain_timeout=30.0,
)


async def test_the_smallest_bench_run_measures_every_phase(tmp_path: Path) -> None:
    lines: list[str] = []
    report = await run_bench(SMOKE, tmp_path, say=lines.append)
    data = report.data

    for concurrency in SMOKE.ack_concurrency:
        level = data["ack"]["levels"][str(concurrency)]
        for target in ("bridge", "bolt"):
            assert level[target]["requests"] == SMOKE.ack_requests
            assert level[target]["non_2xx"] == 0 and level[target]["warmup_non_2xx"] == 0
            assert 0 < level[target]["p50_ms"] <= level[target]["p99_ms"]
    behind_acks = data["ack"]["sends_behind_the_acks"]
    expected_ack_sends = len(SMOKE.ack_concurrency) * (SMOKE.ack_requests + SMOKE.ack_warmup)
    assert behind_acks["composed"] == behind_acks["sent"] == expected_ack_sends
    assert behind_acks["lost"] == behind_acks["doubled"] == 0

    outbound = data["outbound"]
    assert outbound["composed"] == outbound["sent"] == SMOKE.outbound_sends
    assert outbound["lost"] == outbound["doubled"] == 0
    assert outbound["highlevel_requests"]["send"] >= SMOKE.outbound_sends
    assert outbound["sends_per_second"] > 0

    inbound = data["inbound"]
    assert inbound["accepted"] == inbound["posts"] == SMOKE.inbound_webhooks
    assert inbound["lost"] == inbound["doubled"] == 0
    assert inbound["closed_loop"]["non_2xx"] == inbound["open_loop"]["non_2xx"] == 0

    storage = data["storage"]
    assert storage["threads"] == SMOKE.storage_threads
    for timing in storage["lookups"].values():
        assert timing["found"] == timing["samples"] == SMOKE.storage_samples
    assert all("SEARCH" in plan for plan in storage["query_plans"].values())

    memory = data["memory_mb"]
    assert 10 < memory["idle"] <= memory["peak"]
    assert data["bridge_exit_code"] == 0  # SIGTERM: a clean, graceful stop
    assert set(data["cpu_seconds"]) == {"ack", "outbound", "inbound"}

    table = render_table(report.rows)
    assert "ack c=5" in table and "find_thread_for_contact" in table and "bridge RSS idle" in table
    assert json.loads(report.to_json())["config"]["name"] == "smoke"
    assert any(line.startswith("bridge pid") for line in lines)
