"""The audit of sends: a status history appended at every change of a send's state or of the
status HighLevel reports for its messages, and the sends of a window and a sub-account."""

from __future__ import annotations

from pathlib import Path

from storage import (
    RESEND_KEY_PREFIX,
    AuditRow,
    MessageDirection,
    OutboxState,
    StatusChange,
    Store,
    copy_database,
)
from tests.storage._support import START, Backend, FakeClock, SqliteBackend, enqueue


def _steps(history: tuple[StatusChange, ...]) -> list[tuple[str, float]]:
    return [(change.status, change.at - START) for change in history]


async def test_each_change_of_a_send_is_appended_to_its_history(
    store: Store, clock: FakeClock
) -> None:
    entry = await enqueue(store, key="history")
    clock.advance(1)
    claimed = await store.claim_next()
    assert claimed is not None and claimed.id == entry.id
    clock.advance(1)
    await store.retry_later(entry.id, next_attempt_at=clock.now, error="429")
    clock.advance(1)
    await store.claim_next()
    clock.advance(1)
    await store.mark_sent(
        entry.id, conversation_id="conv-1", ghl_message_id="m-1", ghl_message_ids=["m-2"]
    )
    clock.advance(1)
    await store.update_message_status("m-1", "delivered")
    clock.advance(1)
    await store.update_message_status("m-1", "delivered")  # no change, no step
    await store.update_message_status("m-2", "read")
    clock.advance(1)
    await store.mark_failed(entry.id, "HighLevel reports the message undelivered")

    [row] = await store.audit_rows(START)
    # The claims ('sending') are not steps; everything else is, at the store's clock.
    assert _steps(row.history) == [
        ("queued", 0),
        ("queued", 2),
        ("sent", 4),
        ("delivered", 5),
        ("read", 6),
        ("failed", 7),
    ]
    assert row.history[-1].detail == "HighLevel reports the message undelivered"
    assert row.state is OutboxState.FAILED
    assert row.ghl_message_ids == ("m-1", "m-2")


async def test_unknown_and_cancelled_and_an_early_status_are_steps(
    store: Store, clock: FakeClock
) -> None:
    lost = await enqueue(store, key="lost", contact_id="c-lost")
    await store.claim_next()
    clock.advance(1)
    await store.mark_unknown(lost.id, "timed out")
    clock.advance(1)
    # HighLevel's echo with a status arrives before the send's answer is recorded.
    await store.record_message(
        direction=MessageDirection.OUTBOUND, ghl_message_id="m-early", status="delivered"
    )
    clock.advance(1)
    await store.mark_sent(lost.id, conversation_id=None, ghl_message_id="m-early")
    dropped = await enqueue(store, key="dropped", contact_id="c-dropped")
    clock.advance(1)
    await store.mark_cancelled(dropped.id)

    rows = {row.outbox_id: row for row in await store.audit_rows(START)}
    assert _steps(rows[lost.id].history) == [
        ("queued", 0),
        ("unknown", 1),
        ("sent", 3),
        ("delivered", 3),
    ]
    assert rows[lost.id].history[1].detail == "timed out"
    assert _steps(rows[dropped.id].history) == [("queued", 3), ("cancelled", 4)]


async def test_rows_are_the_window_and_the_sub_account_asked_for(
    store: Store, clock: FakeClock
) -> None:
    before = await enqueue(store, key="before", contact_id="c-0")
    clock.advance(10)
    first = await enqueue(store, key="first", contact_id="c-1")
    clock.advance(10)
    other = await enqueue(store, key="other", location_id="loc-2", contact_id="c-2")
    clock.advance(10)
    last = await enqueue(store, key="last", contact_id="c-3")

    def ids(rows: list[AuditRow]) -> list[int]:
        return [row.outbox_id for row in rows]

    assert ids(await store.audit_rows(START)) == [before.id, first.id, other.id, last.id]
    assert ids(await store.audit_rows(START + 10)) == [first.id, other.id, last.id]
    assert ids(await store.audit_rows(START + 10, START + 30)) == [first.id, other.id]
    assert ids(await store.audit_rows(START, None, "loc-1")) == [before.id, first.id, last.id]
    assert ids(await store.audit_rows(START, START + 30, "loc-2")) == [other.id]
    assert await store.audit_rows(START + 31) == []
    row = (await store.audit_rows(START + 10, START + 11))[0]
    assert (row.team_id, row.channel_id, row.slack_user_id) == ("T1", "C1", "U1")
    assert (row.location_id, row.contact_id, row.message_type) == ("loc-1", "c-1", "SMS")
    assert row.quiet_hours_override is False and row.resend_of is None


async def test_an_override_and_a_resend_are_shown(store: Store, clock: FakeClock) -> None:
    original, _ = await store.enqueue(
        idempotency_key="night",
        team_id="T1",
        channel_id="C1",
        slack_user_id="U1",
        location_id="loc-1",
        contact_id="c-1",
        message_type="SMS",
        payload={"request": {"message": "quiet_hours_override"}, "quiet_hours_override": True},
        scheduled_at=START + 3600,
    )
    again, _ = await store.enqueue(
        idempotency_key=f"{RESEND_KEY_PREFIX}{original.id}",
        team_id="T1",
        channel_id="C1",
        slack_user_id="U2",
        location_id="loc-1",
        contact_id="c-1",
        message_type="SMS",
        # A body naming the mark is not the mark.
        payload={"request": {"message": '"quiet_hours_override":true'}},
    )
    rows = {row.outbox_id: row for row in await store.audit_rows(START)}
    assert rows[original.id].quiet_hours_override is True
    assert rows[original.id].scheduled_at == START + 3600
    assert rows[original.id].resend_of is None
    assert rows[again.id].quiet_hours_override is False
    assert rows[again.id].resend_of == original.id


async def test_the_history_is_copied_once(
    backend: Backend, store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    entry = await enqueue(store, key="copied")
    await store.claim_next()
    clock.advance(1)
    await store.mark_sent(entry.id, conversation_id=None, ghl_message_id="m-1")
    await store.update_message_status("m-1", "read")
    source = await store.audit_rows(START)

    target = SqliteBackend(tmp_path / "copy.db")
    counts = await copy_database(backend.url, target.url)
    assert counts["outbox_status_history"] == 3
    async with target.new_store(clock) as copied:
        assert await copied.audit_rows(START) == source
