"""`waiting_threads`: the Home tab's list, scoped by workspace and sub-account, on both backends.

The waiting state (migration 14) is written by the inbox's own store method, `mark_waiting`.
"""

from __future__ import annotations

import itertools
import json

from storage import Store, ThreadRecord
from tests.storage._support import START

TEAM = "T1"
_TS = itertools.count(1)


async def _thread(
    store: Store,
    contact_id: str,
    *,
    team_id: str = TEAM,
    location_id: str = "loc-1",
    channel_id: str = "C1",
    thread_ts: str | None = None,
) -> ThreadRecord:
    return await store.upsert_thread(
        team_id=team_id,
        channel_id=channel_id,
        location_id=location_id,
        contact_id=contact_id,
        thread_ts=thread_ts or f"1700000000.{next(_TS):06d}",
        contact_label=contact_id.title(),
    )


async def _wait(store: Store, thread: ThreadRecord, since: float) -> None:
    assert await store.mark_waiting(thread.id, since) is not None


async def _customer_says(
    store: Store, contact_id: str, body: str, *, location_id: str = "loc-1", at: float
) -> None:
    stored = await store.enqueue_inbound(
        source="webhook",
        event_type="InboundMessage",
        conversation_key=f"{location_id}:{contact_id}",
        payload={
            "type": "InboundMessage",
            "locationId": location_id,
            "contactId": contact_id,
            "messageId": f"m-{contact_id}-{at}",
            "messageType": "SMS",
            "body": body,
        },
        dedupe_keys=[f"m-{contact_id}-{at}"],
        ttl_seconds=60,
        sort_at=at,
    )
    assert stored is not None


async def test_only_waiting_threads_oldest_first_with_their_newest_customer_message(
    store: Store,
) -> None:
    ada = await _thread(store, "ada")
    grace = await _thread(store, "grace")
    alan = await _thread(store, "alan")
    answered = await _thread(store, "katherine")
    await _wait(store, grace, START - 300)
    await _wait(store, ada, START - 100)
    await _wait(store, alan, START - 200)
    await _wait(store, answered, START - 400)
    assert await store.clear_waiting(answered.id) is not None  # someone answered
    await _customer_says(store, "ada", "first", at=START - 120)
    await _customer_says(store, "ada", "second", at=START - 100)
    await _customer_says(store, "katherine", "thanks", at=START - 50)
    # An outbound message and another sub-account's message of the same contact id: not it.
    await store.enqueue_inbound(
        source="webhook",
        event_type="OutboundMessage",
        conversation_key="loc-1:ada",
        payload={"messageId": "out-1", "contactId": "ada", "body": "our answer"},
        dedupe_keys=["out-1"],
        ttl_seconds=60,
        sort_at=START - 10,
    )
    await _customer_says(store, "ada", "elsewhere", location_id="loc-2", at=START)

    waiting = await store.waiting_threads(TEAM, ["loc-1"], per_location=10)

    assert [w.thread_id for w in waiting] == [grace.id, alan.id, ada.id]
    assert answered.id not in {w.thread_id for w in waiting}
    first = waiting[-1]
    assert (first.contact_label, first.channel_id, first.thread_ts) == ("Ada", "C1", ada.thread_ts)
    assert first.waiting_since == START - 100 and first.waiting_count == 3
    assert first.last_event_type == "InboundMessage"
    assert first.last_payload is not None
    assert json.loads(first.last_payload)["body"] == "second"
    assert first.last_message_at == START - 100
    assert waiting[0].last_payload is None  # Grace never wrote (as far as the store knows)


async def test_another_workspace_and_another_sub_account_are_never_read(store: Store) -> None:
    mine = await _thread(store, "ada")
    theirs = await _thread(store, "ada", team_id="T2")
    other_account = await _thread(store, "grace", location_id="loc-2")
    for thread in (mine, theirs, other_account):
        await _wait(store, thread, START)

    assert [w.thread_id for w in await store.waiting_threads(TEAM, ["loc-1"], per_location=5)] == [
        mine.id
    ]
    assert [w.thread_id for w in await store.waiting_threads("T2", ["loc-1"], per_location=5)] == [
        theirs.id
    ]
    both = await store.waiting_threads(TEAM, ["loc-1", "loc-2"], per_location=5)
    assert sorted(w.thread_id for w in both) == sorted([mine.id, other_account.id])
    assert await store.waiting_threads(TEAM, [], per_location=5) == []
    assert await store.waiting_threads("T3", ["loc-1", "loc-2"], per_location=5) == []


async def test_at_most_per_location_shown_but_all_counted(store: Store) -> None:
    threads = [await _thread(store, f"contact-{n}") for n in range(5)]
    for n, thread in enumerate(threads):
        await _wait(store, thread, START + n)
    other = await _thread(store, "zed", location_id="loc-2")
    await _wait(store, other, START)
    # A thread without its Slack root yet cannot be linked to: not listed.
    rootless = await store.upsert_thread(
        team_id=TEAM, channel_id="C1", location_id="loc-1", contact_id="no-root"
    )
    await _wait(store, rootless, START - 1000)

    waiting = await store.waiting_threads(TEAM, ["loc-1", "loc-2"], per_location=2)

    assert [(w.location_id, w.thread_id) for w in waiting] == [
        ("loc-1", threads[0].id),
        ("loc-1", threads[1].id),
        ("loc-2", other.id),
    ]
    assert [w.waiting_count for w in waiting] == [5, 5, 1]


async def test_a_purged_message_is_returned_as_purged(store: Store) -> None:
    ada = await _thread(store, "ada")
    await _wait(store, ada, START)
    await _customer_says(store, "ada", "my address is 1 Main St", at=START)
    claimed = await store.claim_inbound(now=START + 10)
    assert claimed is not None
    await store.finish_inbound(claimed.id)
    assert await store.purge_before(START + 10**6) >= 1

    (waiting,) = await store.waiting_threads(TEAM, ["loc-1"], per_location=5)

    assert waiting.last_payload is not None
    assert json.loads(waiting.last_payload) == {"purged": True}
