"""Files from Slack to the customer, end to end (issue 15): the composer's and the shortcut's
files downloaded from the Slack simulator with the bot token, uploaded to the HighLevel simulator
once each, sent as the send's `attachments`, and named on its post; a file that can no longer be
fetched fails the send visibly."""

from __future__ import annotations

from collections import Counter
from typing import Any

from bot.sandbox.highlevel import ADA_LOVELACE_ID, GRACE_HOPPER_ID
from bot.sandbox.slack import SlackFile
from bot.sandbox.stack import AGENT_USER, SALES_CHANNEL, SandboxStack
from tests.e2e.conftest import eventually
from tests.e2e.test_inbound import start_thread_with_ada, thread_of
from tests.e2e.test_outbound import open_composer, roots, sends, submit, text_of, went_out

PDF = b"%PDF-1.7\n" + bytes(range(256)) * 40
FRONT = b"\xff\xd8\xff\xe0front" + bytes(7000)
BACK = b"\x89PNG\r\n\x1a\nback" + bytes(9000)


def _picked(stack: SandboxStack) -> list[SlackFile]:
    return [
        stack.slack.add_file("quote.pdf", PDF, user=AGENT_USER),
        stack.slack.add_file("front.jpg", FRONT, user=AGENT_USER),
        stack.slack.add_file("back.png", BACK, user=AGENT_USER),
    ]


def _served(stack: SandboxStack, urls: list[str]) -> list[bytes]:
    by_url = {upload.url: upload.data for upload in stack.highlevel.uploads.values()}
    return [by_url[url] for url in urls]


def _sent_with_files(stack: SandboxStack) -> list[dict[str, Any]]:
    return [body for body in sends(stack) if body.get("attachments")]


async def test_a_pdf_and_two_photos_reach_the_customer_by_sms_once(stack: SandboxStack) -> None:
    picked = _picked(stack)
    view_id = await open_composer(stack)

    answer = await submit(
        stack,
        view_id,
        {"recipient": "+14155550100", "message": "The quote and the photos", "files": picked},
    )

    assert answer.get("response_action") != "errors", answer
    (body,) = await eventually(lambda: _sent_with_files(stack))
    assert body["type"] == "SMS" and body["contactId"] == ADA_LOVELACE_ID
    assert body["message"] == "The quote and the photos"
    assert _served(stack, body["attachments"]) == [PDF, FRONT, BACK]
    names = Counter(upload.filename for upload in stack.highlevel.uploads.values())
    assert names == {"quote.pdf": 1, "front.jpg": 1, "back.png": 1}
    # The post names the files and shows the pictures (Slack's own files, by id).
    post = await eventually(lambda: next((m for m in roots(stack) if went_out(m)), None))
    shown = text_of(post)
    assert all(name in shown for name in ("quote.pdf", "front.jpg", "back.png"))
    images = [b for b in post.blocks or [] if b.get("type") == "image"]
    assert [b["slack_file"]["id"] for b in images] == [picked[1].id, picked[2].id]


async def test_files_go_with_an_email(stack: SandboxStack) -> None:
    picked = _picked(stack)[:2]
    view_id = await open_composer(stack, "grace@example.com", command="/sendemail")

    answer = await submit(
        stack,
        view_id,
        {"channel": "Email", "subject": "Your quote", "message": "Attached.", "files": picked},
    )

    assert answer.get("response_action") != "errors", answer
    (body,) = await eventually(lambda: _sent_with_files(stack))
    assert body["type"] == "Email" and body["contactId"] == GRACE_HOPPER_ID
    assert body["subject"] == "Your quote"
    assert _served(stack, body["attachments"]) == [PDF, FRONT]
    (recorded,) = stack.highlevel.sends_with_attachments()
    assert recorded.channel == "Email"


async def test_reply_via_highlevel_sends_the_messages_files(stack: SandboxStack) -> None:
    await start_thread_with_ada(stack)
    quote, front, _ = _picked(stack)
    message = stack.slack.post_as_user(
        SALES_CHANNEL, AGENT_USER, "for Ada", thread_ts=roots(stack)[0].ts, files=[quote, front]
    )
    result = await stack.driver.message_action(
        "reply_via_highlevel", user_id=AGENT_USER, channel_id=SALES_CHANNEL, message_ts=message.ts
    )
    assert result.status == 200
    view = (await eventually(lambda: stack.slack.open_views(AGENT_USER)))[-1]

    answer = await submit(stack, view.id, {"message": "Here they are"})

    assert answer.get("response_action") != "errors", answer
    (body,) = await eventually(lambda: _sent_with_files(stack))
    assert body["contactId"] == ADA_LOVELACE_ID and body["message"] == "Here they are"
    assert _served(stack, body["attachments"]) == [PDF, FRONT]
    await eventually(
        lambda: any("quote.pdf" in text_of(m) and went_out(m) for m in thread_of(stack))
    )


async def test_a_file_deleted_in_slack_fails_the_send_and_says_which(stack: SandboxStack) -> None:
    quote = stack.slack.add_file("quote.pdf", PDF, user=AGENT_USER)
    entry = {"type": "file_input", "files": [stack.slack.file_api(quote)]}
    stack.slack.delete_file(quote.id)  # between the person picking it and the worker's turn
    view_id = await open_composer(stack)

    answer = await submit(
        stack, view_id, {"recipient": "+14155550100", "message": "The quote", "files": entry}
    )

    assert answer.get("response_action") != "errors", answer
    post = await eventually(
        lambda: next(
            (m for m in roots(stack) if "quote.pdf" in text_of(m) and "deleted" in text_of(m)), None
        )
    )
    assert "Retry" in str(post.blocks) or "retry" in str(post.blocks)
    assert sends(stack) == []
    assert stack.highlevel.uploads == {}


async def test_a_post_whose_picture_was_deleted_still_shows_later_statuses(
    stack: SandboxStack,
) -> None:
    photo = stack.slack.add_file("front.jpg", FRONT, user=AGENT_USER)
    view_id = await open_composer(stack)
    answer = await submit(
        stack, view_id, {"recipient": "+14155550100", "message": "Your table", "files": [photo]}
    )
    assert answer.get("response_action") != "errors", answer
    post = await eventually(lambda: next((m for m in roots(stack) if went_out(m)), None))
    assert any(b.get("type") == "image" for b in post.blocks or [])
    (body,) = _sent_with_files(stack)
    message_id = next(
        m.id for m in stack.highlevel.messages.values() if m.attachments == body["attachments"]
    )
    await stack.highlevel.drain_webhooks()
    stack.slack.delete_file(photo.id)  # Slack now refuses blocks showing it

    await stack.highlevel.set_message_status(message_id, "read")

    shown = await eventually(lambda: next((m for m in roots(stack) if "Read" in text_of(m)), None))
    assert "front.jpg" in text_of(shown)
    assert not any(b.get("type") == "image" for b in shown.blocks or [])
