"""The issue's graceful half: SIGTERM on one of three real `ghl-bridge serve` processes on one
PostgreSQL schema, mid-load, hands its work over cleanly.

The instance to be stopped (the victim) reaches both simulators through proxies of the test,
which cut it off from some of its work, as a slow HighLevel or Slack would, for longer than
its 10 s grace: its Slack posts of texts marked `-hold` are held and never made (a send it
claimed stays before HighLevel, a customer message it claimed stays unposted), and HighLevel's
answers to its sends are held after HighLevel stored them (sends in flight). Then, while
`/sendsms` commands and webhooks keep arriving at all three, it gets SIGTERM.

It must exit 0 within its grace; every acknowledged send reaches HighLevel exactly once and is
shown Sent, once (the one it never started goes back to the queue, those in flight are found
in the conversation, never resent); every webhook's message is shown once; and the other
instances finish what it held well before its leases (the default 30 s) would have run out.
Read back from the simulators; the database only says when the cluster has finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import httpx
import pytest
from aiohttp import web

from bot.sandbox.highlevel import HighLevelSimulator, SimContact
from bot.sandbox.slack import SlackMessage, SlackSimulator
from bot.sandbox.stack import AGENT_USER, INBOX_CHANNEL, SALES_CHANNEL, SANDBOX_SIGNING_SECRET
from bot.server import SHUTDOWN_GRACE_SECONDS
from storage._base import DEFAULT_LEASE_SECONDS
from tests._serve_process import serve_env
from tests.reliability._cluster import Cluster, CommandTally, Drivers, send_command
from tests.reliability._helpers import (
    PostState,
    SignedWebhook,
    all_posts,
    eventually,
    outbound_bodies,
    post_state,
    text_of,
)

INSTANCES = 3
SEND_CONTACTS = 8
HOOK_CONTACTS = 8
LOAD_SENDS = 30
LOAD_HOOKS = 60
SEND_RATE = 6.0
HOOK_RATE = 12.0
# The stop comes once this many of the load's commands are acknowledged: mid-load.
STOP_AFTER_ACKS = LOAD_SENDS // 3
# How much longer than its grace a stop may take (cancelling what is left, the hand-over,
# closing clients); as in test_graceful_stop.
STOP_MARGIN_SECONDS = 4.0
# The default lease: without a hand-over, what the victim held would wait for it to run out
# (at least 20 s after the stop began, so 10 s after the exit) and for a look after that.
LEASE_SECONDS = DEFAULT_LEASE_SECONDS
HAND_OVER_WITHIN = LEASE_SECONDS / 4
# Tries at making the victim, not another instance, claim a piece of held work.
OFFERS = 5
SETTLE_WITHIN = 60.0
# The send the victim cannot start is sent from a channel of its own: its held post keeps
# every later post of the victim to that channel waiting (posts go one at a time per channel).
HOLD_CHANNEL = "C0HOLD"
CHANNELS = (SALES_CHANNEL, INBOX_CHANNEL, HOLD_CHANNEL)
HOLD = "-hold"

Rule = Callable[[web.Request, bytes], bool]
_HOP_BY_HOP = frozenset(
    {
        "host",
        "connection",
        "keep-alive",
        "content-length",
        "transfer-encoding",
        "content-encoding",
        "accept-encoding",
    }
)


def _never(_request: web.Request, _body: bytes) -> bool:
    return False


class HoldingProxy:
    """One instance's way to a simulator. A request `hold_before` picks is held and never
    forwarded (the simulator never sees it); one `hold_after` picks is forwarded and its
    answer held (the simulator acted, the instance never hears). Held until `close`, by when
    the instance is gone; everything else passes through."""

    def __init__(self, target: str, *, hold_before: Rule = _never, hold_after: Rule = _never):
        self._target = target.rstrip("/")
        self._hold_before = hold_before
        self._hold_after = hold_after
        self._release = asyncio.Event()
        self.held: list[str] = []  # the bodies of the requests held, decoded
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> str:
        """Serve on a free port of 127.0.0.1; the base URL (ends in /)."""
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._session = aiohttp.ClientSession()
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        return f"http://{host}:{port}/"

    async def close(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def holds(self, text: str) -> bool:
        return any(text in body for body in self.held)

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        if self._hold_before(request, body):
            self.held.append(body.decode(errors="replace"))
            await self._release.wait()
            return web.Response(status=503)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        async with self._session.request(
            request.method,
            f"{self._target}{request.rel_url}",
            headers=headers,
            data=body,
            allow_redirects=False,
        ) as answer:
            payload = await answer.read()
            status = answer.status
            answer_headers = {
                k: v for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP
            }
        if self._hold_after(request, body):
            self.held.append(body.decode(errors="replace"))
            await self._release.wait()
            return web.Response(status=504)
        return web.Response(status=status, body=payload, headers=answer_headers)


def _marked_post(request: web.Request, body: bytes) -> bool:
    """A Slack post showing a text marked to hold (a send's post, a customer's message)."""
    return request.path == "/api/chat.postMessage" and HOLD.encode() in body


def _send_request(request: web.Request, _body: bytes) -> bool:
    return request.method == "POST" and request.path == "/conversations/messages"


@dataclass
class Load(CommandTally):
    """What happened to the commands and webhooks, by text."""

    hooks: list[str] = field(default_factory=list)  # webhook texts answered 200 somewhere
    hook_answers: dict[str, int] = field(default_factory=dict)


async def _customer_writes(
    highlevel: HighLevelSimulator, contact: SimContact, text: str
) -> SignedWebhook:
    """The customer writes `text`; HighLevel's signed InboundMessage webhook for it."""
    message = await highlevel.customer_reply(contact.id, "SMS", text)
    deliveries = reversed(highlevel.webhook_deliveries)
    delivery = next(d for d in deliveries if d.payload.get("messageId") == message.id)
    return SignedWebhook(delivery.body, delivery.signature, message.id, text)


async def _deliver(
    http: httpx.AsyncClient, cluster: Cluster, first: int, webhook: SignedWebhook, load: Load
) -> None:
    """To instance `first`, else the next ones, until one answers 200 (HighLevel retries a
    webhook only after a 429: one refused at a closed port is sent on here, as a load
    balancer would)."""
    for step in range(3 * len(cluster)):
        instance = cluster[(first + step) % len(cluster)]
        try:
            answer = await http.post(
                f"{instance.url}/ghl/webhooks", content=webhook.body, headers=webhook.headers
            )
        except httpx.TransportError as exc:
            name = type(exc).__name__
            load.hook_answers[name] = load.hook_answers.get(name, 0) + 1
            continue
        code = str(answer.status_code)
        load.hook_answers[code] = load.hook_answers.get(code, 0) + 1
        if answer.status_code == 200:
            load.hooks.append(webhook.text)
            return
    raise AssertionError(f"no instance took the webhook of {webhook.text!r}")


async def _paced(
    count: int, rate: float, start: Callable[[int], Coroutine[Any, Any, None]]
) -> None:
    """`start(i)` for each i at `rate` a second, all running at once; wait for them all."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    tasks: list[asyncio.Task[None]] = []
    for index in range(count):
        delay = began + index / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)  # the load's shape, not synchronisation
        tasks.append(asyncio.create_task(start(index)))
    await asyncio.gather(*tasks)


def _posts_of(slack: SlackSimulator, text: str) -> list[SlackMessage]:
    """The bot's posts showing `text` exactly (not a longer text it begins)."""
    exact = re.compile(re.escape(text) + r"(?![\w-])")
    return [p for p in all_posts(slack, CHANNELS) if exact.search(text_of(p))]


async def _victim_takes(
    what: str,
    offer: Callable[[], Awaitable[str]],
    held: Callable[[str], bool],
    done_elsewhere: Callable[[str], bool],
) -> str:
    """Offer work to the victim until it claims one piece and is held on it (another
    instance may claim it first, and then finishes it); that piece's text."""
    for _ in range(OFFERS):
        text = await offer()

        def settled(text: str = text) -> bool:
            return held(text) or done_elsewhere(text)

        await eventually(settled, within=30)
        if held(text):
            return text
    raise AssertionError(f"the victim never claimed {what} in {OFFERS} offers")


class Shown:
    """When each text of the run was first shown settled (a send's post "Sent", a customer's
    message posted), polled every 50 ms while `watch` runs."""

    def __init__(self, slack: SlackSimulator, needle: re.Pattern[str]) -> None:
        self._slack = slack
        self._needle = needle
        self.at: dict[str, float] = {}  # text: monotonic time

    def states(self) -> dict[str, list[str]]:
        """Each text of the run in Slack: the states of the posts showing it."""
        found: dict[str, list[str]] = {}
        for post in all_posts(self._slack, CHANNELS):
            for text in set(self._needle.findall(text_of(post))):
                found.setdefault(text, []).append(post_state(post))
        return found

    async def watch(self) -> None:
        while True:
            now = time.monotonic()
            for text, states in self.states().items():
                settled = "-hook-" in text or PostState.SENT in states
                if settled and text not in self.at:
                    self.at[text] = now
            await asyncio.sleep(0.05)


async def _unsettled(database_url: str) -> dict[str, list[str]]:
    """Work the cluster has not finished, from the shared database (empty when all is done)."""
    connection = await asyncpg.connect(database_url)
    try:
        outbox = await connection.fetch(
            "SELECT id, state, lease_owner, lease_expires_at, last_error FROM outbox"
            " WHERE state IN ('pending', 'sending') ORDER BY id"
        )
        inbound = await connection.fetch(
            "SELECT id, state, lease_owner, lease_expires_at, attempts FROM inbound_events"
            " WHERE state IN ('pending', 'processing') ORDER BY id"
        )
        intents = await connection.fetch(
            "SELECT id, created_at FROM compose_intents WHERE state = 'open' ORDER BY id"
        )
    finally:
        await connection.close()
    found = {
        "outbox": [str(dict(row)) for row in outbox],
        "inbound_events": [str(dict(row)) for row in inbound],
        "compose_intents": [str(dict(row)) for row in intents],
    }
    return {name: rows for name, rows in found.items() if rows}


@contextlib.asynccontextmanager
async def _simulators() -> AsyncIterator[tuple[SlackSimulator, HighLevelSimulator]]:
    slack = SlackSimulator(post_rate_per_second=1000.0, post_burst=1000)
    slack.add_channel(SALES_CHANNEL, "sales")
    slack.add_channel(INBOX_CHANNEL, "inbox")
    slack.add_channel(HOLD_CHANNEL, "hold")
    slack.add_user(AGENT_USER, "agent", "Avery Agent")
    highlevel = HighLevelSimulator()  # HighLevel's own limit: 100 requests per 10 s
    await slack.start()
    await highlevel.start()
    try:
        yield slack, highlevel
    finally:
        await highlevel.stop()
        await slack.stop()


@dataclass
class World:
    run: str
    slack: SlackSimulator
    highlevel: HighLevelSimulator
    send_contacts: list[SimContact]
    hook_contacts: list[SimContact]
    to_slack: HoldingProxy  # the victim's
    to_highlevel: HoldingProxy  # the victim's
    database_url: str
    drivers: Drivers
    http: httpx.AsyncClient
    load: Load = field(default_factory=Load)
    offered: int = 0

    @property
    def needle(self) -> re.Pattern[str]:
        return re.compile(rf"sigterm-{self.run}-(?:send|hook)-\d{{3}}(?:{HOLD})?")

    def posts_of(self, text: str) -> list[SlackMessage]:
        return _posts_of(self.slack, text)

    def sent(self, text: str) -> bool:
        return any(post_state(p) == PostState.SENT for p in self.posts_of(text))

    def shown(self, text: str) -> bool:
        return bool(self.posts_of(text))

    def in_flight_at_victim(self) -> list[str]:
        """The sends whose request the victim made and whose answer it never got."""
        texts = self.needle.findall(" ".join(self.to_highlevel.held))
        return sorted({t for t in texts if not t.endswith(HOLD)})

    async def offer_send(self, cluster: Cluster, *, hold: bool) -> str:
        """One /sendsms to the victim, acknowledged; its text."""
        self.offered += 1
        text = f"sigterm-{self.run}-send-{self.offered:03d}{HOLD if hold else ''}"
        phone = str(self.send_contacts[self.offered % SEND_CONTACTS].phone)
        channel = HOLD_CHANNEL if hold else SALES_CHANNEL
        await send_command(cluster, self.drivers, 0, phone, text, self.load, channel=channel)
        assert text in self.load.acked, (text, self.load)
        return text

    async def offer_hook(self, cluster: Cluster) -> str:
        """A customer's message marked to hold, its webhook answered 200 by the victim."""
        self.offered += 1
        text = f"sigterm-{self.run}-hook-{self.offered:03d}{HOLD}"
        contact = self.hook_contacts[self.offered % HOOK_CONTACTS]
        webhook = await _customer_writes(self.highlevel, contact, text)
        await _deliver(self.http, cluster, 0, webhook, self.load)
        return text


@pytest.mark.slow  # 22 to 30 s: three instances, a 10 s grace, the load around it
async def test_sigterm_on_one_instance_hands_its_work_over_at_once(
    tmp_path: Path, postgres_url: str
) -> None:
    async with _simulators() as (slack, highlevel):
        to_slack = HoldingProxy(slack.base_url, hold_before=_marked_post)
        to_highlevel = HoldingProxy(highlevel.base_url, hold_after=_send_request)
        victim_env = {
            "SLACK_API_URL": f"{await to_slack.start()}api/",
            "GHL_API_URL": (await to_highlevel.start()).rstrip("/"),
            # Its sends' answers are held: it must still be waiting when its grace ends.
            "GHL_TIMEOUT_SECONDS": "120",
        }
        env = serve_env(
            Path("unused.sqlite3"),  # DATABASE_URL below replaces it
            slack_api_url=slack.api_url,
            slack_bot_token=slack.bot_token,
            database_url=postgres_url,
            slack_signing_secret=SANDBOX_SIGNING_SECRET,
            slack_inbox_channel=INBOX_CHANNEL,
            ghl_api_token=highlevel.token,
            ghl_location_id=highlevel.location_id,
            ghl_api_url=highlevel.base_url,
            ghl_webhook_public_key=highlevel.public_key_pem.replace("\n", "\\n"),
            slack_post_rate="200",
        )
        drivers = Drivers(slack)
        try:
            async with (
                httpx.AsyncClient(timeout=30) as http,
                Cluster(
                    env, tmp_path, count=INSTANCES, prefix="sigterm", overrides={0: victim_env}
                ) as cluster,
            ):
                world = World(
                    run=uuid.uuid4().hex[:6],
                    slack=slack,
                    highlevel=highlevel,
                    send_contacts=[
                        highlevel.add_contact(first_name=f"Send{i}", phone=f"+1415555{7500 + i}")
                        for i in range(SEND_CONTACTS)
                    ],
                    hook_contacts=[
                        highlevel.add_contact(first_name=f"Hook{i}", phone=f"+1415555{7600 + i}")
                        for i in range(HOOK_CONTACTS)
                    ],
                    to_slack=to_slack,
                    to_highlevel=to_highlevel,
                    database_url=postgres_url,
                    drivers=drivers,
                    http=http,
                )
                try:
                    await _stop_mid_load(world, cluster, tmp_path)
                finally:
                    logs = cluster.save_logs(tmp_path / "logs")
                    print(f"instance logs in {logs}")
        finally:
            await drivers.aclose()
            await to_slack.close()
            await to_highlevel.close()


async def _stop_mid_load(w: World, cluster: Cluster, tmp_path: Path) -> None:
    victim = cluster[0]
    load = w.load

    # ------------------------------------------------ the victim takes work it will not finish
    not_started = await _victim_takes(
        "a send it cannot start",
        lambda: w.offer_send(cluster, hold=True),
        w.to_slack.holds,
        w.shown,
    )
    first_in_flight = await _victim_takes(
        "a send in flight",
        lambda: w.offer_send(cluster, hold=False),
        w.to_highlevel.holds,
        w.sent,
    )
    unposted = await _victim_takes(
        "a customer message it cannot post",
        lambda: w.offer_hook(cluster),
        w.to_slack.holds,
        w.shown,
    )

    # ------------------------------------------------ the load, and SIGTERM in the middle of it
    sends = [
        (str(w.send_contacts[i % SEND_CONTACTS].phone), f"sigterm-{w.run}-send-{500 + i:03d}")
        for i in range(LOAD_SENDS)
    ]
    hooks = [
        (w.hook_contacts[i % HOOK_CONTACTS], f"sigterm-{w.run}-hook-{500 + i:03d}")
        for i in range(LOAD_HOOKS)
    ]

    async def one_send(index: int) -> None:
        phone, text = sends[index]
        await send_command(cluster, w.drivers, index % INSTANCES, phone, text, load)

    async def one_hook(index: int) -> None:
        contact, text = hooks[index]
        webhook = await _customer_writes(w.highlevel, contact, text)
        await _deliver(w.http, cluster, index % INSTANCES, webhook, load)

    load_texts = {text for _, text in sends}
    stop: dict[str, float] = {}

    async def sigterm_mid_load() -> int:
        await eventually(
            lambda: len(load_texts.intersection(load.acked)) >= STOP_AFTER_ACKS,
            within=60,
            interval=0.02,
        )
        stop["term"] = time.monotonic()
        code = await victim.stop(within=SHUTDOWN_GRACE_SECONDS + 30)
        stop["exit"] = time.monotonic()
        return code

    shown = Shown(w.slack, w.needle)
    watcher = asyncio.create_task(shown.watch())
    began = time.monotonic()
    try:
        _, _, exit_code = await asyncio.gather(
            _paced(LOAD_SENDS, SEND_RATE, one_send),
            _paced(LOAD_HOOKS, HOOK_RATE, one_hook),
            sigterm_mid_load(),
        )
        load_seconds = time.monotonic() - began
        waiting = await _settle(w)
        settled_at = time.monotonic()
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    assert not waiting, f"not settled within {SETTLE_WITHIN:.0f} s: {waiting}"
    survivors = await asyncio.gather(*(i.stop() for i in cluster.instances if i is not victim))

    # ------------------------------------------------ what the stop did, and how soon
    stopped_in = stop["exit"] - stop["term"]
    in_flight = w.in_flight_at_victim()
    held = [not_started, unposted, *in_flight]
    after_exit = {t: round(shown.at[t] - stop["exit"], 2) for t in held if t in shown.at}
    requeued, expired, events = cluster.hand_overs()
    slowest = max(after_exit.values(), default=float("nan"))
    print(
        f"\nsigterm: {INSTANCES} instances on PostgreSQL, lease {LEASE_SECONDS:.0f} s; "
        f"{victim.name} exited {exit_code} {stopped_in:.1f} s after SIGTERM, cut off from 1 "
        f"send not started, {len(in_flight)} sends in flight (the first {first_in_flight}) and "
        f"1 customer message not posted; its hand-over: {requeued} sends back to the queue, "
        f"{expired} left to take over, {events} inbound events back to the queue; the others "
        f"finished them {after_exit} s after its exit (negative: while it closed its clients "
        f"and database after the hand-over; slowest {slowest:.2f} s after the exit, "
        f"{slowest + stopped_in:.2f} s after SIGTERM); {len(load.acked)} sends acknowledged, "
        f"{len(load.cut)} cut, {load.passed_on} passed on from a closed port; "
        f"{len(load.hooks)} webhooks taken ({load.hook_answers}); load {load_seconds:.0f} s, "
        f"settled {settled_at - began:.0f} s after it began"
    )
    assert exit_code == 0
    assert stopped_in <= SHUTDOWN_GRACE_SECONDS + STOP_MARGIN_SECONDS, stopped_in
    assert survivors == [0] * (INSTANCES - 1), survivors
    # What it was cut off from, the others finished (sent, shown) soon after it stopped,
    # long before its leases would have run out.
    assert in_flight, "no send was in flight at the victim when its grace ended"
    assert sorted(after_exit) == sorted(held), (after_exit, held)
    late = {text: s for text, s in after_exit.items() if s > HAND_OVER_WITHIN}
    assert late == {}, f"finished later than {HAND_OVER_WITHIN} s after the exit: {late}"

    # ------------------------------------------------ what HighLevel and Slack show
    at_highlevel = outbound_bodies(w.highlevel)
    for text in load.acked:
        states = [post_state(p) for p in w.posts_of(text)]
        assert (at_highlevel[text], states) == (1, [PostState.SENT]), text
    for text in load.cut:  # never acknowledged: at most once, whatever happened
        assert at_highlevel[text] <= 1 and len(w.posts_of(text)) <= 1, text
    assert load.refused == [] and load.other == [], (load.refused, load.other)
    for text in load.hooks:
        assert len(w.posts_of(text)) == 1, text
    assert w.slack.orphaned_replies() == []
    assert not any(r.status == 429 for r in w.highlevel.requests)
    # Because it handed them over (more than one event: its posts to the inbox wait behind
    # the one held, one at a time).
    assert requeued >= 1 and expired == len(in_flight) and events >= 1, (
        (requeued, expired, events),
        in_flight,
    )


async def _settle(w: World) -> dict[str, list[str]]:
    """Wait until every acknowledged send is shown settled, every webhook's message shown and
    nothing is left in the database; what is still left after SETTLE_WITHIN (empty: all)."""

    async def unsettled() -> dict[str, list[str]]:
        left: dict[str, list[str]] = {}
        states = {t: [post_state(p) for p in w.posts_of(t)] for t in sorted(w.load.acked)}
        sending = [t for t, shown in states.items() if not shown or PostState.SENDING in shown]
        if sending:
            left["sends not shown settled"] = sending
        missing = [t for t in sorted(w.load.hooks) if not w.shown(t)]
        if missing:
            left["webhook messages not shown"] = missing
        return left | await _unsettled(w.database_url)

    deadline = time.monotonic() + SETTLE_WITHIN
    waiting = await unsettled()
    while waiting and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        waiting = await unsettled()
    return waiting
