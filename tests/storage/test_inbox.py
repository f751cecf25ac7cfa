"""A conversation's state on its thread root (waiting, unread, star, assignee), on both backends."""

from __future__ import annotations

import asyncio

from storage import MessageDirection, Store
from storage._inbox import WaitingChange
from tests.storage._support import START, FakeClock


async def a_thread(store: Store, contact_id: str = "contact-a") -> int:
    thread = await store.upsert_thread(
        team_id="T1",
        channel_id="C1",
        location_id="loc-1",
        contact_id=contact_id,
        thread_ts=f"1700000000.{len(contact_id):06d}",
        conversation_id=f"conv-{contact_id}",
    )
    return thread.id


async def test_a_new_thread_waits_for_nobody_and_shows_nothing(store: Store) -> None:
    thread_id = await a_thread(store)
    state = await store.conversation_state(thread_id)
    assert state is not None
    assert (state.waiting_since, state.last_inbound_at, state.unread_count) == (None, None, None)
    assert not state.waiting and not state.unread and not state.starred
    assert state.assigned_to is None
    assert (state.team_id, state.location_id, state.conversation_id) == (
        "T1",
        "loc-1",
        "conv-contact-a",
    )
    assert await store.conversation_state(thread_id + 1000) is None


async def test_waiting_starts_at_the_first_unanswered_message_and_ends_when_answered(
    store: Store, clock: FakeClock
) -> None:
    thread_id = await a_thread(store)
    first = await store.mark_waiting(thread_id, START + 10)
    assert first is not None and first.changed
    assert first.state.waiting_since == START + 10
    # A second message while waiting: the marker stays, the wait keeps its start.
    second = await store.mark_waiting(thread_id, START + 20)
    assert second is not None and not second.changed
    assert second.state.waiting_since == START + 10
    assert second.state.last_inbound_at == START + 20
    # A late event of an older message never moves last_inbound_at back.
    older = await store.mark_waiting(thread_id, START + 5)
    assert older is not None and older.state.last_inbound_at == START + 20
    answered = await store.clear_waiting(thread_id)
    assert answered is not None and answered.changed
    assert answered.state.waiting_since is None
    assert answered.state.last_inbound_at == START + 20
    again = await store.clear_waiting(thread_id)
    assert again is not None and not again.changed
    # The next customer message starts a new wait.
    later = await store.mark_waiting(thread_id, START + 30)
    assert later is not None and later.changed and later.state.waiting_since == START + 30


async def test_waiting_writes_on_a_missing_thread_say_so(store: Store) -> None:
    assert await store.mark_waiting(424242, START) is None
    assert await store.clear_waiting(424242) is None
    assert await store.set_conversation_flags(424242, starred=True) is None
    assert await store.set_assigned_to(424242, "user-1") is None


async def test_concurrent_messages_start_one_wait(store: Store) -> None:
    thread_id = await a_thread(store)
    changes = await asyncio.gather(*(store.mark_waiting(thread_id, START + n) for n in range(1, 9)))
    assert sum(1 for c in changes if c is not None and c.changed) == 1
    state = await store.conversation_state(thread_id)
    assert state is not None and state.last_inbound_at == START + 8


async def test_flags_change_only_what_is_given_and_say_when_the_root_changes(
    store: Store,
) -> None:
    thread_id = await a_thread(store)
    unread = await store.set_conversation_flags(thread_id, unread_count=1)
    assert unread is not None and unread.changed and unread.state.unread_count == 1
    more = await store.set_conversation_flags(thread_id, unread_count=3)
    # Still unread: the count is kept, the root need not change.
    assert more is not None and not more.changed and more.state.unread_count == 3
    star = await store.set_conversation_flags(thread_id, starred=True)
    assert star is not None and star.changed
    assert star.state.starred and star.state.unread_count == 3
    both = await store.set_conversation_flags(thread_id, unread_count=0, starred=True)
    assert both is not None and both.changed
    assert both.state.unread_count == 0 and not both.state.unread and both.state.starred
    same = await store.set_conversation_flags(thread_id, unread_count=0, starred=True)
    assert same is not None and not same.changed
    unstar = await store.set_conversation_flags(thread_id, starred=False)
    assert unstar is not None and unstar.changed and not unstar.state.starred


async def test_each_thread_keeps_its_own_state(store: Store) -> None:
    ada, grace = await a_thread(store, "ada"), await a_thread(store, "grace")
    await store.mark_waiting(ada, START)
    await store.set_conversation_flags(grace, starred=True)
    ada_state, grace_state = (
        await store.conversation_state(ada),
        await store.conversation_state(grace),
    )
    assert ada_state is not None and grace_state is not None
    assert ada_state.waiting and not ada_state.starred
    assert not grace_state.waiting and grace_state.starred


async def test_assignee_is_kept_and_changes_are_told(store: Store) -> None:
    thread_id = await a_thread(store)
    first = await store.set_assigned_to(thread_id, "user-1")
    assert first is not None and first.changed and first.state.assigned_to == "user-1"
    same = await store.set_assigned_to(thread_id, "user-1")
    assert same is not None and not same.changed
    other = await store.set_assigned_to(thread_id, "user-2")
    assert other is not None and other.changed and other.state.assigned_to == "user-2"
    cleared = await store.set_assigned_to(thread_id, None)
    assert cleared is not None and cleared.changed and cleared.state.assigned_to is None
    again = await store.set_assigned_to(thread_id, None)
    assert again is not None and not again.changed


async def a_message(store: Store, thread_id: int, ghl_id: str) -> int:
    record, _created = await store.record_message(
        direction=MessageDirection.INBOUND, thread_id=thread_id, ghl_message_id=ghl_id
    )
    return record.id


async def test_a_shown_message_records_its_post_what_the_thread_learnt_and_the_wait(
    store: Store, clock: FakeClock
) -> None:
    thread_id = await a_thread(store)
    before = await store.get_thread(thread_id)
    assert before is not None
    message_id = await a_message(store, thread_id, "m-1")
    clock.advance(5)

    change = await store.record_shown(
        message_id,
        slack_channel_id="C1",
        slack_ts="1700000001.000100",
        thread_id=thread_id,
        waiting=WaitingChange.customer_wrote(START + 3),
        conversation_id="conv-new",
        channel_type="WhatsApp",
    )

    assert change is not None and change.changed
    assert (change.state.waiting_since, change.state.last_inbound_at) == (START + 3, START + 3)
    assert change.state.conversation_id == "conv-new"
    message = await store.get_message_by_ghl_id("m-1")
    assert message is not None
    assert (message.slack_channel_id, message.slack_ts) == ("C1", "1700000001.000100")
    thread = await store.get_thread(thread_id)
    assert thread is not None
    # Only what was given changed; the thread counts as active now (as update_thread).
    assert (thread.conversation_id, thread.channel_type) == ("conv-new", "WhatsApp")
    assert (thread.email_thread_id, thread.subject, thread.contact_label) == (
        before.email_thread_id,
        before.subject,
        before.contact_label,
    )
    assert thread.updated_at == START + 5 > before.updated_at

    # The next customer message: the wait keeps its start, last_inbound_at moves on.
    second = await store.record_shown(
        await a_message(store, thread_id, "m-2"),
        slack_channel_id="C1",
        slack_ts="1700000001.000200",
        thread_id=thread_id,
        waiting=WaitingChange.customer_wrote(START + 4),
    )
    assert second is not None and not second.changed
    assert (second.state.waiting_since, second.state.last_inbound_at) == (START + 3, START + 4)
    # An answer from HighLevel ends it, once.
    answer = await store.record_shown(
        await a_message(store, thread_id, "m-3"),
        slack_channel_id="C1",
        slack_ts="1700000001.000300",
        thread_id=thread_id,
        waiting=WaitingChange.answered(),
    )
    assert answer is not None and answer.changed and answer.state.waiting_since is None
    again = await store.record_shown(
        await a_message(store, thread_id, "m-4"),
        slack_channel_id="C1",
        slack_ts="1700000001.000400",
        thread_id=thread_id,
        waiting=WaitingChange.answered(),
    )
    assert again is not None and not again.changed


async def test_a_shown_message_without_a_wait_changes_none_and_keeps_an_earlier_post(
    store: Store,
) -> None:
    thread_id = await a_thread(store)
    await store.mark_waiting(thread_id, START + 1)
    message_id = await a_message(store, thread_id, "m-1")
    await store.attach_slack_ts(message_id, slack_channel_id="C1", slack_ts="1700000001.000001")

    change = await store.record_shown(
        message_id, slack_channel_id="C1", slack_ts="1700000009.000009", thread_id=thread_id
    )

    assert change is not None and not change.changed
    assert change.state.waiting_since == START + 1  # untouched without `waiting`
    message = await store.get_message_by_ghl_id("m-1")
    assert message is not None and message.slack_ts == "1700000001.000001"


async def test_a_shown_message_of_a_missing_thread_says_so(store: Store) -> None:
    thread_id = await a_thread(store)
    message_id = await a_message(store, thread_id, "m-1")
    for waiting in (None, WaitingChange.answered(), WaitingChange.customer_wrote(START)):
        change = await store.record_shown(
            message_id,
            slack_channel_id="C1",
            slack_ts="1700000001.000001",
            thread_id=thread_id + 1000,
            waiting=waiting,
        )
        assert change is None


async def test_concurrent_shown_messages_start_one_wait(store: Store) -> None:
    thread_id = await a_thread(store)
    ids = [await a_message(store, thread_id, f"m-{n}") for n in range(8)]
    changes = await asyncio.gather(
        *(
            store.record_shown(
                message_id,
                slack_channel_id="C1",
                slack_ts=f"1700000001.{n:06d}",
                thread_id=thread_id,
                waiting=WaitingChange.customer_wrote(START + n),
            )
            for n, message_id in enumerate(ids)
        )
    )
    assert sum(1 for c in changes if c is not None and c.changed) == 1
    state = await store.conversation_state(thread_id)
    assert state is not None and state.last_inbound_at == START + 7
