"""QueueLooks: the claims and next-due look-ups of a queue's slots, joined while one is in flight.

A wake makes every idle slot look at once; each look is a store round trip, mostly to find what
the first one found. These tests hold a look in flight (an event, never a clock) and count the
looks that reach the store. A look that takes nothing also brings the next due time (as the
store's `claim_next_or_due` does), so the slot's next_due that follows costs no round trip.
"""

from __future__ import annotations

import asyncio

import pytest

from bot.workers import QueueLooks


class Queue:
    """A store's claim and next_due, each held until the test lets it answer."""

    def __init__(self, items: list[str]) -> None:
        self.items = items
        self.claims = 0
        self.due_asks = 0
        self.release = asyncio.Event()
        self.fail_next_due = False

    async def claim(self) -> tuple[str | None, float | None]:
        self.claims += 1
        await self.release.wait()
        await asyncio.sleep(0)  # a store round trip always suspends the caller
        if self.items:
            return self.items.pop(0), None
        return None, 77.0  # the due time the store found with its empty claim

    async def next_due(self) -> float | None:
        self.due_asks += 1
        await self.release.wait()
        if self.fail_next_due:
            self.fail_next_due = False
            raise RuntimeError("database busy")
        return 123.0


async def _all_waiting() -> None:
    for _ in range(5):
        await asyncio.sleep(0)  # let every task reach its await (no time passes)


async def test_claims_made_while_one_finds_nothing_find_nothing_without_asking() -> None:
    queue = Queue([])
    looks = QueueLooks(queue.claim, queue.next_due)
    claims = [asyncio.create_task(looks.claim()) for _ in range(4)]
    await _all_waiting()
    queue.release.set()
    assert await asyncio.gather(*claims) == [None] * 4
    assert queue.claims == 1


async def test_after_a_claim_that_took_an_item_the_others_claim_for_themselves() -> None:
    queue = Queue(["a", "b"])
    looks = QueueLooks(queue.claim, queue.next_due)
    claims = [asyncio.create_task(looks.claim()) for _ in range(4)]
    await _all_waiting()
    queue.release.set()
    assert sorted(map(str, await asyncio.gather(*claims))) == ["None", "None", "a", "b"]
    assert queue.claims == 3  # a, b, then one that found nothing for the last two


async def test_a_cancelled_claim_lets_the_waiting_ones_claim() -> None:
    queue = Queue(["a"])
    looks = QueueLooks(queue.claim, queue.next_due)
    first = asyncio.create_task(looks.claim())
    await _all_waiting()
    second = asyncio.create_task(looks.claim())
    await _all_waiting()
    first.cancel()
    await _all_waiting()
    queue.release.set()
    assert await second == "a"
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_next_due_asked_while_another_is_in_flight_takes_its_answer() -> None:
    queue = Queue([])
    looks = QueueLooks(queue.claim, queue.next_due)
    asks = [asyncio.create_task(looks.next_due()) for _ in range(3)]
    await _all_waiting()
    queue.release.set()
    assert await asyncio.gather(*asks) == [123.0] * 3
    assert queue.due_asks == 1


async def test_when_the_joined_next_due_fails_the_others_ask_for_themselves() -> None:
    queue = Queue([])
    queue.fail_next_due = True
    looks = QueueLooks(queue.claim, queue.next_due)
    asks = [asyncio.create_task(looks.next_due()) for _ in range(3)]
    await _all_waiting()
    queue.release.set()
    outcomes = await asyncio.gather(*asks, return_exceptions=True)
    assert isinstance(outcomes[0], RuntimeError)
    assert outcomes[1:] == [123.0, 123.0]


async def test_next_due_after_a_claim_that_took_nothing_is_that_looks_answer() -> None:
    queue = Queue([])
    queue.release.set()
    looks = QueueLooks(queue.claim, queue.next_due)
    claims = [asyncio.create_task(looks.claim()) for _ in range(3)]
    assert await asyncio.gather(*claims) == [None] * 3
    assert await asyncio.gather(*(looks.next_due() for _ in range(3))) == [77.0] * 3
    assert (queue.claims, queue.due_asks) == (1, 0)


async def test_a_claim_that_took_an_item_leaves_next_due_to_the_store() -> None:
    queue = Queue([])
    queue.release.set()
    looks = QueueLooks(queue.claim, queue.next_due)
    assert await looks.claim() is None
    queue.items.append("a")
    assert await looks.claim() == "a"
    # The empty look's answer is older than this claim: it is not given again.
    assert await looks.next_due() == 123.0
    assert queue.due_asks == 1
