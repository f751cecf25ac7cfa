"""Compose intents end to end: what a restart does with each kind of open intent, and what a person
is told when the intent cannot even be saved before the ack."""

from __future__ import annotations

import time
import uuid
from collections import Counter

from bot.compose import Draft
from bot.highlevel import MessageChannel
from bot.outbound import SlackOrigin
from bot.outbound.intents import (
    ComposerIntent,
    Intent,
    QuickSendIntent,
    encode_intent,
)
from bot.sandbox.stack import AGENT_USER, SALES_CHANNEL, SandboxStack
from storage import is_postgres_url
from tests.e2e.conftest import eventually, query, stack_store, url_of
from tests.e2e.test_outbound import open_composer, sends, submit

ORIGIN = SlackOrigin(team_id="T0SANDBOX", channel_id=SALES_CHANNEL, user_id=AGENT_USER)


async def save(stack: SandboxStack, intent: Intent, *, age: float, payload: object = None) -> None:
    """Save `intent` as a stopped process would have left it, `age` seconds ago."""
    kind, encoded = encode_intent(intent)
    saved_at = time.time() - age
    async with stack_store(stack, clock=lambda: saved_at) as store:
        await store.open_intent(
            idempotency_key=intent.key,
            kind=kind,
            team_id=intent.origin.team_id,
            channel_id=intent.origin.channel_id,
            slack_user_id=intent.origin.user_id,
            payload=encoded if payload is None else payload,  # type: ignore[arg-type]
            response_url=intent.response_url if isinstance(intent, QuickSendIntent) else None,
        )


async def intent_rows(stack: SandboxStack) -> dict[str, tuple[str, str | None]]:
    """Every intent in the database, open or closed (the store lists only open ones)."""
    rows = await query(stack, "SELECT idempotency_key, state, outcome FROM compose_intents")
    return {key: (state, outcome) for key, state, outcome in rows}


async def all_done(stack: SandboxStack) -> bool:
    return all(state == "done" for state, _ in (await intent_rows(stack)).values())


def sent(stack: SandboxStack) -> Counter[str]:
    """How many times HighLevel accepted a send of each text (SMS and email alike)."""
    return Counter(str(body.get("message")) for body in sends(stack))


def ephemerals(stack: SandboxStack, source: str) -> list[str]:
    return [e.text for e in stack.slack.ephemerals(user=AGENT_USER) if e.source == source]


async def test_a_restart_finishes_or_reports_every_open_intent(stack: SandboxStack) -> None:
    await stack.stop_bridge()
    run = uuid.uuid4().hex[:6]
    fresh_url = stack.slack.new_response_url(channel_id=SALES_CHANNEL, user_id=AGENT_USER)
    old_url = stack.slack.new_response_url(channel_id=SALES_CHANNEL, user_id=AGENT_USER)
    dnd_url = stack.slack.new_response_url(channel_id=SALES_CHANNEL, user_id=AGENT_USER)
    fresh = f"fresh {run}"
    late = f"late {run}"
    stale = f"stale {run}"
    email = f"composer {run}"

    def quick(key: str, recipient: str, text: str, url: str | None) -> QuickSendIntent:
        return QuickSendIntent(
            key=key, origin=ORIGIN, draft=Draft(recipient=recipient, message=text), response_url=url
        )

    # Its response_url is past Slack's 30 minutes: the person is told with an ephemeral.
    await save(stack, quick("command:late", "+14155550100", late, old_url), age=40 * 60)
    # Hours old: not sent any more, and the person is told so.
    await save(stack, quick("command:stale", "+447911123456", stale, None), age=2 * 3600)
    await save(stack, quick("command:fresh", "+14155550100", fresh, fresh_url), age=60)
    # Alan Turing opted out of SMS: refused, and said so through the command's response_url.
    await save(stack, quick("command:dnd", "+14155550102", f"dnd {run}", dnd_url), age=50)
    composer = ComposerIntent(
        key="view:V0:abc",
        origin=ORIGIN,
        draft=Draft(
            recipient="grace@example.com",
            channel=MessageChannel.EMAIL,
            subject="Hello",
            message=email,
        ),
    )
    await save(stack, composer, age=40)
    await save(stack, quick("command:broken", "x", "x", None), age=30, payload={"draft": 5})

    await stack.start_bridge()

    await eventually(lambda: all(sent(stack)[t] == 1 for t in (fresh, late, email)), within=20)
    await eventually(lambda: all_done(stack), within=20)
    assert await intent_rows(stack) == {
        "command:late": ("done", "queued"),
        "command:stale": ("done", "stale"),
        "command:fresh": ("done", "queued"),
        "command:dnd": ("done", "refused"),
        "view:V0:abc": ("done", "queued"),
        "command:broken": ("done", "unreadable"),
    }
    await eventually(lambda: len(ephemerals(stack, "response_url")) == 2)
    by_url = {p.url: str(p.body.get("text")) for p in stack.slack.response_url_posts()}
    assert "Sending SMS to Ada Lovelace" in by_url[fresh_url]
    assert "Do Not Disturb" in by_url[dnd_url] or "Opted out" in by_url[dnd_url], by_url
    assert old_url not in by_url
    await eventually(lambda: len(ephemerals(stack, "chat.postEphemeral")) >= 4)
    told = "\n".join(ephemerals(stack, "chat.postEphemeral"))
    assert "Sending SMS to Ada Lovelace" in told  # the late one
    assert "Sending Email to Grace Hopper" in told
    assert "too late to send it now" in told
    assert "could not be read back" in told
    assert sent(stack) == Counter({fresh: 1, late: 1, email: 1})


async def test_a_send_that_cannot_be_saved_before_the_ack_is_refused_plainly(
    stack: SandboxStack,
) -> None:
    view_id = await open_composer(stack)
    # The database refuses every intent (as a full disk would): the write fails at once.
    if is_postgres_url(url_of(stack)):
        await query(
            stack,
            "CREATE FUNCTION refuse_intent() RETURNS trigger LANGUAGE plpgsql"
            " AS $$ BEGIN RAISE EXCEPTION 'could not extend file: No space left on device'; END $$",
        )
        await query(
            stack,
            "CREATE TRIGGER refuse_intents BEFORE INSERT ON compose_intents"
            " FOR EACH ROW EXECUTE FUNCTION refuse_intent()",
        )
    else:
        await query(
            stack,
            "CREATE TRIGGER refuse_intents BEFORE INSERT ON compose_intents"
            " BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END",
        )

    result = await stack.driver.slash_command(
        "/sendsms", "+1 415 555 0100 not saved", user_id=AGENT_USER, channel_id=SALES_CHANNEL
    )
    assert result.status == 200
    assert result.json is not None
    assert "nothing was sent" in result.json["text"]

    answer = await submit(
        stack,
        view_id,
        {"recipient": "+14155550100", "message": "not saved either"},
    )
    assert answer.get("response_action") == "errors", answer
    assert "nothing was sent" in " ".join(answer["errors"].values())
    assert stack.slack.open_views(AGENT_USER)  # the composer stays open, the text in it
    assert sends(stack) == []
