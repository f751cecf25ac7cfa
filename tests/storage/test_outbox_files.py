"""Outbox files: each upload's URL is kept once per (send, Slack file), first one wins."""

from __future__ import annotations

import pytest

from storage import Store, StoreError
from tests.storage._support import enqueue


async def test_an_upload_is_kept_once_and_the_first_url_wins(store: Store) -> None:
    entry = await enqueue(store, key="with-files")
    other = await enqueue(store, key="other", contact_id="contact-b")
    assert await store.outbox_uploads(entry.id) == {}

    kept = await store.record_outbox_upload(entry.id, "F1", "https://files.example/1/a.pdf")
    again = await store.record_outbox_upload(entry.id, "F1", "https://files.example/2/a.pdf")
    await store.record_outbox_upload(entry.id, "F2", "https://files.example/1/b.png")
    await store.record_outbox_upload(other.id, "F1", "https://files.example/9/a.pdf")

    assert kept == again == "https://files.example/1/a.pdf"
    assert await store.outbox_uploads(entry.id) == {
        "F1": "https://files.example/1/a.pdf",
        "F2": "https://files.example/1/b.png",
    }
    assert await store.outbox_uploads(other.id) == {"F1": "https://files.example/9/a.pdf"}


async def test_an_upload_needs_its_entry(store: Store) -> None:
    with pytest.raises(StoreError):
        await store.record_outbox_upload(999_999, "F1", "https://files.example/1/a.pdf")


async def test_the_conversation_files_go_into_is_kept_once(store: Store) -> None:
    entry = await enqueue(store, key="conversation")
    await store.set_outbox_conversation(entry.id, "conv-1")
    await store.set_outbox_conversation(entry.id, "conv-2")  # a known one is never replaced
    kept = await store.get_outbox(entry.id)
    assert kept is not None and kept.conversation_id == "conv-1"
