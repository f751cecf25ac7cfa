"""InboundPoller against the HighLevel simulator and a real SQLite store.

What each poll queues is read back the way the inbound worker takes it (`claim_inbound`), so
these tests see the order in which a conversation's messages would be shown in Slack.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from bot.highlevel import HighLevelClient, RateLimiter
from bot.inbound import polling
from bot.inbound.polling import InboundPoller
from bot.inbound.service import InboundService
from bot.sandbox.highlevel import ADA_LOVELACE_ID, HighLevelSimulator, SimMessage
from storage import Store, open_store

LIST_PATH_SUFFIX = "/messages"


@pytest.fixture
async def sim() -> AsyncIterator[HighLevelSimulator]:
    simulator = HighLevelSimulator()
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite:///{tmp_path / 'bridge.sqlite3'}")
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def poller(sim: HighLevelSimulator, store: Store) -> AsyncIterator[InboundPoller]:
    client = HighLevelClient(
        token=SecretStr(sim.token),
        location_id=sim.location_id,
        base_url=sim.base_url,
        limiter=RateLimiter(max_requests=100, interval=1.0),
        timeout=httpx.Timeout(5.0),
    )
    service = InboundService(store=store, wake_worker=lambda: None)
    try:
        yield InboundPoller(highlevel=client, inbound=service, store=store, interval=3600)
    finally:
        await client.aclose()


def minutes_ago(minutes: float) -> datetime:
    return datetime.now(UTC) - timedelta(minutes=minutes)


async def reply(
    sim: HighLevelSimulator, text: str, at: datetime, contact: str = ADA_LOVELACE_ID
) -> SimMessage:
    """A customer SMS sent at `at` (HighLevel's dateAdded), listed after every earlier one."""
    message = await sim.customer_reply(contact, "SMS", text)
    message.date_added = at
    return message


async def queued(store: Store) -> list[str]:
    """Bodies of the queued events in the order the inbound worker takes them (all of them)."""
    bodies: list[str] = []
    while (event := await store.claim_inbound(now=time.time() + 3600)) is not None:
        bodies.append(event.payload["body"])
        await store.finish_inbound(event.id)
    return bodies


def list_requests(sim: HighLevelSimulator) -> list[dict[str, str]]:
    return [
        dict(r.query)
        for r in sim.requests
        if r.method == "GET" and r.path.endswith(LIST_PATH_SUFFIX)
    ]


async def test_a_conversations_new_messages_are_queued_oldest_first(
    sim: HighLevelSimulator, store: Store, poller: InboundPoller
) -> None:
    for n, text in enumerate(["one", "two", "three"]):
        await reply(sim, text, minutes_ago(3 - n))
    assert await poller.poll_once() == 3
    assert await queued(store) == ["one", "two", "three"]


async def test_messages_that_straddle_two_polls_are_each_queued_once_in_order(
    sim: HighLevelSimulator, store: Store, poller: InboundPoller
) -> None:
    first = minutes_ago(2)
    await reply(sim, "one", first)
    second = await reply(sim, "two", first + timedelta(seconds=1))
    assert await poller.poll_once() == 2
    # "three" has the very same dateAdded as "two", the newest the first poll saw: a second
    # poll must not skip it as "already seen".
    await reply(sim, "three", second.date_added)
    await reply(sim, "four", second.date_added + timedelta(seconds=1))
    assert await poller.poll_once() == 2
    assert await poller.poll_once() == 0  # everything seen; nothing again
    assert await queued(store) == ["one", "two", "three", "four"]


async def test_more_than_a_page_of_new_messages_is_paged_through_in_order(
    sim: HighLevelSimulator, store: Store, poller: InboundPoller
) -> None:
    start = minutes_ago(5)
    await reply(sim, "before", start)
    assert await poller.poll_once() == 1
    assert await queued(store) == ["before"]
    texts = [f"msg {n:02d}" for n in range(45)]
    for n, text in enumerate(texts):
        await reply(sim, text, start + timedelta(seconds=1 + n))
    sim.requests.clear()
    assert await poller.poll_once() == 45
    assert await queued(store) == texts
    pages = list_requests(sim)
    # Three pages of 20: the third reaches the message the previous poll had seen.
    assert len(pages) == 3
    assert "lastMessageId" not in pages[0]
    assert all(page.get("lastMessageId") for page in pages[1:])


async def test_paging_is_bounded_and_says_what_it_left(
    sim: HighLevelSimulator,
    store: Store,
    poller: InboundPoller,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(polling, "MAX_PAGES_PER_CONVERSATION", 2)
    start = minutes_ago(5)
    texts = [f"msg {n:02d}" for n in range(45)]
    for n, text in enumerate(texts):
        await reply(sim, text, start + timedelta(seconds=n))
    with caplog.at_level(logging.WARNING, logger="bot.inbound.polling"):
        assert await poller.poll_once() == 40
    assert await queued(store) == texts[5:]
    assert "more than 40 messages since the last poll" in caplog.text
    assert len(list_requests(sim)) == 2


async def test_emails_and_texts_are_queued_in_the_order_they_were_sent(
    sim: HighLevelSimulator, store: Store, poller: InboundPoller
) -> None:
    # An email thread begun an hour ago: its conversation message keeps that dateAdded, and
    # only the emails that join it later are new.
    opening = await sim.customer_reply(ADA_LOVELACE_ID, "Email", "old question", subject="Q")
    thread = sim.messages[opening.thread_id]
    thread.date_added = opening.date_added = minutes_ago(60)
    assert await poller.poll_once() == 0  # before the first run's look-back
    await reply(
        sim,
        "sms first",
        minutes_ago(3),
    )
    email = await sim.customer_reply(ADA_LOVELACE_ID, "Email", "email second")
    email.date_added = minutes_ago(2)
    await reply(
        sim,
        "sms third",
        minutes_ago(1),
    )
    assert await poller.poll_once() == 3
    assert await queued(store) == ["sms first", "email second", "sms third"]


async def test_the_cursor_survives_and_a_seen_message_is_not_queued_again(
    sim: HighLevelSimulator, store: Store, poller: InboundPoller
) -> None:
    message = await reply(sim, "once", minutes_ago(1))
    assert await poller.poll_once() == 1
    stored = await store.kv_get(f"{polling.CURSOR_KEY}:{sim.location_id}")
    assert stored is not None
    # HighLevel's dates have milliseconds.
    assert float(stored) == pytest.approx(message.date_added.timestamp(), abs=0.001)
    assert await poller.poll_once() == 0
    assert await queued(store) == ["once"]


async def test_more_conversations_than_one_search_page_are_all_polled(
    sim: HighLevelSimulator, store: Store, poller: InboundPoller
) -> None:
    # 25 customers write since the last poll: HighLevel lists conversations 20 to a page.
    for n in range(25):
        contact = sim.add_contact(f"Customer{n:02d}", phone=f"+1415555{n:04d}")
        await reply(sim, f"hello from {n:02d}", minutes_ago(1), contact=contact.id)
    assert await poller.poll_once() == 25
    assert sorted(await queued(store)) == [f"hello from {n:02d}" for n in range(25)]
    searches = [r for r in sim.requests if r.method == "GET" and r.path.endswith("/search")]
    assert len(searches) == 2
