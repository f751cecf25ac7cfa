"""The inbound worker with files: a stop between a message's post and its files (the process
gone mid-upload) is finished by the next start, which uploads the file once; later events of
the same message (a redelivery, a status) upload nothing again."""

from __future__ import annotations

import asyncio
import contextlib

from bot.inbound import InboundWorker, from_webhook
from bot.outbound.presenter import SendPresenter
from bot.posting.poster import OnePoster
from bot.sandbox.highlevel import ADA_LOVELACE_ID
from bot.sandbox.slack import FILE_UPLOAD
from bot.tenancy.routing import ChannelRouting
from storage import InboundState
from tests.files.conftest import INBOX, World

PHOTO = b"\xff\xd8\xff\xe0JFIF" + bytes(range(256)) * 20


def worker_for(world: World) -> InboundWorker:
    slack = OnePoster(world.poster)
    return InboundWorker(
        store=world.store,
        slack=slack,
        presenter=SendPresenter(store=world.store, slack=slack),
        accounts=world.accounts,
        routing=ChannelRouting(world.store, world.accounts, default_inbox=INBOX),
        files=world.inbound_files(),
        idle_poll_seconds=0.2,
    )


async def enqueue(world: World, url: str, *, status: str | None, key: str) -> None:
    payload = {
        "type": "InboundMessage",
        "locationId": world.highlevel.location_id,
        "contactId": ADA_LOVELACE_ID,
        "messageId": "mms-1",
        "messageType": "SMS",
        "direction": "inbound",
        "body": "Here is the photo",
        "attachments": [url],
    } | ({"status": status} if status else {})
    message = from_webhook(payload)
    assert message is not None
    stored = await world.store.enqueue_inbound(
        source="webhook",
        event_type="inbound_message",
        conversation_key=f"{world.highlevel.location_id}:{ADA_LOVELACE_ID}",
        payload=message.to_payload(),
        dedupe_keys=[key],
        ttl_seconds=600,
    )
    assert stored is not None


async def until(check: object, *, within: float = 8.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not (check() if callable(check) else check):
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def run_until_done(world: World, count: int) -> None:
    stopping = asyncio.Event()
    running = asyncio.create_task(worker_for(world).run(stopping))
    try:
        while await world.store.count_inbound(InboundState.DONE) < count:
            assert not running.done()
            await asyncio.sleep(0.02)
    finally:
        stopping.set()
        await running


async def test_a_stop_between_the_post_and_its_file_uploads_the_file_once(world: World) -> None:
    url = world.customer_file("photo.jpg", PHOTO)
    await enqueue(world, url, status=None, key="webhook-1")
    # The upload of the bytes hangs; the process is stopped dead while it does.
    world.slack.faults.delay_next(FILE_UPLOAD, 1.0)
    stopping = asyncio.Event()
    first = asyncio.create_task(worker_for(world).run(stopping))
    await until(lambda: world.slack.calls_to("files.getUploadURLExternal"))
    first.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await first
    [root] = [m for m in world.slack.channel_messages(INBOX) if m.bot_id]
    assert "Here is the photo" in root.text
    assert world.slack.files() == [] or not any(f.complete for f in world.slack.files())
    assert await world.store.count_inbound(InboundState.PROCESSING) == 1

    await run_until_done(world, 1)  # the next start takes the event again
    [photo] = world.files_in(root.ts)
    assert photo.data == PHOTO
    assert len([m for m in world.slack.channel_messages(INBOX) if m.bot_id]) == 1

    # The same message again (a redelivery under another webhook id, then a status change).
    await enqueue(world, url, status="read", key="webhook-2")
    await run_until_done(world, 2)
    assert [f.data for f in world.files_in(root.ts)] == [PHOTO]
    assert world.replies(root.ts) == [m for m in world.replies(root.ts) if m.files]
    assert len(world.replies(root.ts)) == 1
