"""The demo's script: six steps, each an action and a bounded wait for its effect."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

from bot.demo.console import Console
from bot.demo.slack_text import SlackNames, readable, render_message
from bot.sandbox.highlevel import ADA_LOVELACE_ID, GRACE_HOPPER_ID
from bot.sandbox.slack import DriverResult, SimView, SlackMessage
from bot.sandbox.stack import AGENT_USER, SALES_CHANNEL, SandboxStack

T = TypeVar("T")

# The steps, in order: each prints "✓ <title>" when its effect was seen.
STEP_QUICK_SEND: Final = "quick send"
STEP_EMAIL: Final = "email from the composer"
STEP_REPLIES: Final = "customer replies"
STEP_THREADED_REPLY: Final = "email reply in the customer's thread"
STEP_SCHEDULE: Final = "scheduled send, then cancelled"
STEP_FAILURE: Final = "refused send shows HighLevel's reason"
STEPS: Final = (
    STEP_QUICK_SEND,
    STEP_EMAIL,
    STEP_REPLIES,
    STEP_THREADED_REPLY,
    STEP_SCHEDULE,
    STEP_FAILURE,
)

# The script. Ada (+1 415 555 0100) and Grace (grace@example.com) are the simulator's seeded
# contacts.
ADA_NUMBER: Final = "+1 415 555 0100"
QUICK_TEXT: Final = "Hi Ada, your table for two is ready at 7pm."
EMAIL_SUBJECT: Final = "Your quote for the spring event"
EMAIL_TEXT: Final = "Hi Grace, the quote is attached. It holds until Friday."
EMAIL_CC: Final = "events@example.com"
ADA_REPLY: Final = "Perfect, see you at 7! Can we sit by the window?"
GRACE_REPLY: Final = "Looks good. Copying Alan, who signs off on budgets."
GRACE_REPLY_CC: Final = "alan@example.com"
THREADED_REPLY: Final = "Thanks Grace. Alan, the invoice follows once you confirm."
SCHEDULED_TEXT: Final = "Reminder: your table is booked for 7pm tonight."
REFUSED_TEXT: Final = "One more thing: parking is free after 6pm."

SEND: Final = ("POST", "/conversations/messages")


class StepFailed(Exception):
    """A step's effect was not seen; `reason` says what was missing."""

    def __init__(self, reason: str, step: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.step = step


@dataclass
class _ScriptState:
    """What later steps need from earlier ones, and what the person has already seen."""

    ada_root: str = ""
    grace_root: str = ""
    email_thread_id: str = ""
    notices_seen: int = 0
    views_seen: set[str] = field(default_factory=set)


class _Script:
    """The six steps, each an action and a bounded wait for its effect."""

    def __init__(
        self, stack: SandboxStack, out: Console, names: SlackNames, *, timeout: float
    ) -> None:
        self.stack = stack
        self.out = out
        self.names = names
        self.timeout = timeout
        self.ids = _ScriptState()

    async def play(self) -> StepFailed | None:
        steps: list[tuple[str, Callable[[], Awaitable[str]]]] = [
            (STEP_QUICK_SEND, self.quick_send),
            (STEP_EMAIL, self.composed_email),
            (STEP_REPLIES, self.customer_replies),
            (STEP_THREADED_REPLY, self.threaded_email_reply),
            (STEP_SCHEDULE, self.schedule_then_cancel),
            (STEP_FAILURE, self.refused_send),
        ]
        for title, step in steps:
            self.out.begin_step(title)
            self.ids.notices_seen = len(self.stack.slack.ephemerals(user=AGENT_USER))
            try:
                detail = await step()
            except StepFailed as exc:
                exc.step = title
                self.out.end_step(title, exc.reason, ok=False)
                return exc
            except Exception as exc:  # a broken step is a step that did not happen
                failed = StepFailed(f"{type(exc).__name__}: {exc}", title)
                self.out.end_step(title, failed.reason, ok=False)
                return failed
            self.out.end_step(title, detail, ok=True)
        return None

    # ------------------------------------------------------------ steps

    async def quick_send(self) -> str:
        await self._command("/sendsms", f"{ADA_NUMBER} {QUICK_TEXT}")
        body = await self._wait(
            lambda: self._send(contactId=ADA_LOVELACE_ID, message=QUICK_TEXT),
            "HighLevel did not receive the SMS",
        )
        root = await self._wait(
            lambda: self._root_showing("Ada Lovelace", QUICK_TEXT, sent=True),
            "no post in #sales shows the SMS as sent",
        )
        self.ids.ada_root = root.ts
        return f"/sendsms {ADA_NUMBER} {QUICK_TEXT} → {body['type']} to Ada Lovelace, new thread"

    async def composed_email(self) -> str:
        await self._command("/sendemail", "grace@example.com")
        view = await self._new_view()
        await self._submit(view, {"subject": EMAIL_SUBJECT, "message": EMAIL_TEXT, "cc": EMAIL_CC})
        body = await self._wait(
            lambda: self._send(type="Email", contactId=GRACE_HOPPER_ID, subject=EMAIL_SUBJECT),
            "HighLevel did not receive the email",
        )
        root = await self._wait(
            lambda: self._root_showing("Grace Hopper", EMAIL_SUBJECT, sent=True),
            "no post in #sales shows the email as sent",
        )
        self.ids.grace_root = root.ts
        thread = self._email_thread_id(GRACE_HOPPER_ID)
        if thread is None:
            raise StepFailed("HighLevel has no email thread for Grace")
        self.ids.email_thread_id = thread
        cc = ", ".join(body.get("emailCc") or [])
        return f"Email to Grace Hopper, subject “{EMAIL_SUBJECT}”, CC {cc}; email thread {thread}"

    async def customer_replies(self) -> str:
        highlevel = self.stack.highlevel
        await highlevel.drain_webhooks()
        await highlevel.customer_reply(ADA_LOVELACE_ID, "SMS", ADA_REPLY)
        await highlevel.customer_reply(GRACE_HOPPER_ID, "Email", GRACE_REPLY, cc=[GRACE_REPLY_CC])
        await self._wait(
            lambda: self._reply_showing(self.ids.ada_root, ADA_REPLY),
            "Ada's SMS reply did not appear in her thread",
        )
        await self._wait(
            lambda: self._reply_showing(self.ids.grace_root, GRACE_REPLY),
            "Grace's email reply did not appear in her thread",
        )
        return f"Ada by SMS, Grace by email (CC {GRACE_REPLY_CC}): each in its own thread"

    async def threaded_email_reply(self) -> str:
        result = await self.stack.driver.block_action(
            "reply", user_id=AGENT_USER, channel_id=SALES_CHANNEL, message_ts=self.ids.grace_root
        )
        _require_ok(result, "the Reply button")
        view = await self._new_view()
        await self._submit(view, {"message": THREADED_REPLY})
        body = await self._wait(
            lambda: self._send(type="Email", contactId=GRACE_HOPPER_ID, message=THREADED_REPLY),
            "HighLevel did not receive the email reply",
        )
        thread_id = body.get("threadId")
        reply_to = body.get("replyMessageId")
        mode = body.get("emailReplyMode")
        answered = self._latest_inbound_email_id(GRACE_HOPPER_ID)
        if thread_id != self.ids.email_thread_id:
            raise StepFailed(
                f"the reply's threadId is {thread_id!r}, not the thread {self.ids.email_thread_id}"
            )
        if reply_to is None or reply_to != answered:
            raise StepFailed(f"the reply's replyMessageId is {reply_to!r}, not {answered!r}")
        await self._wait(
            lambda: self._reply_showing(self.ids.grace_root, THREADED_REPLY, sent=True),
            "the reply's post in Grace's thread does not show it as sent",
        )
        cc = ", ".join(body.get("emailCc") or [])
        return f"threadId={thread_id} replyMessageId={reply_to} emailReplyMode={mode} (CC {cc})"

    async def schedule_then_cancel(self) -> str:
        when = int(time.time()) + 3600
        await self._command("/sendsms", ADA_NUMBER)  # a number and no text: the composer
        view = await self._new_view()
        await self._submit(view, {"message": SCHEDULED_TEXT, "schedule": when})
        await self._wait(
            lambda: self._send(message=SCHEDULED_TEXT, scheduledTimestamp=when),
            "HighLevel did not receive the scheduled SMS",
        )
        post = await self._wait(
            lambda: self._reply_with_action(self.ids.ada_root, "cancel_scheduled"),
            "no post offers Cancel for the scheduled SMS",
        )
        result = await self.stack.driver.block_action(
            "cancel_scheduled", user_id=AGENT_USER, channel_id=SALES_CHANNEL, message_ts=post.ts
        )
        _require_ok(result, "the Cancel button")
        await self._wait(
            lambda: self._shows(SALES_CHANNEL, post.ts, "Cancelled"),
            "the post does not say the message was cancelled",
        )
        cancelled = await self._wait(
            lambda: list(self.stack.highlevel.cancelled), "HighLevel did not cancel it"
        )
        at = datetime.fromtimestamp(when, UTC).strftime("%H:%M UTC")
        return f"scheduled for {at}; Cancel → HighLevel cancelled message {cancelled[-1]}"

    async def refused_send(self) -> str:
        # Ada opts out of SMS in HighLevel. The bridge looked her up a moment ago (contacts are
        # cached for a minute), so it sends, and HighLevel refuses with its own 422.
        contact = self.stack.highlevel.contacts[ADA_LOVELACE_ID]
        contact.dnd_settings["SMS"] = {"status": "active", "message": "Opted out by STOP reply"}
        await self._command("/sendsms", f"{ADA_NUMBER} {REFUSED_TEXT}")
        post = await self._wait(
            lambda: self._reply_showing(self.ids.ada_root, REFUSED_TEXT, refused=True),
            "no post shows the SMS as not sent",
        )
        refusals = [r for r in self.stack.highlevel.requests_to(*SEND) if r.status == 422]
        if not refusals:
            raise StepFailed("HighLevel did not refuse anything; the bridge stopped it itself")
        shown = [line for line in self._lines(post) if line.startswith("✗ Not sent")]
        status = shown[0] if shown else "✗ Not sent"
        return f"HighLevel answered 422; Slack shows “{status}” with [Retry]"

    # ------------------------------------------------------------ acting

    async def _command(self, command: str, text: str) -> None:
        result = await self.stack.driver.slash_command(
            command, text, user_id=AGENT_USER, channel_id=SALES_CHANNEL
        )
        _require_ok(result, command)
        answer = result.json if isinstance(result.json, dict) else {}
        if answer.get("text"):
            raise StepFailed(f"{command} answered: {answer['text']}")

    async def _new_view(self) -> SimView:
        def opened() -> SimView | None:
            fresh = [
                v
                for v in self.stack.slack.open_views(AGENT_USER)
                if v.id not in self.ids.views_seen
            ]
            return fresh[-1] if fresh else None

        view = await self._wait(opened, "the composer did not open")
        self.ids.views_seen.add(view.id)
        return view

    async def _submit(self, view: SimView, values: Mapping[str, Any]) -> None:
        answers = {name: {name: value} for name, value in values.items()}
        result = await self.stack.driver.view_submission(
            view.id, user_id=AGENT_USER, values=answers
        )
        _require_ok(result, "the composer")
        answer = result.json if isinstance(result.json, dict) else {}
        if answer.get("response_action") == "errors":
            errors = "; ".join(f"{k}: {v}" for k, v in (answer.get("errors") or {}).items())
            raise StepFailed(f"the composer refused it: {errors}")

    async def _wait(self, check: Callable[[], T | None], missing: str) -> T:
        """`check`'s first truthy value, polled until the step timeout; an error notice that
        Slack showed the person meanwhile ends the wait at once, with its text."""
        deadline = time.monotonic() + self.timeout
        while True:
            value = check()
            if value:
                return value
            notice = self._error_notice()
            if notice is not None:
                raise StepFailed(f"{missing}; Slack said: {notice}")
            if time.monotonic() > deadline:
                raise StepFailed(f"{missing} (waited {self.timeout:g} s)")
            await asyncio.sleep(0.05)

    # ------------------------------------------------------------ looking

    def _send(self, **expected: Any) -> dict[str, Any] | None:
        """The latest send HighLevel accepted whose body has the `expected` fields."""
        for record in reversed(self.stack.highlevel.requests_to(*SEND)):
            body = record.body
            if record.status != 200 or not isinstance(body, dict):
                continue
            if all(body.get(key) == value for key, value in expected.items()):
                return body
        return None

    def _lines(self, message: SlackMessage) -> list[str]:
        return render_message(message, self.names)

    def _text(self, message: SlackMessage) -> str:
        return "\n".join(self._lines(message))

    def _root_showing(self, who: str, needle: str, *, sent: bool) -> SlackMessage | None:
        for message in self.stack.slack.channel_messages(SALES_CHANNEL):
            text = self._text(message)
            if message.bot_id and who in text and needle in text and (not sent or _went(text)):
                return message
        return None

    def _reply_showing(
        self, root_ts: str, needle: str, *, sent: bool = False, refused: bool = False
    ) -> SlackMessage | None:
        for message in self.stack.slack.thread(SALES_CHANNEL, root_ts)[1:]:
            text = self._text(message)
            if needle not in text or (sent and not _went(text)):
                continue
            if refused and "Not sent" not in text:
                continue
            return message
        return None

    def _reply_with_action(self, root_ts: str, action_id: str) -> SlackMessage | None:
        for message in self.stack.slack.thread(SALES_CHANNEL, root_ts):
            if action_id in _action_ids(message):
                return message
        return None

    def _shows(self, channel: str, ts: str, needle: str) -> bool:
        message = self.stack.slack.message(channel, ts)
        return message is not None and needle in self._text(message)

    def _error_notice(self) -> str | None:
        notices = self.stack.slack.ephemerals(user=AGENT_USER)[self.ids.notices_seen :]
        for notice in notices:
            if notice.text.startswith("✗"):
                return readable(notice.text, self.names)
        return None

    def _email_thread_id(self, contact_id: str) -> str | None:
        conversation = self.stack.highlevel.conversation_for(contact_id)
        if conversation is None:
            return None
        emails = self.stack.highlevel.emails_for(conversation.id)
        return emails[0].thread_id if emails else None

    def _latest_inbound_email_id(self, contact_id: str) -> str | None:
        conversation = self.stack.highlevel.conversation_for(contact_id)
        if conversation is None:
            return None
        inbound = [
            e for e in self.stack.highlevel.emails_for(conversation.id) if e.direction == "inbound"
        ]
        return inbound[-1].id if inbound else None


def _require_ok(result: DriverResult, what: str) -> None:
    if not result.ok:
        raise StepFailed(f"{what}: the bridge answered HTTP {result.status}: {result.text[:200]}")


def _went(text: str) -> bool:
    return "✓ Sent" in text or "Delivered" in text


def _action_ids(message: SlackMessage) -> list[str]:
    return [
        str(element.get("action_id"))
        for block in message.blocks or []
        if block.get("type") == "actions"
        for element in block.get("elements") or []
        if isinstance(element, dict)
    ]
