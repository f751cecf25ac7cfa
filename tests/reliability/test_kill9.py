"""`kill -9` of a real `ghl-bridge serve` in the middle of 50 sends, and in the middle of posting
200 HighLevel messages, then a restart on the same SQLite file: nothing lost, nothing doubled,
interrupted sends looked up in the conversation, interrupted posts found in Slack."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sqlite3
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bot.sandbox.highlevel import HighLevelSimulator
from bot.sandbox.slack import SlackDriver, SlackMessage, SlackSimulator
from bot.sandbox.stack import (
    AGENT_USER,
    INBOX_CHANNEL,
    SALES_CHANNEL,
    SANDBOX_SIGNING_SECRET,
)
from bot.settings import HINTS
from tests.reliability._helpers import (
    PostState,
    SignedWebhook,
    action_ids,
    all_posts,
    eventually,
    inbound_payload,
    outbound_bodies,
    post_state,
    posts_containing,
    signed_body,
    text_of,
)

SENDS = 50
CONTACTS = 10
SERVING = re.compile(r"ghl-bridge serving on (http://\S+)")
# HighLevel stores a send, then takes this long to answer: a kill in between leaves a message
# that reached the customer while the bridge never heard back, the case reconciliation is for.
ANSWER_DELAY_SECONDS = 0.4


@web.middleware
async def _slow_send_answers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    response = await handler(request)
    if request.method == "POST" and request.path == "/conversations/messages":
        await asyncio.sleep(ANSWER_DELAY_SECONDS)
    return response


class BridgeProcess:
    """`python -m bot serve` in a child process; its stderr is collected as it runs."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self._env = env
        self._cwd = cwd
        self.process: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self._reader: asyncio.Task[None] | None = None
        self._url: asyncio.Future[str] | None = None

    async def start(self) -> str:
        self._url = asyncio.get_running_loop().create_future()
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "serve",
            env=self._env,
            cwd=self._cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read())
        return await asyncio.wait_for(self._url, 30)

    async def _read(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        async for raw in self.process.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.lines.append(line)
            match = SERVING.search(line)
            if match and self._url is not None and not self._url.done():
                self._url.set_result(match.group(1))
        if self._url is not None and not self._url.done():
            self._url.set_exception(RuntimeError("\n".join(self.lines[-20:])))

    async def kill(self) -> None:
        """SIGKILL: no cleanup, no finishing of in-flight work."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self._wait()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def reap(self) -> int:
        """Wait for a process killed from elsewhere (see `KillOnPost`)."""
        return await self._wait()

    async def stop(self) -> int:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        return await self._wait()

    async def _wait(self) -> int:
        assert self.process is not None
        code = await asyncio.wait_for(self.process.wait(), 30)
        if self._reader is not None:
            await self._reader
        return code


def _bridge_env(
    slack: SlackSimulator, highlevel: HighLevelSimulator, database: Path
) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in HINTS}
    env.update(
        {
            "SLACK_BOT_TOKEN": slack.bot_token,
            "SLACK_SIGNING_SECRET": SANDBOX_SIGNING_SECRET,
            "SLACK_API_URL": slack.api_url,
            "SLACK_INBOX_CHANNEL": INBOX_CHANNEL,
            "GHL_API_TOKEN": highlevel.token,
            "GHL_LOCATION_ID": highlevel.location_id,
            "GHL_API_URL": highlevel.base_url,
            "GHL_WEBHOOK_PUBLIC_KEY": highlevel.public_key_pem.replace("\n", "\\n"),
            "DATABASE_URL": f"sqlite:///{database}",
            "HOST": "127.0.0.1",
            "PORT": "0",
            "GHL_POLL_SECONDS": "0",
            "SLACK_POST_RATE": "200",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _outbox_states(database: Path) -> dict[int, str]:
    with contextlib.closing(sqlite3.connect(database)) as db:
        return {row[0]: row[1] for row in db.execute("SELECT id, state FROM outbox")}


@contextlib.asynccontextmanager
async def _simulators(
    highlevel: HighLevelSimulator | None = None,
) -> AsyncIterator[tuple[SlackSimulator, HighLevelSimulator]]:
    slack = SlackSimulator(post_rate_per_second=1000.0, post_burst=1000)
    slack.add_channel(SALES_CHANNEL, "sales")
    slack.add_channel(INBOX_CHANNEL, "inbox")
    slack.add_user(AGENT_USER, "agent", "Avery Agent")
    highlevel = highlevel or HighLevelSimulator()
    highlevel.app.middlewares.append(_slow_send_answers)
    await slack.start()
    await highlevel.start()
    try:
        yield slack, highlevel
    finally:
        await highlevel.stop()
        await slack.stop()


@pytest.mark.slow  # about 8 to 10 s: make test-slow (CI runs it)
async def test_kill_9_mid_sends_then_restart_loses_and_doubles_nothing(tmp_path: Path) -> None:
    started = time.monotonic()
    database = tmp_path / "bridge.sqlite3"
    async with _simulators() as (slack, highlevel):
        numbers = [f"+1415555{2000 + i}" for i in range(CONTACTS)]
        for index, number in enumerate(numbers):
            highlevel.add_contact(first_name=f"Kill{index}", phone=number)
        env = _bridge_env(slack, highlevel, database)

        first = BridgeProcess(env, tmp_path)
        url = await first.start()
        highlevel.webhook_url = f"{url}/ghl/webhooks"
        run = uuid.uuid4().hex[:6]
        texts = [f"kill {run} {i:02d}" for i in range(SENDS)]
        async with SlackDriver(f"{url}/slack/events", SANDBOX_SIGNING_SECRET, slack) as driver:
            for batch in range(0, SENDS, 10):
                results = await asyncio.gather(
                    *(
                        driver.slash_command(
                            "/sendsms",
                            f"{numbers[i % CONTACTS]} {texts[i]}",
                            user_id=AGENT_USER,
                            channel_id=SALES_CHANNEL,
                        )
                        for i in range(batch, batch + 10)
                    )
                )
                assert [r.status for r in results] == [200] * 10
        # Every compose is queued (the person was told "Sending…") before the kill.
        await eventually(
            lambda: sum("Sending" in e.text for e in slack.ephemerals(user=AGENT_USER)) == SENDS,
            within=20,
        )
        await eventually(lambda: highlevel.sent_count() >= SENDS // 3, within=30, interval=0.01)
        await first.kill()
        at_kill = _outbox_states(database)
        interrupted = [i for i, state in at_kill.items() if state == "sending"]
        assert len(at_kill) == SENDS
        assert interrupted, f"the kill should land mid-send: {at_kill}"
        assert any(state == "pending" for state in at_kill.values())
        sent_before_restart = highlevel.sent_count()

        second = BridgeProcess(env, tmp_path)
        url = await second.start()
        highlevel.webhook_url = f"{url}/ghl/webhooks"
        try:

            def settled() -> bool:
                states = _outbox_states(database)
                if any(s in ("pending", "sending") for s in states.values()):
                    return False
                found = posts_containing(all_posts(slack, [SALES_CHANNEL]), texts)
                return all(
                    posts and all(post_state(p) != PostState.SENDING for p in posts)
                    for posts in found.values()
                )

            await eventually(settled, within=60, interval=0.2)
            await highlevel.drain_webhooks()
        finally:
            assert await second.stop() == 0

    states = _outbox_states(database)
    at_highlevel = outbound_bodies(highlevel)
    posts = posts_containing(all_posts(slack, [SALES_CHANNEL]), texts)
    shown = {"sent": 0, "unknown": 0, "failed": 0}
    for text in texts:
        assert at_highlevel[text] <= 1, f"{text!r} reached HighLevel {at_highlevel[text]} times"
        assert len(posts[text]) == 1, f"{text!r} is shown {len(posts[text])} times"
        state = post_state(posts[text][0])
        if at_highlevel[text] == 1:
            assert state == PostState.SENT, (text, state)
        else:
            assert state in (PostState.UNKNOWN, PostState.FAILED), (text, state)
            assert {"resend", "retry"} & set(action_ids(posts[text][0]))
        shown[state] += 1
    assert set(states.values()) <= {"sent", "unknown", "failed"}
    # Entries the kill left 'sending' were looked up in the conversation on restart.
    assert any("interrupted by a stop" in line for line in second.lines), second.lines[-20:]
    for outbox_id in interrupted:
        assert states[outbox_id] in ("sent", "unknown")
    # HighLevel stores each send well before its slow answer, so sends in flight had reached it:
    # the restart found them in the conversation instead of asking a person.
    assert "sent" in {states[i] for i in interrupted}
    print(
        f"\nkill -9 after {sent_before_restart}/{SENDS} reached HighLevel, "
        f"{len(interrupted)} in flight: {shown['sent']} sent once, {shown['unknown']} shown "
        f"unknown, {shown['failed']} shown failed, 0 doubled, 0 lost "
        f"(in-flight ones now {[states[i] for i in interrupted]}); "
        f"{time.monotonic() - started:.0f} s"
    )


# ---------------------------------------------------------------- kill -9 while posting inbound

INBOUND_MESSAGES = 200
INBOUND_CONTACTS = 20
DELIVERY_SLOTS = 16


@dataclass
class Killed:
    """The post Slack had just stored when the bridge was killed (it never heard back)."""

    text: str
    is_root: bool


class KillOnPost:
    """Kills the bridge with SIGKILL from inside the Slack simulator, right after a post is
    stored and before Slack answers: exactly the window between chat.postMessage and the
    commit of its ts, hit every time rather than by luck of timing."""

    def __init__(self, slack: SlackSimulator, bridge_up: asyncio.Event) -> None:
        self._slack = slack
        self._bridge_up = bridge_up
        self.killed = asyncio.Event()
        self.post: Killed | None = None

    def arm(self, bridge: BridgeProcess, *, after_posts: int, roots: bool) -> None:
        """Kill `bridge` at its first root post (`roots`) or thread reply once it has made
        `after_posts` posts."""
        self.killed.clear()
        self.post = None
        made = 0

        def after_post(message: SlackMessage) -> None:
            nonlocal made
            made += 1
            if self.post is not None or made <= after_posts or (message.thread_ts is None) != roots:
                return
            os.kill(bridge.pid, signal.SIGKILL)
            self._slack.after_post = None
            self._bridge_up.clear()
            self.post = Killed(text_of(message), is_root=message.thread_ts is None)
            self.killed.set()

        self._slack.after_post = after_post


def _message_state(database: Path, message_id: str) -> tuple[list[str], list[str | None]]:
    """The states of the inbound events about `message_id`, and the Slack ts of its rows."""
    with contextlib.closing(sqlite3.connect(database)) as db:
        events = [
            state
            for state, payload in db.execute("SELECT state, payload FROM inbound_events")
            if message_id
            in {json.loads(payload).get(k) for k in ("key_id", "message_id", "messageId")}
        ]
        rows = [
            row[0]
            for row in db.execute(
                "SELECT slack_ts FROM messages WHERE ghl_message_id = ?", (message_id,)
            )
        ]
    return events, rows


def _inbound_settled(database: Path) -> bool:
    with contextlib.closing(sqlite3.connect(database)) as db:
        busy: int = db.execute(
            "SELECT COUNT(*) FROM inbound_events WHERE state IN ('pending', 'processing')"
        ).fetchone()[0]
    return busy == 0


async def test_kill_9_mid_inbound_posting_shows_each_message_once_in_one_thread(
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    database = tmp_path / "bridge.sqlite3"
    key = Ed25519PrivateKey.generate()
    async with _simulators(HighLevelSimulator(signing_key=key)) as (slack, highlevel):
        contacts = [
            highlevel.add_contact(first_name=f"Crash{i}", phone=f"+1415555{6000 + i}").id
            for i in range(INBOUND_CONTACTS)
        ]
        run = uuid.uuid4().hex[:6]
        webhooks = [
            signed_body(
                key,
                inbound_payload(
                    location_id=highlevel.location_id,
                    contact_id=contacts[i % INBOUND_CONTACTS],
                    conversation_id=f"crash-{run}-{i % INBOUND_CONTACTS}",
                    text=f"crash {run} {i:03d}",
                ),
            )
            for i in range(INBOUND_MESSAGES)
        ]
        by_text = {w.text: w for w in webhooks}
        env = _bridge_env(slack, highlevel, database)
        bridge_up = asyncio.Event()
        current = {"url": ""}
        killer = KillOnPost(slack, bridge_up)

        async def start_bridge() -> BridgeProcess:
            bridge = BridgeProcess(env, tmp_path)
            current["url"] = await bridge.start()
            bridge_up.set()
            return bridge

        async def deliver(http: httpx.AsyncClient, webhook: SignedWebhook) -> None:
            """Until the bridge answers 200 (stored): whichever bridge is up at the time."""
            while True:
                await bridge_up.wait()
                try:
                    answer = await http.post(
                        f"{current['url']}/ghl/webhooks",
                        content=webhook.body,
                        headers=webhook.headers,
                    )
                    if answer.status_code == 200:
                        return
                except httpx.TransportError:
                    pass  # killed meanwhile: sent again once the next bridge is up
                await asyncio.sleep(0.05)

        async def deliver_all() -> None:
            slots = asyncio.Semaphore(DELIVERY_SLOTS)

            async def one(http: httpx.AsyncClient, webhook: SignedWebhook) -> None:
                async with slots:
                    await deliver(http, webhook)

            async with httpx.AsyncClient(timeout=30) as http:
                await asyncio.gather(*(one(http, w) for w in webhooks))

        kills: list[tuple[Killed, list[str], list[str | None]]] = []

        async def kill_while_posting(bridge: BridgeProcess, *, roots: bool) -> None:
            killer.arm(bridge, after_posts=5, roots=roots)
            await asyncio.wait_for(killer.killed.wait(), 60)
            await bridge.reap()
            killed = killer.post
            assert killed is not None
            message_id = next(w.message_id for t, w in by_text.items() if t in killed.text)
            events, rows = _message_state(database, message_id)
            # The post exists in Slack, and the database was killed before it heard of it.
            assert "processing" in events, events
            assert rows == [None], rows
            kills.append((killed, events, rows))

        first = await start_bridge()
        delivering = asyncio.create_task(deliver_all())
        # First: while the bridge posts a conversation's first message, its thread root.
        await kill_while_posting(first, roots=True)
        assert kills[0][0].is_root
        # A fresh event is posted directly: nothing was looked up before the first kill.
        looked_before = [c for c in slack.calls if c.method.startswith("conversations.")]
        assert [c.method for c in looked_before if c.method != "conversations.info"] == []

        # Second: after the restart, while it posts a reply into a thread.
        second = await start_bridge()
        await kill_while_posting(second, roots=False)
        assert not kills[1][0].is_root

        third = await start_bridge()
        try:
            await asyncio.wait_for(delivering, 120)
            texts = list(by_text)

            def all_shown() -> bool:
                found = posts_containing(all_posts(slack, [INBOX_CHANNEL]), texts)
                return all(found[text] for text in texts) and _inbound_settled(database)

            await eventually(all_shown, within=90, interval=0.2)
        finally:
            assert await third.stop() == 0

    posts = all_posts(slack, [INBOX_CHANNEL])
    found = posts_containing(posts, list(by_text))
    doubled = {text: len(shown) for text, shown in found.items() if len(shown) != 1}
    assert doubled == {}, doubled
    roots = [m for m in slack.channel_messages(INBOX_CHANNEL) if m.bot_id]
    assert len(roots) == INBOUND_CONTACTS, [text_of(m)[:50] for m in roots]
    # Each contact's messages are all in its one thread.
    for index in range(INBOUND_CONTACTS):
        mine = [t for t in by_text if int(t.rsplit(" ", 1)[1]) % INBOUND_CONTACTS == index]
        threads = {found[t][0].thread_ts or found[t][0].ts for t in mine}
        assert len(threads) == 1, (index, threads)
    assert slack.orphaned_replies() == []
    lookups = [
        c.method
        for c in slack.calls
        if c.method in ("conversations.history", "conversations.replies")
    ]
    cut_short = ", ".join("root" if k.is_root else "reply" for k, _, _ in kills)
    print(
        f"\nkill -9 twice mid-post ({cut_short}"
        f" just posted, not recorded): {INBOUND_MESSAGES} messages over {INBOUND_CONTACTS} contacts"
        f" each shown once, {len(roots)} thread roots, {len(lookups)} Slack look-ups on restart"
        f" ({len(slack.calls_to('chat.postMessage'))} posts); {time.monotonic() - started:.0f} s"
    )


def _outbox_posts(database: Path) -> dict[int, tuple[str, str | None]]:
    with contextlib.closing(sqlite3.connect(database)) as db:
        return {
            row[0]: (row[1], row[2]) for row in db.execute("SELECT id, state, slack_ts FROM outbox")
        }


async def test_kill_9_right_after_a_sends_first_post_keeps_one_post_and_one_thread(
    tmp_path: Path,
) -> None:
    database = tmp_path / "bridge.sqlite3"
    async with _simulators() as (slack, highlevel):
        contact = highlevel.add_contact(first_name="Cut", phone="+14155557000").id
        env = _bridge_env(slack, highlevel, database)
        killer = KillOnPost(slack, asyncio.Event())
        first = BridgeProcess(env, tmp_path)
        url = await first.start()
        # The send's post, the root of the contact's new thread, is made; the bridge dies
        # before it records it (and before HighLevel hears of the send).
        killer.arm(first, after_posts=0, roots=True)
        async with SlackDriver(f"{url}/slack/events", SANDBOX_SIGNING_SECRET, slack) as driver:
            result = await driver.slash_command(
                "/sendsms", "+14155557000 cut short", user_id=AGENT_USER, channel_id=SALES_CHANNEL
            )
            assert result.status == 200
        await asyncio.wait_for(killer.killed.wait(), 30)
        await first.reap()
        assert killer.post is not None and killer.post.is_root
        assert "cut short" in killer.post.text
        assert list(_outbox_posts(database).values()) == [("sending", None)]

        second = BridgeProcess(env, tmp_path)
        url = await second.start()
        highlevel.webhook_url = f"{url}/ghl/webhooks"
        needles = ["cut short", "answer after the cut"]
        try:
            # The customer writes while the restarted bridge is still settling the send: the
            # reply must find the thread's root the killed bridge posted, not start another.
            await highlevel.customer_reply(contact, "SMS", "answer after the cut")
            await highlevel.drain_webhooks()

            def settled() -> bool:
                if any(s in ("pending", "sending") for s, _ in _outbox_posts(database).values()):
                    return False
                found = posts_containing(all_posts(slack, [SALES_CHANNEL]), needles)
                return (
                    all(found[n] for n in needles)
                    and _inbound_settled(database)
                    and any(post_state(p) != PostState.SENDING for p in found["cut short"])
                )

            await eventually(settled, within=30, interval=0.1)
        finally:
            assert await second.stop() == 0

    adopted = sum("its root was posted before a stop" in line for line in second.lines)
    reused = sum("its post was made before a stop" in line for line in second.lines)
    print(f"\nkill -9 after a send's first post: root adopted {adopted}x, post reused {reused}x")
    found = posts_containing(all_posts(slack, [SALES_CHANNEL]), needles)
    assert [len(found[n]) for n in needles] == [1, 1]
    roots = [m for m in slack.channel_messages(SALES_CHANNEL) if m.bot_id]
    assert [m.ts for m in roots] == [found["cut short"][0].ts]
    assert found["answer after the cut"][0].thread_ts == roots[0].ts
    # Never sent, so the person is told it may not have been, on the one post.
    assert highlevel.sent_count() == 0
    assert post_state(found["cut short"][0]) == PostState.UNKNOWN
    assert list(_outbox_posts(database).values()) == [("unknown", roots[0].ts)]
