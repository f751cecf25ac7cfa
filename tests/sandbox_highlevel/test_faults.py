"""Fault injection: latency, 429 bursts, 5xx share, hangs, "stored, then 500", scope."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from bot.sandbox.highlevel import ADA_LOVELACE_ID, Faults, HighLevelSimulator
from tests.sandbox_highlevel.conftest import Receiver, api_headers

SMS = {"type": "SMS", "contactId": ADA_LOVELACE_ID, "message": "hello"}


async def test_latency_is_added(api: httpx.AsyncClient, sim: HighLevelSimulator) -> None:
    started = time.perf_counter()
    await api.get(f"/contacts/{ADA_LOVELACE_ID}")
    baseline = time.perf_counter() - started
    sim.faults.latency = 0.25
    started = time.perf_counter()
    response = await api.get(f"/contacts/{ADA_LOVELACE_ID}")
    slowed = time.perf_counter() - started
    assert response.status_code == 200
    assert slowed >= 0.25 > baseline


async def test_burst_429_hits_exactly_the_next_n(
    api: httpx.AsyncClient, sim: HighLevelSimulator
) -> None:
    sim.faults.burst_429 = 3
    statuses = [(await api.post("/conversations/messages", json=SMS)).status_code for _ in range(5)]
    assert statuses == [429, 429, 429, 200, 200]
    assert sim.faults.burst_429 == 0
    assert sim.sent_count() == 2  # a 429 stores nothing


async def test_injected_429_carries_rate_limit_headers(
    api: httpx.AsyncClient, sim: HighLevelSimulator
) -> None:
    sim.faults.burst_429 = 1
    response = await api.get(f"/contacts/{ADA_LOVELACE_ID}")
    assert response.status_code == 429
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert response.headers["X-RateLimit-Max"] == "100"


async def _statuses(seed: int, count: int) -> list[int]:
    sim = HighLevelSimulator(seed=seed, rate_limit_max=10_000, faults=Faults(error_rate=0.3))
    await sim.start()
    try:
        async with httpx.AsyncClient(base_url=sim.base_url, headers=api_headers(sim)) as client:
            return [
                (await client.get(f"/contacts/{ADA_LOVELACE_ID}")).status_code for _ in range(count)
            ]
    finally:
        await sim.stop()


async def test_error_rate_gives_a_seeded_share_of_500s() -> None:
    first = await _statuses(seed=7, count=120)
    again = await _statuses(seed=7, count=120)
    other = await _statuses(seed=8, count=120)
    assert set(first) == {200, 500}
    assert first == again  # same seed, same faults
    assert first != other
    share = first.count(500) / len(first)
    assert 0.18 < share < 0.42


async def test_error_next_with_custom_status_stores_nothing(
    api: httpx.AsyncClient, sim: HighLevelSimulator
) -> None:
    sim.faults.error_next = 1
    sim.faults.error_status = 503
    failed = await api.post("/conversations/messages", json=SMS)
    assert failed.status_code == 503
    assert sim.sent_count() == 0
    assert (await api.post("/conversations/messages", json=SMS)).status_code == 200


async def test_hang_outlasts_the_client_and_stores_nothing(
    api: httpx.AsyncClient, sim: HighLevelSimulator
) -> None:
    sim.faults.hang_next = 1
    sim.faults.hang_seconds = 30
    started = time.perf_counter()
    with pytest.raises(httpx.ReadTimeout):
        await api.post("/conversations/messages", json=SMS, timeout=0.3)
    assert time.perf_counter() - started < 5
    assert sim.sent_count() == 0
    for _ in range(100):  # the server notices the hang-up and drops the held request
        if sim.requests[0].status:
            break
        await asyncio.sleep(0.01)
    assert sim.requests[0].status == 499
    # The next request is served normally.
    assert (await api.post("/conversations/messages", json=SMS)).status_code == 200


async def test_hang_rate_is_seeded() -> None:
    sim = HighLevelSimulator(seed=3, faults=Faults(hang_rate=0.5, hang_seconds=30))
    await sim.start()
    try:
        async with httpx.AsyncClient(base_url=sim.base_url, headers=api_headers(sim)) as client:
            outcomes = []
            for _ in range(8):
                try:
                    # Only the answer may time out: a new connection after a hang must not
                    # count as one on a loaded machine.
                    response = await client.get(
                        f"/contacts/{ADA_LOVELACE_ID}", timeout=httpx.Timeout(0.15, connect=10.0)
                    )
                except httpx.ReadTimeout:
                    outcomes.append("hang")
                else:
                    outcomes.append(str(response.status_code))
    finally:
        await sim.stop()
    assert "hang" in outcomes and "200" in outcomes
    assert set(outcomes) == {"hang", "200"}


async def test_store_then_500_stores_and_fires_webhook(
    api: httpx.AsyncClient, sim: HighLevelSimulator, receiver: Receiver
) -> None:
    sim.webhook_url = receiver.url
    sim.faults.store_then_500_next = 1
    response = await api.post("/conversations/messages", json=SMS)
    assert response.status_code == 500
    # The double-send hazard: the message went out although the client saw a failure.
    conversation = sim.conversation_for(ADA_LOVELACE_ID)
    assert conversation is not None
    assert [m.body for m in sim.messages_for(conversation.id)] == ["hello"]
    await sim.drain_webhooks()
    assert len(receiver.bodies) == 1 and b'"OutboundMessage"' in receiver.bodies[0]


async def test_store_then_500_never_applies_to_look_ups(
    api: httpx.AsyncClient, sim: HighLevelSimulator
) -> None:
    sim.faults.store_then_500_next = 1
    assert (await api.get(f"/contacts/{ADA_LOVELACE_ID}")).status_code == 200
    assert sim.faults.store_then_500_next == 1  # still waiting for a send
    assert (await api.post("/conversations/messages", json=SMS)).status_code == 500


async def test_scope_sends_spares_other_requests(
    api: httpx.AsyncClient, sim: HighLevelSimulator
) -> None:
    sim.faults.scope = "sends"
    sim.faults.burst_429 = 1
    assert (await api.get(f"/contacts/{ADA_LOVELACE_ID}")).status_code == 200
    assert (await api.post("/conversations/messages", json=SMS)).status_code == 429
    assert (await api.post("/conversations/messages", json=SMS)).status_code == 200
