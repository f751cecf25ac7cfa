"""`/highlevel from` end to end: an admin sets a sub-account's default From address in a linked
channel, and an email from the composer there without a From address reaches HighLevel with it
as `emailFrom`; others are refused, a malformed address is answered, nothing is stored."""

from __future__ import annotations

from bot.sandbox.stack import AGENT_USER, OTHER_USER, SALES_CHANNEL, SandboxStack
from tests.e2e.conftest import eventually, stack_store
from tests.e2e.test_highlevel_command import highlevel
from tests.e2e.test_outbound import open_composer, sends, submit

FRONT_DESK = "frontdesk@acme.example"
BILLING = "billing@acme.example"


async def stored_sender(stack: SandboxStack) -> str | None:
    async with stack_store(stack) as store:
        record = await store.get_location(stack.highlevel.location_id)
    assert record is not None
    return record.email_from


def from_placeholder(stack: SandboxStack, view_id: str) -> str:
    view = stack.slack.view(view_id)
    assert view is not None
    block = next((b for b in view.view["blocks"] if b.get("block_id") == "email_from"), None)
    return str(block["element"].get("placeholder", {}).get("text", "")) if block else ""


async def email_from_composer(stack: SandboxStack, subject: str, **fields: str) -> str | None:
    """Send an email to Grace from the composer in #sales; the `emailFrom` HighLevel got."""
    before = len(sends(stack))
    view_id = await open_composer(stack, "grace@example.com", command="/sendemail")
    answer = await submit(
        stack,
        view_id,
        {"channel": "Email", "subject": subject, "message": "Hello Grace.", **fields},
    )
    assert answer.get("response_action") != "errors", answer
    await eventually(lambda: len(sends(stack)) == before + 1)
    body = sends(stack)[-1]
    assert body["type"] == "Email" and body["subject"] == subject
    return body.get("emailFrom")


async def test_an_email_without_a_from_goes_out_from_the_default_sender(
    stack: SandboxStack,
) -> None:
    location_id = stack.highlevel.location_id
    stack.highlevel.add_verified_sender(location_id, FRONT_DESK)
    stack.highlevel.add_verified_sender(location_id, BILLING)
    assert "is now linked to" in await highlevel(stack, f"link {location_id}")
    assert "no default From address" in await highlevel(stack, "from")

    answer = await highlevel(stack, "from frontdesk@ACME.example")
    assert f"go out from `{FRONT_DESK}`" in answer, answer  # normalised as the composer does
    assert "verified sender of the sub-account" in answer
    assert await stored_sender(stack) == FRONT_DESK
    assert f"`{FRONT_DESK}`" in await highlevel(stack, "from")
    assert f"Default From: `{FRONT_DESK}`" in await highlevel(stack, "status")

    view_id = await open_composer(stack, "grace@example.com", command="/sendemail")
    await eventually(lambda: FRONT_DESK in from_placeholder(stack, view_id))

    assert await email_from_composer(stack, "Default sender") == FRONT_DESK
    # The composer's own From address still wins.
    assert await email_from_composer(stack, "Own sender", email_from=BILLING) == BILLING

    answer = await highlevel(stack, "from clear")
    assert "no default From address now" in answer, answer
    assert await stored_sender(stack) is None
    assert await email_from_composer(stack, "No sender") is None


async def test_only_admins_change_the_default_sender(stack: SandboxStack) -> None:
    await highlevel(stack, f"link {stack.highlevel.location_id}")
    await highlevel(stack, f"from {FRONT_DESK}")
    for text in (f"from {BILLING}", "from clear"):
        refusal = await highlevel(stack, text, user=OTHER_USER)
        assert "Only Slack workspace admins and owners" in refusal, refusal
        assert "default From address" in refusal
    assert await stored_sender(stack) == FRONT_DESK
    # Seeing it is for everyone, like status.
    assert f"`{FRONT_DESK}`" in await highlevel(stack, "from", user=OTHER_USER)


async def test_a_malformed_address_is_answered_and_nothing_changes(stack: SandboxStack) -> None:
    await highlevel(stack, f"link {stack.highlevel.location_id}")
    await highlevel(stack, f"from {FRONT_DESK}")
    for text, why in (
        ("from frontdesk.acme.example", "is not a valid email address"),
        (f"from {FRONT_DESK} {BILLING}", "Give one address here."),
        ("from <@U0OTHER>", "is not a valid email address"),
    ):
        answer = await highlevel(stack, text, user=AGENT_USER, channel=SALES_CHANNEL)
        assert "That is not one email address, so nothing was changed" in answer, answer
        assert why in answer, answer
        assert "<@U0OTHER>" not in answer  # shown escaped, never a mention
    assert await stored_sender(stack) == FRONT_DESK
