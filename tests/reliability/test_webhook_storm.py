"""500 HighLevel webhooks, each delivered twice, out of order, some while the bridge restarts:
every message HighLevel delivered is posted in Slack exactly once."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bot.sandbox.highlevel import HighLevelSimulator
from bot.sandbox.slack import SlackSimulator
from bot.sandbox.stack import INBOX_CHANNEL, SandboxStack
from tests.reliability._helpers import (
    SignedWebhook,
    all_posts,
    eventually,
    inbound_payload,
    posts_containing,
    signed_body,
)

MESSAGES = 500
CONTACTS = 10
CONCURRENT_DELIVERIES = 16
RESTART_AFTER = 400  # deliveries answered before the bridge is restarted under the storm


async def test_500_webhooks_twice_out_of_order_across_a_restart_post_once(tmp_path: Path) -> None:
    started = time.monotonic()
    key = Ed25519PrivateKey.generate()
    highlevel = HighLevelSimulator(signing_key=key)
    contacts = [
        highlevel.add_contact(first_name=f"Storm{i}", phone=f"+1415555{5000 + i}").id
        for i in range(CONTACTS)
    ]
    slack = SlackSimulator(post_rate_per_second=1000.0, post_burst=1000)
    async with SandboxStack(
        tmp_path / "bridge.sqlite3",
        highlevel=highlevel,
        slack=slack,
        settings_overrides={"slack_post_rate": 500.0},
        webhooks=False,
    ) as stack:
        run = uuid.uuid4().hex[:6]
        webhooks = [
            signed_body(
                key,
                inbound_payload(
                    location_id=highlevel.location_id,
                    contact_id=contacts[i % CONTACTS],
                    conversation_id=f"storm-conversation-{run}-{i % CONTACTS}",
                    text=f"storm {run} {i:03d}",
                ),
            )
            for i in range(MESSAGES)
        ]
        deliveries = [*webhooks, *webhooks]  # HighLevel delivers each twice
        random.Random(7).shuffle(deliveries)  # seeded: the same storm every run

        answers: list[int | str] = []
        accepted: set[str] = set()
        missed: list[SignedWebhook] = []
        answered = asyncio.Event()
        slots = asyncio.Semaphore(CONCURRENT_DELIVERIES)

        async def deliver(http: httpx.AsyncClient, webhook: SignedWebhook) -> None:
            async with slots:
                try:
                    response = await http.post(
                        f"{stack.bridge_url}/ghl/webhooks",
                        content=webhook.body,
                        headers=webhook.headers,
                    )
                except httpx.TransportError as exc:  # the bridge is restarting
                    answers.append(type(exc).__name__)
                    missed.append(webhook)
                    return
                answers.append(response.status_code)
                if response.status_code == 200:
                    accepted.add(webhook.message_id)
                else:
                    missed.append(webhook)
                if len(answers) >= RESTART_AFTER:
                    answered.set()

        async def restart() -> None:
            await answered.wait()
            await stack.stop_bridge()
            await asyncio.sleep(0.2)
            await stack.start_bridge()

        async with httpx.AsyncClient(timeout=30) as http:
            restarting = asyncio.create_task(restart())
            await asyncio.gather(*(deliver(http, webhook) for webhook in deliveries))
            await restarting
            # HighLevel's retry of what the restart refused (in reality only a 429 is retried;
            # here every message is delivered twice, and these are second copies).
            for webhook in list(missed):
                if webhook.message_id not in accepted:
                    await deliver(http, webhook)

        assert accepted == {w.message_id for w in webhooks}  # every message got through once
        assert all(a == 200 or isinstance(a, str) for a in answers), sorted(set(map(str, answers)))
        texts = [w.text for w in webhooks]

        def all_shown() -> bool:
            found = posts_containing(all_posts(slack, [INBOX_CHANNEL]), texts)
            return all(found[text] for text in texts)

        await eventually(all_shown, within=60, interval=0.5)
        await asyncio.sleep(0.5)  # a late duplicate would show by now
        found = posts_containing(all_posts(slack, [INBOX_CHANNEL]), texts)
        doubled = [text for text in texts if len(found[text]) != 1]
        assert doubled == []
        assert len([m for m in slack.channel_messages(INBOX_CHANNEL) if m.bot_id]) == CONTACTS
        assert slack.orphaned_replies() == []
        refused = sum(isinstance(a, str) for a in answers)
    print(
        f"\n{MESSAGES} webhooks x2 out of order, restart mid-storm: {len(answers)} deliveries, "
        f"{refused} refused by the restart and delivered again, {MESSAGES} posted once, "
        f"0 doubled, 0 lost; {time.monotonic() - started:.0f} s"
    )
