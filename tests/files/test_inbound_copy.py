"""InboundFiles over real HTTP: a customer's files into the thread as Slack files, once each;
a line with the link and the reason when a file is too big, cannot be downloaded or may not
be fetched; WhatsApp's late media checked for, durably, on a schedule."""

from __future__ import annotations

import json

import pytest

from bot.files.inbound import MEDIA_CHECK_EVENT, FileTarget
from bot.posting.errors import SlackPostError
from bot.sandbox.highlevel import KATHERINE_JOHNSON_ID
from bot.sandbox.slack import FILE_UPLOAD
from tests.files.conftest import INBOX, World

PHOTO = b"\xff\xd8\xff\xe0JFIF" + bytes(range(256)) * 20
PDF = b"%PDF-1.4\n" + b"0" * 3000


def target_in(world: World, thread_ts: str, key: str = "msg-1") -> FileTarget:
    return FileTarget(
        location_id=world.highlevel.location_id,
        key_id=key,
        message_id=key,
        team_id=None,
        channel_id=INBOX,
        thread_ts=thread_ts,
    )


async def test_files_are_uploaded_into_the_thread_in_order_and_once(world: World) -> None:
    thread = await world.new_thread()
    urls = [world.customer_file("photo.jpg", PHOTO), world.customer_file("menu.pdf", PDF)]
    files = world.inbound_files()
    target = target_in(world, thread)

    assert await files.copy(target, urls) == 2
    assert await files.copy(target, urls) == 0  # a redelivery, a retry: nothing again
    assert await files.copy(target, [urls[1], urls[0], urls[0]]) == 0

    copied = world.files_in(thread)
    assert [(f.name, f.data) for f in copied] == [("photo.jpg", PHOTO), ("menu.pdf", PDF)]
    assert [len(m.files or []) for m in world.replies(thread)] == [1, 1]
    # Another message carrying the same URL is another file of its own.
    assert await files.copy(target_in(world, thread, key="msg-2"), urls[:1]) == 1


async def test_a_file_over_the_limit_becomes_a_link_with_the_reason(world: World) -> None:
    thread = await world.new_thread()
    url = world.customer_file("holiday.jpg", b"x" * 40_000)
    files = world.inbound_files(max_bytes=20 * 1024)

    assert await files.copy(target_in(world, thread), [url]) == 0
    assert world.files_in(thread) == []
    [notice] = world.replies(thread)
    assert notice.text == (
        f"📎 *holiday.jpg* (39 KB) is over the 20 KB limit for files copied into Slack: "
        f"<{url}|open it in HighLevel>"
    )
    assert await files.copy(target_in(world, thread), [url]) == 0
    assert len(world.replies(thread)) == 1  # said once


async def test_a_failed_download_becomes_a_link_with_the_reason(world: World) -> None:
    thread = await world.new_thread()
    url = world.customer_file("voice.ogg", b"OggS" + b"1" * 500, "audio/ogg")
    world.highlevel.file_faults.error_next = 1
    world.highlevel.file_faults.error_status = 503

    assert await world.inbound_files().copy(target_in(world, thread), [url]) == 0
    [notice] = world.replies(thread)
    assert "*voice.ogg* couldn't be copied into Slack" in notice.text
    assert "the server answered 503" in notice.text
    assert f"<{url}|open it in HighLevel>" in notice.text


async def test_a_stalled_download_gives_up_in_time(world: World) -> None:
    thread = await world.new_thread()
    url = world.customer_file("video.mp4", b"v" * 10_000, "video/mp4")
    world.highlevel.file_faults.stall_after_bytes = 100
    files = world.inbound_files(timeout_seconds=0.3)

    assert await files.copy(target_in(world, thread), [url]) == 0
    [notice] = world.replies(thread)
    assert "its download took too long" in notice.text


async def test_a_link_into_a_private_network_is_never_fetched(world: World) -> None:
    thread = await world.new_thread()
    # The Slack simulator's address: private, and not HighLevel's host.
    url = f"{world.slack.api_url.rstrip('/')}/files.info"
    calls = len(world.slack.calls)

    assert await world.inbound_files().copy(target_in(world, thread), [url]) == 0
    [notice] = world.replies(thread)
    assert "points into a private network" in notice.text
    # The one call is the notice's post: nothing reached the private address.
    assert [call.method for call in world.slack.calls[calls:]] == ["chat.postMessage"]


async def test_a_file_slack_did_not_take_is_copied_on_the_next_attempt(world: World) -> None:
    thread = await world.new_thread()
    url = world.customer_file("photo.jpg", PHOTO)
    files = world.inbound_files()
    world.slack.faults.inject(FILE_UPLOAD, status=500)

    with pytest.raises(SlackPostError) as failed:
        await files.copy(target_in(world, thread), [url])
    assert failed.value.error == "upload_failed"
    assert world.files_in(thread) == []

    assert await files.copy(target_in(world, thread), [url]) == 1
    assert [f.data for f in world.files_in(thread)] == [PHOTO]


async def test_slack_refusing_a_file_is_said_in_the_thread(world: World) -> None:
    thread = await world.new_thread()
    url = world.customer_file("photo.jpg", PHOTO)
    world.slack.faults.inject(
        "files.getUploadURLExternal", status=200, error="missing_scope", times=1
    )

    assert await world.inbound_files().copy(target_in(world, thread), [url]) == 0
    [notice] = world.replies(thread)
    assert "needs the files:write permission" in notice.text


async def test_late_media_are_checked_on_schedule_and_copied_once(world: World) -> None:
    thread = await world.new_thread()
    message = await world.highlevel.customer_reply(
        KATHERINE_JOHNSON_ID,
        "WhatsApp",
        "Here it is",
        media=[("voice.ogg", b"OggS-voice", "audio/ogg")],
    )
    files = world.inbound_files(checks_after=(2.0, 5.0, 15.0))
    target = target_in(world, thread, key=message.id)
    shown_at = world.clock.now

    await files.expect_late_media(target)
    await files.expect_late_media(target)  # asked again (a retry): still one check
    assert await world.store.count_inbound() == 1
    assert await world.store.claim_inbound(now=shown_at + 1.9) is None

    check = await world.store.claim_inbound(now=shown_at + 2.0)
    assert check is not None and check.event_type == MEDIA_CHECK_EVENT
    assert check.conversation_key != world.highlevel.location_id  # a queue of its own
    world.clock.now = shown_at + 2.0
    assert await files.check_late_media(check) is False  # not there yet: put back
    assert await world.store.next_inbound_due_at() == shown_at + 5.0

    world.highlevel.media_arrives(message.id)
    again = await world.store.claim_inbound(now=shown_at + 5.0)
    assert again is not None and again.id == check.id
    world.clock.now = shown_at + 5.0
    assert await files.check_late_media(again) is True
    await world.store.finish_inbound(again.id)

    [voice] = world.files_in(thread)
    assert (voice.name, voice.data) == ("voice.ogg", b"OggS-voice")
    [upload] = [m for m in world.replies(thread) if m.files]
    assert upload.text == "Here it is"  # the caption goes with the file


async def test_late_media_that_never_arrive_end_the_checks(world: World) -> None:
    thread = await world.new_thread()
    message = await world.highlevel.customer_reply(
        KATHERINE_JOHNSON_ID, "WhatsApp", "", media=[("photo.jpg", PHOTO, "image/jpeg")]
    )
    files = world.inbound_files(checks_after=(2.0, 5.0))
    shown_at = world.clock.now
    await files.expect_late_media(target_in(world, thread, key=message.id))
    check = await world.store.claim_inbound(now=shown_at + 60)
    assert check is not None
    assert json.loads(check.payload_json)["thread_ts"] == thread
    world.clock.now = shown_at + 60  # past the last check (a stop, a long queue)
    assert await files.check_late_media(check) is True
    assert world.files_in(thread) == []


async def test_an_upload_slack_made_but_did_not_confirm_is_not_made_again(world: World) -> None:
    thread = await world.new_thread()
    url = world.customer_file("photo.jpg", PHOTO)
    files = world.inbound_files()
    # Slack shares the file, then fails to say so.
    world.slack.faults.inject("files.completeUploadExternal", status=500, take_effect=True)

    with pytest.raises(SlackPostError):
        await files.copy(target_in(world, thread), [url])
    assert len(world.files_in(thread)) == 1

    assert await files.copy(target_in(world, thread), [url]) == 0  # found in the thread
    assert [f.data for f in world.files_in(thread)] == [PHOTO]
    assert await files.copy(target_in(world, thread), [url]) == 0
    assert len(world.replies(thread)) == 1


async def test_an_unconfirmed_upload_in_a_thread_that_cannot_be_read_is_said(
    world: World,
) -> None:
    thread = await world.new_thread()
    url = world.customer_file("photo.jpg", PHOTO)
    files = world.inbound_files()
    world.slack.faults.inject("files.completeUploadExternal", status=500, take_effect=True)
    with pytest.raises(SlackPostError):
        await files.copy(target_in(world, thread), [url])

    world.slack.faults.inject("conversations.replies", status=200, error="missing_scope")
    assert await files.copy(target_in(world, thread), [url]) == 0
    assert len(world.files_in(thread)) == 1  # never uploaded twice
    notice = world.replies(thread)[-1]
    assert "Slack did not confirm that *photo.jpg* was copied here" in notice.text
    assert await files.copy(target_in(world, thread), [url]) == 0
    assert len(world.replies(thread)) == 2


async def test_a_message_with_many_files_copies_the_first_ten(world: World) -> None:
    thread = await world.new_thread()
    urls = [world.customer_file(f"page-{n:02}.jpg", PHOTO + bytes([n])) for n in range(12)]
    assert await world.inbound_files().copy(target_in(world, thread), urls) == 10
    assert [f.name for f in world.files_in(thread)] == [f"page-{n:02}.jpg" for n in range(10)]
