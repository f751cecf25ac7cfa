"""Files in the composer, end to end (issue 15, the Slack side): what Slack's file_input and the
"Reply via HighLevel" shortcut hand the bridge, and its answers, over real HTTP.

That the files then reach the customer is the outbox worker's part (tests of its own); here a
refused file is a field error with nothing queued, and an accepted one is queued.
"""

from __future__ import annotations

from typing import Any

from bot.sandbox.highlevel import KATHERINE_JOHNSON_ID
from bot.sandbox.slack import SlackFile
from bot.sandbox.stack import AGENT_USER, SALES_CHANNEL, SandboxStack
from tests.e2e.conftest import eventually, query
from tests.e2e.test_inbound import start_thread_with_ada, thread_of
from tests.e2e.test_outbound import SEND, open_composer, roots, submit

MB = 1024 * 1024
ADA = "+14155550100"


async def _queued(stack: SandboxStack) -> int:
    """Sends the bridge has taken on: composer intents and outbox entries."""
    intents = await query(stack, "SELECT COUNT(*) FROM compose_intents")
    outbox = await query(stack, "SELECT COUNT(*) FROM outbox")
    return int(intents[0][0]) + int(outbox[0][0])


def _blocks(stack: SandboxStack, view_id: str) -> dict[str, dict[str, Any]]:
    view = stack.slack.view(view_id)
    assert view is not None
    return {b["block_id"]: b for b in view.view.get("blocks", []) if "block_id" in b}


def _pdf(stack: SandboxStack, name: str, size: int) -> SlackFile:
    return stack.slack.add_file(name, b"%PDF-1.7\n" + bytes(size - 9), user=AGENT_USER)


async def test_a_pdf_over_the_sms_limit_is_a_field_error_and_nothing_is_queued(
    stack: SandboxStack,
) -> None:
    brochure = _pdf(stack, "brochure.pdf", 7 * MB)
    view_id = await open_composer(stack)
    assert _blocks(stack, view_id)["files"]["element"]["type"] == "file_input"

    answer = await submit(
        stack, view_id, {"recipient": ADA, "message": "Our brochure", "files": [brochure]}
    )

    assert answer.get("response_action") == "errors", answer
    error = answer["errors"]["files"]
    assert "brochure.pdf" in error and "5 MB" in error
    assert stack.slack.view(view_id) is not None  # the modal stays open to fix it
    assert await _queued(stack) == 0
    assert stack.highlevel.requests_to(*SEND) == []


async def test_a_type_highlevel_refuses_is_a_field_error_naming_it(stack: SandboxStack) -> None:
    setup = stack.slack.add_file("setup.exe", b"MZ" + bytes(1000), user=AGENT_USER)
    view_id = await open_composer(stack)
    # Slack's picker honours `filetypes`, which its docs call a convenience only: the app
    # checks again. The state entry is spelled out as a client that ignored it would send it.
    entry = {"type": "file_input", "files": [stack.slack.file_api(setup)]}

    answer = await submit(
        stack, view_id, {"recipient": ADA, "message": "Install this", "files": entry}
    )

    assert answer.get("response_action") == "errors", answer
    assert "setup.exe" in answer["errors"]["files"]
    assert "type" in answer["errors"]["files"]
    assert await _queued(stack) == 0


async def test_picked_files_survive_a_channel_change_and_are_checked_for_the_new_one(
    stack: SandboxStack,
) -> None:
    brochure = _pdf(stack, "brochure.pdf", 7 * MB)
    # The sub-account has WhatsApp (a conversation on it), so the composer offers it to Ada.
    await stack.highlevel.customer_reply(KATHERINE_JOHNSON_ID, "WhatsApp", "Hello")
    view_id = await open_composer(stack)

    async def choose(channel: str, **values: Any) -> None:
        await stack.driver.block_action(
            "channel",
            user_id=AGENT_USER,
            view_id=view_id,
            values={"channel": {"channel": channel}, **values},
            action={"selected_option": {"value": channel}},
        )
        await eventually(
            lambda: (
                _blocks(stack, view_id)["channel"]["element"]["initial_option"]["value"] == channel
            )
        )

    # Picked on SMS, then Custom: the file input stays (Slack keeps its files) and says why.
    await choose("Custom", files={"files": [brochure]})
    assert "can't carry files" in _blocks(stack, view_id)["files"]["hint"]["text"]
    answer = await submit(stack, view_id, {"recipient": ADA, "message": "Our brochure"})
    assert "Custom provider messages can't carry files" in answer["errors"]["files"]
    assert "brochure.pdf" in answer["errors"]["files"]

    # WhatsApp takes 100 MB: the same file, still picked, is accepted and the send queued.
    await choose("WhatsApp")
    assert "100 MB" in _blocks(stack, view_id)["files"]["hint"]["text"]
    answer = await submit(stack, view_id, {"recipient": ADA, "message": "Our brochure"})
    assert answer.get("response_action") != "errors", answer
    await eventually(lambda: _queued(stack))


async def test_files_alone_make_an_sms(stack: SandboxStack) -> None:
    menu = _pdf(stack, "menu.pdf", 200_000)
    view_id = await open_composer(stack)

    answer = await submit(stack, view_id, {"recipient": ADA, "files": [menu]})

    assert answer.get("response_action") != "errors", answer
    await eventually(lambda: _queued(stack))


async def test_reply_via_highlevel_on_a_message_with_files_attaches_them(
    stack: SandboxStack,
) -> None:
    await start_thread_with_ada(stack)
    invoice = _pdf(stack, "invoice.pdf", 120_000)
    photo = stack.slack.add_file("photo1.jpg", b"\xff\xd8\xff" + bytes(5000), user=AGENT_USER)
    gone = _pdf(stack, "old.pdf", 1000)
    root = roots(stack)[0]
    message = stack.slack.post_as_user(
        SALES_CHANNEL, AGENT_USER, "for Ada", thread_ts=root.ts, files=[invoice, photo, gone]
    )
    stack.slack.delete_file(gone.id)  # the message now shows a tombstone for it

    result = await stack.driver.message_action(
        "reply_via_highlevel", user_id=AGENT_USER, channel_id=SALES_CHANNEL, message_ts=message.ts
    )

    assert result.status == 200
    view = (await eventually(lambda: stack.slack.open_views(AGENT_USER)))[-1]
    block = _blocks(stack, view.id)["message_files"]
    assert block["label"]["text"] == "Attached from the message"
    element = block["element"]
    assert [o["text"]["text"] for o in element["options"]] == ["invoice.pdf", "photo1.jpg"]
    assert [o["value"] for o in element["initial_options"]] == [invoice.id, photo.id]
    assert "files" in _blocks(stack, view.id)  # more can be added

    # Unchecking one leaves it out; the reply (with the other) is taken on.
    kept = {"type": "checkboxes", "selected_options": [element["options"][0]]}
    answer = await submit(stack, view.id, {"message": "Your invoice", "message_files": kept})
    assert answer.get("response_action") != "errors", answer
    await eventually(lambda: _queued(stack))
    assert len(thread_of(stack)) >= 2


async def test_files_the_bridge_posted_are_offered_unchecked(stack: SandboxStack) -> None:
    # A customer's photo, as the bridge posts it into the thread: sending it back to them is
    # rarely the reply meant, so it is offered but not checked.
    await start_thread_with_ada(stack)
    photo = stack.slack.add_file("IMG_2041.jpg", b"\xff\xd8\xff" + bytes(5000), user=AGENT_USER)
    root = roots(stack)[0]
    posted = {
        "type": "message",
        "ts": "1999999999.000100",
        "thread_ts": root.ts,
        "bot_id": stack.slack.bot_id,
        "text": "Ada Lovelace sent a photo",
        "files": [stack.slack.file_api(photo)],
    }

    await stack.driver.message_action(
        "reply_via_highlevel", user_id=AGENT_USER, channel_id=SALES_CHANNEL, message=posted
    )

    view = (await eventually(lambda: stack.slack.open_views(AGENT_USER)))[-1]
    element = _blocks(stack, view.id)["message_files"]["element"]
    assert [o["value"] for o in element["options"]] == [photo.id]
    assert "initial_options" not in element
