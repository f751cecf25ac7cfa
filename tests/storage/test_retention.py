"""MESSAGE_RETENTION_DAYS in the store: `purge_before` blanks the customer content of finished
rows older than the cut-off, in bounded batches, and nothing else."""

from __future__ import annotations

import json
from typing import Any

from storage import Store
from tests.storage._support import START, Backend, FakeClock

DAY = 86_400.0
CUTOFF = START + 5 * DAY


def _email_payload(body: str, contact: str = "contact-a") -> dict[str, Any]:
    """Shaped like bot/outbound/entry.py's entry_payload of an email with a file."""
    return {
        "request": {
            "type": "Email",
            "contactId": contact,
            "message": body,
            "html": f"<p>{body}</p>",
            "subject": f"{body} subject",
            "emailCc": [f"{body.lower()}-cc@example.com"],
            "emailTo": f"{body.lower()}@example.com",
            "attachments": [f"https://files.example/{body}/a.pdf"],
            "threadId": "email-thread-1",
        },
        "display": {
            "contact_label": "Ann",
            "contact_address": f"{body.lower()}@example.com",
            "created_contact": False,
        },
        "files": [{"id": "F1", "name": f"{body}.pdf", "mimetype": "application/pdf", "size": 1}],
    }


def _sms_payload(body: str, phone: str = "+15550000000") -> dict[str, Any]:
    return {
        "request": {"type": "SMS", "contactId": "contact-a", "message": body, "toNumber": phone},
        "display": {"contact_label": "Ann", "contact_address": phone, "created_contact": False},
    }


async def _send(
    store: Store,
    key: str,
    payload: dict[str, Any],
    *,
    thread_id: int,
    finish: str | None,
    scheduled_at: float | None = None,
) -> int:
    entry, created = await store.enqueue(
        idempotency_key=key,
        team_id="T1",
        channel_id="C1",
        slack_user_id="U1",
        location_id="loc-1",
        contact_id="contact-a",
        message_type=payload["request"]["type"],
        payload=payload,
        thread_id=thread_id,
        scheduled_at=scheduled_at,
    )
    assert created
    if finish is None:
        return entry.id
    claimed = await store.claim_next()
    assert claimed is not None and claimed.id == entry.id
    if payload.get("files"):
        await store.record_outbox_upload(entry.id, "F1", payload["request"]["attachments"][0])
    if finish == "sent":
        await store.mark_sent(entry.id, conversation_id="conv-1", ghl_message_id=f"m-{key}")
        await store.update_message_status(f"m-{key}", "delivered")
    else:
        await store.mark_failed(entry.id, "HighLevel said no")
    await store.release_claim(entry.id)
    return entry.id


async def _inbound(store: Store, key: str, body: str, *, finish: bool) -> None:
    event = await store.enqueue_inbound(
        source="webhook",
        event_type="InboundMessage",
        conversation_key=f"conv-{key}",
        payload={"type": "InboundMessage", "messageId": key, "body": body},
        dedupe_keys=[key],
        ttl_seconds=60,
        # One left unprocessed is not due while the test runs.
        not_before=None if finish else START + 1000 * DAY,
    )
    assert event is not None
    if finish:
        claimed = await store.claim_inbound()
        assert claimed is not None and claimed.id == event.id
        await store.finish_inbound(event.id)


async def _intent(store: Store, key: str, body: str, *, close: bool) -> None:
    assert await store.open_intent(
        idempotency_key=key,
        kind="compose",
        team_id="T1",
        channel_id="C1",
        slack_user_id="U1",
        payload={"draft": {"message": body}},
        response_url=f"https://hooks.slack.example/{key}",
    )
    if close:
        assert await store.close_intent(key, "queued")


async def _everything(backend: Backend) -> str:
    """Every row of every table, as text."""
    return "\n".join(
        repr(backend.query(f"SELECT * FROM {table}"))  # noqa: S608 - the schema's table names
        for table in sorted(backend.table_names())
    )


async def _fill(store: Store, clock: FakeClock) -> dict[str, int]:
    """Old rows (finished and not) at START, new ones ten days later."""
    thread = await store.upsert_thread(
        team_id="T1", channel_id="C1", location_id="loc-1", contact_id="contact-a",
        thread_ts="100.1", subject="Hello", contact_label="Ann",
    )  # fmt: skip
    ids = {
        "old_sent": await _send(
            store, "old-sent", _email_payload("OLDSENT"), thread_id=thread.id, finish="sent"
        ),
        "old_failed": await _send(
            store,
            "old-failed",
            _sms_payload("OLDFAILED", "+15550001111"),
            thread_id=thread.id,
            finish="failed",
        ),
        # Sent to HighLevel to go out after the cut-off: its post may still change.
        "old_scheduled": await _send(
            store,
            "old-scheduled",
            _sms_payload("KEEP-SCHEDULED"),
            thread_id=thread.id,
            finish="sent",
            scheduled_at=START + 20 * DAY,
        ),
        "old_pending": await _send(
            store, "old-pending", _sms_payload("KEEP-PENDING"), thread_id=thread.id, finish=None
        ),
    }
    await _inbound(store, "e1", "OLDEVENT", finish=True)
    await _inbound(store, "e2", "KEEP-UNPROCESSED", finish=False)
    await _intent(store, "i1", "OLDDRAFT", close=True)
    await _intent(store, "i2", "KEEP-OPEN-DRAFT", close=False)
    clock.advance(10 * DAY)
    await store.mark_cancelled(ids["old_pending"])  # finished now: not old
    ids["new_sent"] = await _send(
        store, "new-sent", _email_payload("KEEP-NEW"), thread_id=thread.id, finish="sent"
    )
    await _inbound(store, "e3", "KEEP-NEW-EVENT", finish=True)
    await _intent(store, "i3", "KEEP-NEW-DRAFT", close=True)
    return ids


_OLD = ("OLDSENT", "oldsent", "OLDFAILED", "+15550001111", "OLDEVENT", "OLDDRAFT")
_KEPT = (
    "KEEP-SCHEDULED",
    "KEEP-PENDING",
    "KEEP-UNPROCESSED",
    "KEEP-OPEN-DRAFT",
    "KEEP-NEW",
    "keep-new@example.com",
    "https://files.example/KEEP-NEW/a.pdf",
    "KEEP-NEW-EVENT",
    "KEEP-NEW-DRAFT",
)
_UNCHANGED = (
    "SELECT * FROM slack_threads ORDER BY id",
    "SELECT * FROM messages ORDER BY id",
    "SELECT * FROM outbox_status_history ORDER BY id",
    "SELECT id, state, ghl_message_id, created_at, updated_at, thread_id FROM outbox ORDER BY id",
    "SELECT id, state, received_at, updated_at FROM inbound_events ORDER BY id",
    "SELECT id, state, outcome, created_at, closed_at FROM compose_intents ORDER BY id",
)


async def test_a_retention_run_leaves_no_content_older_than_the_limit(
    store: Store, backend: Backend, clock: FakeClock
) -> None:
    ids = await _fill(store, clock)
    before = await _everything(backend)
    assert all(text in before for text in (*_OLD, *_KEPT))
    unchanged = [backend.query(sql) for sql in _UNCHANGED]

    # Bounded batches: the four old finished rows (2 sends, 1 event, 1 intent) two at a time.
    assert await store.purge_before(CUTOFF, batch=2) == 2
    assert len(backend.query("SELECT id FROM outbox WHERE purged_at IS NOT NULL")) == 2
    assert await store.purge_before(CUTOFF, batch=2) == 2
    assert await store.purge_before(CUTOFF, batch=2) == 0
    assert await store.purge_before(CUTOFF) == 0  # a second run changes nothing

    after = await _everything(backend)
    for text in _OLD:
        assert text not in after, text
    for text in _KEPT:
        assert text in after, text
    # Ids, states, times, HighLevel ids, the thread map and the audit's history stay as they were.
    assert [backend.query(sql) for sql in _UNCHANGED] == unchanged

    # A purged send still reads: its kind, contact, reply ids and label, marked purged.
    sent = await store.get_outbox(ids["old_sent"])
    assert sent is not None
    assert sent.payload == {
        "request": {"type": "Email", "contactId": "contact-a", "threadId": "email-thread-1"},
        "display": {"contact_label": "Ann", "created_contact": False},
        "purged": True,
    }
    assert await store.outbox_uploads(ids["old_sent"]) == {}
    assert await store.outbox_uploads(ids["new_sent"]) == {
        "F1": "https://files.example/KEEP-NEW/a.pdf"
    }
    failed = await store.get_outbox(ids["old_failed"])
    assert failed is not None and failed.last_error == "HighLevel said no"
    assert json.loads(failed.payload_json)["request"] == {"type": "SMS", "contactId": "contact-a"}
    [(payload, response_url)] = backend.query(
        "SELECT payload, response_url FROM compose_intents WHERE idempotency_key = ?",
        ("i1",),
    )
    assert (json.loads(payload), response_url) == ({"purged": True}, None)


async def test_nothing_is_purged_before_the_cut_off(
    store: Store, backend: Backend, clock: FakeClock
) -> None:
    await _fill(store, clock)
    before = await _everything(backend)
    assert await store.purge_before(START - DAY) == 0
    assert await _everything(backend) == before
