"""`/metrics` and `/readyz` of a real bridge (issue 12, "Operating it"): both simulators, real
HTTP scrapes parsed by prometheus_client, real SQLite files, a real read-only disk and a real
newer program migrating the database under a running instance."""

from __future__ import annotations

import asyncio
import logging
import signal
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from bot.sandbox.highlevel import ADA_LOVELACE_ID
from bot.sandbox.slack import SlackSimulator
from bot.sandbox.stack import AGENT_USER, SALES_CHANNEL, SandboxStack
from storage import LATEST_VERSION, MIGRATIONS, Migration, SqliteStore
from tests._real_failures import no_file_writes
from tests._serve_process import ServeProcess, health_answer, serve_env
from tests.e2e.conftest import eventually, stack, stack_overrides
from tests.e2e.test_outbound import action_ids, quick_send, roots, went_out

ADA_PHONE = "+14155550100"
ADA_EMAIL = "ada@example.com"
TEXTS = ("metrics first hello", "metrics second hello", "metrics refused one")
REPLY = "metrics customer answer"
__all__ = ["stack", "stack_overrides"]  # the e2e fixtures: a real bridge on both simulators


async def scrape(http: httpx.AsyncClient, url: str) -> tuple[str, list[Sample]]:
    response = await http.get(f"{url}/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples = [
        sample
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    ]
    return response.text, samples


def value(samples: list[Sample], name: str, **labels: str) -> float | None:
    found = [s.value for s in samples if s.name == name and labels.items() <= s.labels.items()]
    return sum(found) if found else None


def outbox_in_database(database: Path) -> dict[str, int]:
    """Counted straight from the file, by another connection: not through the store."""
    conn = sqlite3.connect(database)
    try:
        rows = conn.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall()
    finally:
        conn.close()
    return {state: count for state, count in rows}


@pytest.mark.slow  # about 8 to 10 s: make test-slow (CI runs it)
async def test_metrics_count_sends_requests_errors_and_queues_without_customer_data(
    stack: SandboxStack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.app")
    await stack.stop_bridge()  # restarted with the log captured from its start
    await stack.start_bridge()
    # Slack rate-limits the first post once and fails the first update once (both retried).
    stack.slack.faults.rate_limit_next("chat.postMessage")
    stack.slack.faults.server_error_next("chat.update")
    await quick_send(stack, f"+1 415 555 0100 {TEXTS[0]}")
    await eventually(lambda: roots(stack) and went_out(roots(stack)[0]), within=15)
    await quick_send(stack, f"+1 415 555 0100 {TEXTS[1]}")
    await eventually(
        lambda: (
            (t := stack.slack.thread(SALES_CHANNEL, roots(stack)[0].ts))
            and len(t) == 2
            and went_out(t[1])
        ),
        within=15,
    )
    # Ada turns DND on in HighLevel: HighLevel itself refuses the third send.
    stack.highlevel.contacts[ADA_LOVELACE_ID].dnd_settings = {"SMS": {"status": "active"}}
    await quick_send(stack, f"+1 415 555 0100 {TEXTS[2]}")
    await eventually(
        lambda: (
            (t := stack.slack.thread(SALES_CHANNEL, roots(stack)[0].ts))
            and len(t) == 3
            and "retry" in action_ids(t[2])
        ),
        within=15,
    )
    await stack.highlevel.customer_reply(ADA_LOVELACE_ID, "SMS", REPLY)
    await eventually(
        lambda: any(
            REPLY in (m.text or "") or REPLY in str(m.blocks)
            for m in stack.slack.thread(SALES_CHANNEL, roots(stack)[0].ts)
        ),
        within=15,
    )

    async with httpx.AsyncClient(timeout=10) as http:
        samples: list[Sample] = []

        async def settled() -> bool:
            nonlocal samples
            _, samples = await scrape(http, stack.bridge_url)
            return value(samples, "ghl_bridge_inbound_queue_depth") == 0

        await eventually_async(settled)
        text, samples = await scrape(http, stack.bridge_url)

    assert value(samples, "ghl_bridge_sends_total", outcome="sent") == 2
    assert value(samples, "ghl_bridge_sends_total", outcome="failed") == 1
    assert value(samples, "ghl_bridge_sends_total", outcome="unknown") == 0
    # The outbox as the database holds it (sent entries are the send counter's business).
    database = outbox_in_database(stack.database_path)
    assert database == {"sent": 2, "failed": 1}
    for state in ("pending", "sending", "unknown", "failed"):
        assert value(samples, "ghl_bridge_outbox_entries", state=state) == database.get(state, 0)
    assert value(samples, "ghl_bridge_inbound_queue_depth", state="pending") == 0
    assert value(samples, "ghl_bridge_inbound_queue_depth", state="processing") == 0
    assert value(samples, "ghl_bridge_inbound_oldest_pending_age_seconds") == 0
    location = stack.highlevel.location_id
    posts = value(
        samples, "ghl_bridge_highlevel_request_duration_seconds_count", location_id=location
    )
    sends = value(
        samples,
        "ghl_bridge_highlevel_request_duration_seconds_count",
        location_id=location,
        method="POST",
    )
    assert posts is not None and sends is not None and posts >= sends >= 3
    assert value(samples, "ghl_bridge_highlevel_rate_limited_total", location_id=location) is None
    assert value(samples, "ghl_bridge_slack_rate_limited_total", method="chat.postMessage") == 1
    assert (
        value(
            samples,
            "ghl_bridge_slack_api_errors_total",
            method="chat.postMessage",
            error="ratelimited",
        )
        == 1
    )
    assert (
        value(
            samples,
            "ghl_bridge_slack_api_errors_total",
            method="chat.update",
            error="internal_error",
        )
        == 1
    )
    assert value(samples, "ghl_bridge_lease_takeovers_total") == 0
    assert value(samples, "ghl_bridge_scrape_errors_total") == 0
    info = [s for s in samples if s.name == "ghl_bridge_instance_info"]
    assert len(info) == 1 and info[0].labels["version"]
    instance_id = info[0].labels["instance_id"]
    assert any(
        r.name == "bot.app" and f"instance {instance_id} " in r.getMessage() for r in caplog.records
    )
    # Nothing about the customer, the person or the credentials, anywhere in the text.
    assert stack.settings is not None
    secrets = {
        ADA_PHONE,
        ADA_PHONE[2:],
        ADA_EMAIL,
        ADA_LOVELACE_ID,
        AGENT_USER,
        REPLY,
        *TEXTS,
        stack.slack.bot_token,
        stack.highlevel.token,
    }
    leaked = {secret for secret in secrets if secret in text}
    assert not leaked, leaked
    label_values = {v for s in samples for v in s.labels.values()}
    assert not {v for v in label_values for secret in secrets if secret in v}


async def eventually_async(check: Callable[[], Awaitable[bool]], *, within: float = 15.0) -> None:
    """Poll an async `check` (a scrape per poll) until it is true."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not settled within {within} s")
        await asyncio.sleep(0.1)


async def test_a_scrape_while_the_database_is_locked_serves_the_rest_and_counts_it(
    stack: SandboxStack,
) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        _, samples = await scrape(http, stack.bridge_url)
        assert value(samples, "ghl_bridge_outbox_entries", state="pending") == 0
        # Another program holds the write lock: the bridge's next write waits for it (up to
        # its busy timeout) while holding the store, and the scrape's reads queue behind it.
        other = sqlite3.connect(
            stack.database_path, isolation_level=None, check_same_thread=False, timeout=20
        )
        try:
            # On a thread: the bridge runs on this event loop and may have to finish a write.
            await asyncio.to_thread(other.execute, "BEGIN IMMEDIATE")
            await http.get(f"{stack.bridge_url}/healthz")  # starts the health probe's write
            _, samples = await scrape(http, stack.bridge_url)
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert value(samples, "ghl_bridge_outbox_entries") is None
        assert value(samples, "ghl_bridge_inbound_queue_depth") is None
        assert value(samples, "ghl_bridge_scrape_errors_total", part="outbox") == 1
        assert value(samples, "ghl_bridge_scrape_errors_total", part="inbound") == 1
        assert value(samples, "ghl_bridge_instance_info") == 1  # the rest is served
        assert value(samples, "ghl_bridge_sends_total", outcome="sent") == 0

        async def back() -> bool:
            _, now = await scrape(http, stack.bridge_url)
            return value(now, "ghl_bridge_outbox_entries", state="pending") == 0

        await eventually_async(back)


# ----------------------------------------------------------------------------- /readyz


@pytest.fixture
async def slack() -> AsyncIterator[SlackSimulator]:
    async with SlackSimulator() as simulator:
        yield simulator


async def ready_answer(
    http: httpx.AsyncClient, url: str, status: int, *, within: float = 20.0
) -> dict[str, str]:
    """Poll `/readyz` until it answers `status`; its JSON body."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        response = await http.get(f"{url}/readyz")
        if response.status_code == status:
            body: dict[str, str] = response.json()
            return body
        if loop.time() > deadline:
            raise AssertionError(f"/readyz never answered {status}: {response.text}")
        await asyncio.sleep(0.1)


async def test_readyz_says_ready_and_why_not_while_the_database_takes_no_writes(
    tmp_path: Path, slack: SlackSimulator
) -> None:
    database = tmp_path / "bridge.sqlite3"
    env = serve_env(database, slack_api_url=slack.api_url, slack_bot_token=slack.bot_token)
    async with ServeProcess(env, tmp_path) as bridge, httpx.AsyncClient(timeout=10) as http:
        url = await bridge.url()
        assert await ready_answer(http, url, 200) == {"status": "ready"}
        assert bridge.process is not None
        with no_file_writes(bridge.process.pid):
            answer = await ready_answer(http, url, 503)
            assert answer["status"] == "not ready"
            assert answer["reason"].startswith("the database cannot be written (")
            assert "\n" not in answer["reason"]
        assert await ready_answer(http, url, 200) == {"status": "ready"}
        bridge.send_signal(signal.SIGTERM)
        assert await bridge.exit_code() == 0
    assert "Traceback" not in bridge.output


async def test_readyz_is_503_once_a_newer_program_migrated_the_database(
    tmp_path: Path, slack: SlackSimulator
) -> None:
    database = tmp_path / "bridge.sqlite3"
    env = serve_env(database, slack_api_url=slack.api_url, slack_bot_token=slack.bot_token)
    async with ServeProcess(env, tmp_path) as bridge, httpx.AsyncClient(timeout=10) as http:
        url = await bridge.url()
        assert await ready_answer(http, url, 200) == {"status": "ready"}
        # A newer version of the program starts on the same database and migrates it forward.
        newer = Migration(
            version=LATEST_VERSION + 1,
            description="a table only a newer program knows",
            statements=("CREATE TABLE from_the_future (id INTEGER PRIMARY KEY)",),
        )
        async with SqliteStore(database, migrations=(*MIGRATIONS, newer)) as store:
            assert await store.schema_version() == LATEST_VERSION + 1
        answer = await ready_answer(http, url, 503)
        assert answer == {
            "status": "not ready",
            "reason": f"the database schema is version {LATEST_VERSION + 1}, newer than this "
            f"program knows ({LATEST_VERSION}): run the newer version",
        }
        # Still alive: liveness is not readiness.
        assert await health_answer(http, url, 200) == {"status": "ok"}
        bridge.send_signal(signal.SIGTERM)
        assert await bridge.exit_code() == 0
