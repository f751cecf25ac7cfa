"""`ghl-bridge demo`: the whole product on this machine, a scripted conversation, no accounts.

It starts a `SandboxStack` (the HighLevel and Slack simulators and a real `ghl-bridge serve` on
loopback, with a throwaway SQLite file), plays a person in Slack — through signed requests, as
Slack sends them — and the customers in HighLevel, and checks that each step had its effect.
Then it prints what Slack would show, channel by channel and thread by thread, and the thread
map the bridge keeps in its database. It exits 1, naming the step, if any step did not happen.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TextIO, TypeVar

from bot.demo_tenancy import STEP_SUB_ACCOUNTS, play_sub_accounts
from bot.sandbox.highlevel import ADA_LOVELACE_ID, GRACE_HOPPER_ID, HighLevelSimulator
from bot.sandbox.slack import DriverResult, SimView, SlackMessage
from bot.sandbox.stack import (
    AGENT_USER,
    INBOX_CHANNEL,
    NO_BOT_CHANNEL,
    OTHER_USER,
    SALES_CHANNEL,
    SandboxStack,
)
from storage import SqliteStore, ThreadRecord

__all__ = [
    "STEPS",
    "Console",
    "SlackNames",
    "StepFailed",
    "add_arguments",
    "readable",
    "render_blocks",
    "render_message",
    "run",
    "use_color",
]

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
DEFAULT_STEP_TIMEOUT: Final = 10.0
# Fast Slack posting, so the demo never waits on the pacer (Slack's real limit is 1/s/channel).
DEMO_SETTINGS: Final[Mapping[str, Any]] = {"slack_post_rate": 20.0}
EXIT_OK: Final = 0
EXIT_STEP_FAILED: Final = 1
EXIT_USAGE: Final = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `ghl-bridge demo` options."""
    parser.add_argument(
        "--no-color", action="store_true", help="plain output even on a terminal (or set NO_COLOR)"
    )
    parser.add_argument(
        "--keep-db",
        type=Path,
        metavar="PATH",
        help="keep the bridge's SQLite database at PATH (a new file) to look at afterwards",
    )
    parser.add_argument(
        "--step-timeout",
        type=float,
        default=DEFAULT_STEP_TIMEOUT,
        metavar="SECONDS",
        help=f"how long to wait for each step's effect (default {DEFAULT_STEP_TIMEOUT:g})",
    )


async def run(args: argparse.Namespace, *, highlevel: HighLevelSimulator | None = None) -> int:
    """Play the demo; 0 when every step happened, 1 when one did not, 2 for bad options.

    `highlevel` replaces the stock simulator (its seeded contacts are expected).
    """
    out = Console(sys.stdout, color=use_color(sys.stdout, no_color=bool(args.no_color)))
    keep: Path | None = args.keep_db
    if keep is not None and await asyncio.to_thread(keep.exists):
        out.line(out.red(f"{keep} exists; --keep-db needs a new file (the demo starts empty)."))
        return EXIT_USAGE
    started = time.monotonic()
    with _database_path(keep) as path, _quiet_logging():
        out.line(
            out.bold("ghl-bridge demo") + out.dim(" — simulated Slack and HighLevel, no accounts")
        )
        stack = SandboxStack(path, highlevel=highlevel, settings_overrides=dict(DEMO_SETTINGS))
        try:
            try:
                await stack.start()
            except Exception as exc:  # e.g. no free port, a database that cannot be created
                out.line(out.red(f"✗ The sandbox did not start: {type(exc).__name__}: {exc}"))
                return EXIT_STEP_FAILED
            names = SlackNames.of(stack)
            failure = await _Script(stack, out, names, timeout=float(args.step_timeout)).play()
            out.line()
            out.transcript(stack, names)
        finally:
            await stack.stop()
        threads = await _read_threads(path, stack)
        out.thread_map(threads, names, kept_at=keep)
        if failure is None:
            out.line()
            # A bridge and database of its own (bot/demo_tenancy.py), beside this one.
            problem = await play_sub_accounts(
                path.with_name(path.stem + "-subaccounts.sqlite3"),
                out,
                step_seconds=float(args.step_timeout),
            )
            if problem is not None:
                failure = StepFailed(problem, STEP_SUB_ACCOUNTS)
    elapsed = time.monotonic() - started
    out.line()
    if failure is not None:
        out.line(out.red(f"✗ Demo failed: step “{failure.step}” did not happen: {failure.reason}"))
        return EXIT_STEP_FAILED
    out.line(out.green(f"✓ All {len(STEPS) + 1} steps happened in {elapsed:.1f} s."))
    return EXIT_OK


# ---------------------------------------------------------------- the script


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


# ---------------------------------------------------------------- database


async def _read_threads(path: Path, stack: SandboxStack) -> list[ThreadRecord]:
    """Every thread the bridge mapped, oldest first (read after the bridge stopped)."""
    location = stack.highlevel.location_id
    found: dict[int, ThreadRecord] = {}
    async with SqliteStore(path) as store:
        for contact_id in list(stack.highlevel.contacts):
            for thread in await store.find_threads_for_contact(location, contact_id):
                found[thread.id] = thread
    return sorted(found.values(), key=lambda t: t.id)


@contextlib.contextmanager
def _database_path(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.parent.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="ghl-bridge-demo-") as folder:
        yield Path(folder) / "demo.sqlite3"


@contextlib.contextmanager
def _quiet_logging() -> Iterator[None]:
    """Only warnings while the demo runs, whatever the loggers' levels, so the transcript stays
    readable; the previous setting comes back afterwards."""
    previous = logging.root.manager.disable
    logging.disable(logging.INFO)
    try:
        yield
    finally:
        logging.disable(previous)


# ---------------------------------------------------------------- rendering Slack as text

# `<...>` markup: mentions, channels, dates, special mentions and links.
_ANGLE: Final = re.compile(r"<([^<>\n]*)>")
_ENTITY: Final = re.compile(r"&(lt|gt|amp);")
_ENTITIES: Final = {"lt": "<", "gt": ">", "amp": "&"}
# *bold* / _italic_ / ~strike~ as Slack reads them: not inside words, not around spaces.
_EMPHASIS: Final = re.compile(r"(?<![\w*_~])([*_~])(?=\S)([^\n]*?\S)\1(?![\w*_~])")


@dataclass(frozen=True)
class SlackNames:
    """Who `<@U…>` and `<#C…>` are, for turning mrkdwn into text."""

    users: Mapping[str, str] = field(default_factory=dict)
    channels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, stack: SandboxStack) -> SlackNames:
        slack = stack.slack
        users = {
            user_id: user.real_name
            for user_id in (AGENT_USER, OTHER_USER, slack.bot_user_id)
            if (user := slack.user(user_id)) is not None
        }
        channels = {
            channel_id: channel.name
            for channel_id in (SALES_CHANNEL, INBOX_CHANNEL, NO_BOT_CHANNEL)
            if (channel := slack.channel(channel_id)) is not None
        }
        return cls(users, channels)


def readable(mrkdwn: str, names: SlackNames | None = None, *, emphasis: bool = False) -> str:
    """Slack mrkdwn as a person reads it: `<@U1>` → "@Name", `<!date^…|fallback>` → fallback,
    `<url|label>` → "label (url)", `&lt;` → "<"; `*bold*` marks dropped unless `emphasis`."""
    names = names or SlackNames()

    def markup(match: re.Match[str]) -> str:
        target, _, label = match.group(1).partition("|")
        if target.startswith("@"):
            return "@" + (label or names.users.get(target[1:], target[1:]))
        if target.startswith("#"):
            return "#" + (label or names.channels.get(target[1:], target[1:]))
        if target.startswith("!date^"):
            return label or target
        if target.startswith("!"):
            return "@" + (label or target[1:].split("^")[0])
        return f"{label} ({target})" if label and label != target else target

    text = _ANGLE.sub(markup, mrkdwn)
    if not emphasis:
        text = _EMPHASIS.sub(r"\2", text)
    return _ENTITY.sub(lambda m: _ENTITIES[m.group(1)], text)


def _object_text(value: Any, names: SlackNames, emphasis: bool = False) -> str:
    """A text object (plain_text or mrkdwn) as text."""
    if isinstance(value, str):
        return readable(value, names, emphasis=emphasis)
    if not isinstance(value, Mapping):
        return ""
    text = str(value.get("text", ""))
    return readable(text, names, emphasis=emphasis) if value.get("type") == "mrkdwn" else text


def _element_text(element: Any, names: SlackNames, emphasis: bool = False) -> str:
    if not isinstance(element, Mapping):
        return ""
    kind = element.get("type")
    if kind == "button":
        return f"[{_object_text(element.get('text'), names)}]"
    if kind == "image":
        return f"[image: {element.get('alt_text', '')}]"
    if kind in ("static_select", "overflow", "users_select", "conversations_select"):
        placeholder = _object_text(element.get("placeholder"), names) or "choose"
        return f"[{placeholder} ▾]"
    if kind in ("mrkdwn", "plain_text"):
        return _object_text(element, names, emphasis)
    return f"[{kind}]"


def _rich_text(element: Any) -> str:
    if not isinstance(element, Mapping):
        return ""
    if "text" in element and isinstance(element["text"], str):
        return element["text"]
    return "".join(_rich_text(child) for child in element.get("elements") or [])


def render_blocks(
    blocks: Sequence[Mapping[str, Any]], names: SlackNames | None = None, *, emphasis: bool = False
) -> list[str]:
    """Block Kit blocks as the lines of text a person reads; buttons as `[Label]`.

    With `emphasis`, mrkdwn's `*bold*`/`_italic_` marks are kept (for a terminal to style)."""
    names = names or SlackNames()
    lines: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind in ("section", "header"):
            if block.get("text"):
                lines += _object_text(block["text"], names, emphasis).splitlines() or [""]
            lines += [_object_text(f, names, emphasis) for f in block.get("fields") or []]
            accessory = block.get("accessory")
            if accessory:
                lines.append(_element_text(accessory, names))
        elif kind == "context":
            parts = [_element_text(e, names, emphasis) for e in block.get("elements") or []]
            lines.append("  ".join(p for p in parts if p))
        elif kind == "actions":
            lines.append("  ".join(_element_text(e, names) for e in block.get("elements") or []))
        elif kind == "divider":
            lines.append("────────")
        elif kind == "image":
            lines.append(f"[image: {block.get('alt_text', '')}]")
        elif kind == "rich_text":
            lines += _rich_text(block).splitlines()
        else:
            lines.append(f"[{kind} block]")
    return lines


def render_message(
    message: SlackMessage, names: SlackNames | None = None, *, emphasis: bool = False
) -> list[str]:
    """A message's lines: its blocks, else its text; then its reactions."""
    if message.blocks:
        lines = render_blocks(message.blocks, names, emphasis=emphasis)
    else:
        lines = readable(message.text, names, emphasis=emphasis).splitlines()
    if message.reactions:
        lines.append(
            "  ".join(f":{name}: {len(users)}" for name, users in message.reactions.items())
        )
    return lines


# ---------------------------------------------------------------- output


_UTF8: Final = frozenset({"utf-8", "utf8"})


def use_color(
    stream: TextIO, *, no_color: bool = False, env: Mapping[str, str] | None = None
) -> bool:
    """Colour only on a terminal, and not with --no-color, NO_COLOR (no-color.org) or TERM=dumb."""
    env = os.environ if env is None else env
    if no_color or env.get("NO_COLOR") or env.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Console:
    """Progress lines, the transcript and the thread map; ANSI colour only when `color`."""

    def __init__(self, stream: TextIO, *, color: bool) -> None:
        if isinstance(stream, io.TextIOWrapper) and stream.encoding.lower() not in _UTF8:
            # A legacy console or pipe encoding: show "?" for ✓ rather than crash on it.
            stream.reconfigure(errors="replace")
        self.stream = stream
        self.color = color

    def _paint(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def bold(self, text: str) -> str:
        return self._paint("1", text)

    def dim(self, text: str) -> str:
        return self._paint("2", text)

    def green(self, text: str) -> str:
        return self._paint("32", text)

    def red(self, text: str) -> str:
        return self._paint("31", text)

    def cyan(self, text: str) -> str:
        return self._paint("36", text)

    def styled(self, text: str) -> str:
        """Kept mrkdwn emphasis shown as terminal styles (`*bold*` bold, `_italic_` italic)."""
        codes = {"*": "1", "_": "3", "~": "9"}
        return _EMPHASIS.sub(lambda m: self._paint(codes[m.group(1)], m.group(2)), text)

    def line(self, text: str = "") -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def begin_step(self, title: str) -> None:
        if self.color:  # a live "working on it" line, replaced when the step ends
            self.stream.write(self.dim(f"… {title}"))
            self.stream.flush()

    def end_step(self, title: str, detail: str, *, ok: bool) -> None:
        if self.color:
            self.stream.write("\r\x1b[K")
        self.line(f"{self.green('✓') if ok else self.red('✗')} {title}")
        self.line("    " + (self.dim(detail) if ok else self.red(detail)))

    def _message(self, message: SlackMessage, names: SlackNames, indent: str) -> None:
        author = names.users.get(message.user, message.user)
        self.line(f"{indent}{self.bold('● ' + author)}")
        for line in render_message(message, names, emphasis=self.color):
            self.line(f"{indent}  {self.styled(line)}")

    def transcript(self, stack: SandboxStack, names: SlackNames) -> None:
        """What Slack shows, channel by channel and thread by thread, then private notices."""
        slack = stack.slack
        self.line(self.bold("What Slack shows"))
        for channel_id in (SALES_CHANNEL, INBOX_CHANNEL):
            messages = slack.channel_messages(channel_id)
            name = names.channels.get(channel_id, channel_id)
            self.line(self.cyan(f"━━ #{name} ━━") + self.dim(f" ({len(messages) or 'no'} posts)"))
            for message in messages:
                self._message(message, names, "")
                replies = slack.thread(channel_id, message.ts)[1:]
                if replies:
                    self.line(self.dim(f"  ┆ thread: {len(replies)} replies"))
                for reply in replies:
                    self._message(reply, names, "  ┆ ")
            self.line()
        notices = slack.ephemerals(user=AGENT_USER)
        who = names.users.get(AGENT_USER, AGENT_USER)
        self.line(self.cyan(f"━━ only visible to {who} ━━") + self.dim(f" ({len(notices)})"))
        for notice in notices:
            where = names.channels.get(notice.channel or "", notice.channel or "?")
            lines = render_blocks(notice.blocks or [], names, emphasis=self.color)
            body = " / ".join(lines) if lines else readable(notice.text, names)
            self.line(f"  #{where}: {self.styled(body)}")

    def thread_map(
        self, threads: Sequence[ThreadRecord], names: SlackNames, *, kept_at: Path | None
    ) -> None:
        self.line()
        where = f" — kept at {kept_at}" if kept_at is not None else ""
        self.line(self.bold("Thread map in the bridge's database") + self.dim(where))
        header = ("channel", "thread ts", "contact", "conversation", "type", "email thread")
        rows = [
            (
                f"#{names.channels.get(t.channel_id, t.channel_id)}",
                t.thread_ts or "—",
                t.contact_label or t.contact_id,
                t.conversation_id or "—",
                t.channel_type or "—",
                t.email_thread_id or "—",
            )
            for t in threads
        ]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        self.line("  " + self.dim(_row(header, widths)))
        for row in rows:
            self.line("  " + _row(row, widths))
        if not rows:
            self.line("  (none)")


def _row(values: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()
