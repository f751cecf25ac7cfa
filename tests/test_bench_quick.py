"""The benchmark's whole path on tiny numbers, so `python -m bench.run` cannot rot unnoticed.

Nothing here judges speed (CI times nothing): it checks that every phase ran in every column
(SQLite with one bridge process, PostgreSQL with three sharing a schema) against real bridge
processes, and that the bench's own bookkeeping adds up: every send and every webhook
accounted for exactly once, every look-up found, memory read from /proc, each PostgreSQL
column's schema dropped after it. Then the parts the run's figures rest on, one by one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest
from aiohttp import web

from bench._columns import choose_columns
from bench._config import QUICK, SQLITE, postgres_column
from bench._inbound import check_schedule
from bench._loadgen import LoadPlan, LoadResult, PlannedRequest, run_plan
from bench._outbound import pace, rate_from_first
from bench._report import Report, at_least, at_most, holds, render_table, reported
from bench._sandbox import BridgeDatabase, SpreadWebhooks
from bench.run import run_bench
from bot.sandbox.highlevel import HighLevelSimulator
from storage import open_store

SMOKE = dataclasses.replace(
    QUICK,
    name="smoke",
    ack_concurrency=(1, 5),
    ack_requests=21,
    ack_rounds=2,
    ack_warmup=5,
    outbound_sends=30,
    outbound_concurrency=5,
    capacity_sends=20,
    inbound_webhooks=40,
    inbound_rounds=2,
    inbound_concurrency=5,
    inbound_rate=200.0,
    open_loop_seconds=0.2,
    inbound_channels=3,
    send_channels=4,
    contacts=3,
    storage_threads=2000,
    storage_samples=200,
    settle_seconds=0.2,
    drain_timeout=30.0,
    # Three windows of a small, fast HighLevel limit: the outbound phase's waits, briefly.
    highlevel_rate_max=10,
    highlevel_rate_interval_ms=1000,
    # PostgreSQL x3 takes every path PostgreSQL x1 does, and the spreading over bridges.
    postgres_instances=(3,),
)
CLOSED_PORT_URL = "postgresql://postgres@127.0.0.1:1/test"


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


async def schema_exists(url: str, schema: str) -> bool:
    conn = await asyncpg.connect(url)
    try:
        found = await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema)
    finally:
        await conn.close()
    return found is not None


def check_column(data: dict[str, Any], instances: int) -> None:
    """Every phase of one column ran, and its bookkeeping adds up."""
    assert data["instances"] == instances
    assert data["idle_bridge_cpu_ms_per_second"] >= 0
    for concurrency in SMOKE.ack_concurrency:
        level = data["ack"]["levels"][str(concurrency)]
        for target in ("bridge", "bolt"):
            assert level[target]["requests"] == SMOKE.ack_requests
            assert level[target]["non_2xx"] == 0 and level[target]["warmup_non_2xx"] == 0
            assert 0 < level[target]["p50_ms"] <= level[target]["p99_ms"]
        assert len(level["per_round"]) == SMOKE.ack_rounds
        low, high = level["p99_ratio_over_rounds"]
        assert is_number(low) and is_number(high) and low <= high
    behind_acks = data["ack"]["sends_behind_the_acks"]
    expected_ack_sends = sum(
        SMOKE.ack_requests + SMOKE.ack_rounds * max(SMOKE.ack_warmup, 2 * concurrency)
        for concurrency in SMOKE.ack_concurrency
    )
    assert behind_acks["composed"] == behind_acks["sent"] == expected_ack_sends
    assert behind_acks["lost"] == behind_acks["doubled"] == 0

    outbound = data["outbound"]
    assert outbound["composed"] == outbound["sent"] == SMOKE.outbound_sends
    assert outbound["lost"] == outbound["doubled"] == 0
    assert outbound["highlevel_requests"]["send"] >= SMOKE.outbound_sends
    assert outbound["sends_per_second_from_first_send"] > 0
    assert (
        outbound["requests_per_second_from_first_request"]
        >= outbound["sends_per_second_from_first_send"]
    )
    assert 0 < outbound["pace_of_the_fastest_client"] <= 1.0
    assert outbound["highlevel_429s"] >= 0
    assert is_number(outbound["bridge_cpu_ms_per_send"])
    capacity = data["capacity"]
    assert capacity["composed"] == capacity["sent"] == SMOKE.capacity_sends
    assert capacity["lost"] == capacity["doubled"] == 0
    assert is_number(capacity["sends_per_second_first_command_to_last_send"])

    inbound = data["inbound"]
    assert inbound["webhooks"] > SMOKE.inbound_webhooks  # the closed loop's, then the open's
    assert inbound["accepted"] == inbound["posts"] == inbound["webhooks"]
    assert inbound["lost"] == inbound["doubled"] == 0
    assert inbound["floor_servers"] == instances
    for part in ("closed_loop", "open_loop", "floor_closed_loop", "floor_open_loop"):
        assert inbound[part]["non_2xx"] == 0
        assert is_number(inbound[part]["per_second"]) and is_number(inbound[part]["p99_ms"])
    assert inbound["floor_closed_loop"]["requests"] == SMOKE.inbound_webhooks
    assert len(inbound["ingest_ratio_over_rounds"]) == SMOKE.inbound_rounds
    assert is_number(inbound["ingest_ratio_to_floor"])
    assert is_number(inbound["bridge_cpu_ms_per_message"])
    assert is_number(inbound["open_loop"]["generator_start_lag_p99_ms"])

    memory = data["memory_mb"]
    assert len(memory["idle"]) == len(memory["after_load"]) == instances
    for idle, after, peak in zip(memory["idle"], memory["after_load"], memory["peak"], strict=True):
        assert 10 < idle <= peak and 10 < after <= peak
    assert data["bridge_exit_codes"] == [0] * instances  # SIGTERM: a clean, graceful stop
    assert set(data["cpu_seconds"]) == {"outbound", "capacity", "ack", "inbound"}
    assert all(spent["bridges"] > 0 for spent in data["cpu_seconds"].values())

    # The stack's floor: each bare part measured, and the sums are the sums of the parts.
    calls = outbound["calls_per_send"]
    assert calls["highlevel"] >= 1 and calls["webhooks"] >= 1 and calls["slack_posts"] > 0
    assert data["ack"]["bolt_cpu_ms_per_ack"] > 0 and inbound["floor_cpu_ms_per_webhook"] > 0
    floor = data["stack_floor"]
    assert set(floor["cpu_ms_per_call"]) == {
        "highlevel_send_ms",
        "slack_post_ms",
        "slack_update_ms",
    }
    assert all(ms > 0 for ms in floor["cpu_ms_per_call"].values())
    assert floor["send_ms"] == pytest.approx(sum(floor["send_parts_ms"].values()))
    assert floor["inbound_ms"] == pytest.approx(sum(floor["inbound_parts_ms"].values()))


@pytest.mark.slow  # a whole quick bench, three columns: 40 to 60 s
async def test_the_smallest_bench_run_measures_every_phase_in_every_column(
    tmp_path: Path, postgres_url: str
) -> None:
    lines: list[str] = []
    report = await run_bench(SMOKE, tmp_path, say=lines.append, postgres_url=postgres_url)
    data = report.data

    assert [column.key for column in report.columns] == ["sqlite-1", "postgresql-3"]
    for column in report.columns:
        check_column(data["columns"][column.key], column.instances)
    assert data["columns"]["sqlite-1"]["database"].startswith("sqlite:///")
    query = urlsplit(data["columns"]["postgresql-3"]["database"]).query
    schema = parse_qs(query)["search_path"][0]
    assert schema.startswith("bench_postgresql_3_")
    assert not await schema_exists(postgres_url, schema)  # dropped after its column

    storage = data["storage"]
    assert storage["threads"] == SMOKE.storage_threads
    for timing in storage["lookups"].values():
        assert timing["found"] == timing["samples"] == SMOKE.storage_samples
    assert all("SEARCH" in plan for plan in storage["query_plans"].values())

    table = render_table(report.rows, report.columns)
    header = table.splitlines()[0]
    assert "SQLite x1" in header and "PostgreSQL x3" in header
    for metric in (
        "ack c=5",
        "find_thread_for_contact",
        "bridge RSS idle",
        "bridge CPU per send",
        "bridge CPU per inbound message",
        "RSS after the load",
        "outbound 429s",
        "ceiling lifted",
        "floor",
    ):
        assert metric in table
    per_send = next(row for row in report.rows if row.metric.startswith("bridge CPU per send"))
    assert set(per_send.cells) == {"sqlite-1", "postgresql-3"}
    assert all(cell.verdict for cell in per_send.cells.values())  # met, or missed xN
    assert json.loads(report.to_json())["config"]["name"] == "smoke"
    assert any(line.startswith("PostgreSQL x3: bridge pid") for line in lines)


async def test_a_postgresql_that_does_not_answer_leaves_the_sqlite_column_and_one_loud_line() -> (
    None
):
    columns, problem = await choose_columns(SMOKE, CLOSED_PORT_URL)
    assert columns == [SQLITE]
    assert problem is not None and problem.startswith("!!! PostgreSQL at ")
    assert "does not answer" in problem and "\n" not in problem
    assert await choose_columns(SMOKE, None) == ([SQLITE], None)


async def test_a_postgresql_that_answers_gets_a_column_per_instance_count(
    postgres_url: str,
) -> None:
    columns, problem = await choose_columns(QUICK, postgres_url)
    assert problem is None
    assert columns == [SQLITE, postgres_column(1), postgres_column(3)]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_the_bridges_are_busy_while_an_acknowledged_send_is_not_yet_queued(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'bridge.sqlite3'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    store = await open_store(url)  # the bridge's own, which creates the schema
    database = await BridgeDatabase.open(url)
    try:
        assert not await database.busy()
        # What the bridge saves before it acks a send; its outbox entry comes later.
        await store.open_intent(
            idempotency_key="k1",
            kind="quick_send",
            team_id="T0",
            channel_id="C0",
            slack_user_id="U0",
            payload={},
        )
        assert await database.busy()
    finally:
        await database.close()
        await store.close()


@dataclasses.dataclass
class Receivers:
    urls: list[str]
    hits: list[int]


@pytest.fixture
async def receivers() -> AsyncIterator[Receivers]:
    """Three tiny HTTP servers that count the POSTs each gets."""
    hits = [0, 0, 0]
    runners: list[web.AppRunner] = []
    urls: list[str] = []
    for index in range(3):

        async def count(_: web.Request, index: int = index) -> web.Response:
            hits[index] += 1
            return web.Response(status=200)

        app = web.Application()
        app.router.add_post("/hook", count)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        host, port = runner.addresses[0][:2]
        urls.append(f"http://{host}:{port}/hook")
    try:
        yield Receivers(urls, hits)
    finally:
        await asyncio.gather(*(runner.cleanup() for runner in runners))


async def test_the_load_generator_spreads_its_requests_round_robin(receivers: Receivers) -> None:
    plan = LoadPlan(
        urls=receivers.urls,
        concurrency=4,
        requests=[PlannedRequest(body="{}") for _ in range(30)],
        warmup=6,
    )
    result = await run_plan(plan)
    assert result.ok == 24
    assert receivers.hits == [10, 10, 10]


async def test_highlevel_webhooks_go_to_the_bridges_in_turn(receivers: Receivers) -> None:
    highlevel = HighLevelSimulator()
    spread = SpreadWebhooks(highlevel.webhooks, highlevel.rng)
    highlevel.webhooks = spread  # before start: the simulator starts the sender it has then
    await highlevel.start()
    try:
        spread.targets = receivers.urls
        highlevel.webhook_url = receivers.urls[0]
        contact = highlevel.add_contact("Spread", "Bench", phone="+14155550199")
        for i in range(6):
            await highlevel.customer_reply(contact.id, "SMS", f"reply {i}")
        await highlevel.drain_webhooks()
        assert receivers.hits == [2, 2, 2]
        # No URL still means: deliver nowhere (how the bench collects signed webhooks).
        highlevel.webhook_url = None
        await highlevel.customer_reply(contact.id, "SMS", "kept")
        await highlevel.drain_webhooks()
        assert receivers.hits == [2, 2, 2]
        assert highlevel.webhook_deliveries[-1].outcome == "no_url"
    finally:
        await highlevel.stop()


def test_each_figure_says_met_or_by_how_much_it_missed() -> None:
    assert at_most(2.9, 3.0, "2.90 ms").verdict == "met"
    assert at_most(4.5, 3.0, "4.50 ms").verdict == "missed x1.50"
    assert at_least(0.4, 0.8, "x0.40").verdict == "missed x2.00"
    assert at_least(0.9, 0.8, "x0.90", also=False).verdict == "missed"  # a non-2xx, say
    assert at_least(0.0, 0.8, "0/s").verdict == "missed xinf"
    assert holds(False, "1 / 0").verdict == "missed"
    assert reported("55/s").verdict == ""

    report = Report(SMOKE)
    pg3 = postgres_column(3)
    report.columns = [SQLITE, pg3]
    report.add(SQLITE, "bridge CPU per send", "<= 3.0 ms", at_most(4.5, 3.0, "4.50 ms"))
    report.add(pg3, "bridge CPU per send", "<= 3.0 ms", at_most(2.0, 3.0, "2.00 ms"))
    report.add(SQLITE, "database size", "(reported)", reported("40 MB"))
    lines = render_table(report.rows, report.columns).splitlines()
    assert lines[0].split() == ["metric", "target", "SQLite", "x1", "PostgreSQL", "x3"]
    assert "4.50 ms  missed x1.50" in lines[2] and "2.00 ms  met" in lines[2]
    assert lines[3].rstrip().endswith("-")  # not measured in that column
    assert report.missed


def test_outbound_is_judged_from_the_first_send_not_the_best_window() -> None:
    # One slow second (10 sends), then the ceiling (100 per second) for five seconds: the best
    # window says 100/s; from the first send, the five whole seconds held 10 + 400 sends.
    slow = [i / 10 for i in range(10)]
    fast = [1.0 + i / 100 for i in range(500)]
    assert rate_from_first([*slow, *fast], interval=1.0) == pytest.approx(410 / 5)


def test_the_pace_counts_the_gaps_between_windows_and_the_last_one() -> None:
    # 250 sends under 100 per 10 s: the fastest client needs 20 s (100, 100 and 50 at 0, 10
    # and 20 s). One that waits 10.5 s between windows needs 21 s.
    fastest = [10.0 * (i // 100) + i % 100 * 1e-4 for i in range(250)]
    margin = [10.5 * (i // 100) + i % 100 * 1e-4 for i in range(250)]
    assert pace(fastest, limit=100, interval=10.0) == pytest.approx(1.0, abs=1e-3)
    assert pace(margin, limit=100, interval=10.0) == pytest.approx(20 / 21, abs=1e-3)
    # The rate from the first send sees whole windows only: both look like the ceiling.
    assert rate_from_first(margin, interval=10.0) == pytest.approx(10.0)
    assert math.isnan(pace(fastest[:100], limit=100, interval=10.0))  # one window: no pace


def test_a_load_generator_behind_its_schedule_makes_the_run_not_valid() -> None:
    report = Report(SMOKE)
    on_time = LoadResult([0.001], [200], 0.0, 1.0, [], start_lag_p99=0.001)
    late = LoadResult([0.001], [200], 0.0, 1.0, [], start_lag_p99=0.050)
    check_schedule(report, on_time, "the bridge", 100.0)
    assert report.invalid == []
    check_schedule(report, late, "the bridge", 100.0)
    assert len(report.invalid) == 1 and "fell behind" in report.invalid[0]
