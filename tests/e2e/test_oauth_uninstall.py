"""The app uninstalled from a sub-account while the bridge works: never silent."""

from __future__ import annotations

import time

from bot.sandbox.highlevel import HighLevelSimulator
from bot.sandbox.stack import AGENT_USER, SALES_CHANNEL, SandboxStack
from tests.e2e.conftest import OAuthStackFactory, eventually, stack_store
from tests.e2e.test_oauth_install import L1, L2
from tests.e2e.test_oauth_routing import (
    MARIE_PHONE,
    PLUMBING_CHANNEL,
    SEND,
    send_sms,
    sends_by_location,
    two_linked_channels,
)
from tests.e2e.test_outbound import notices
from tests.reliability._helpers import PostState, all_posts, post_state, text_of


def disconnect_notices(stack: SandboxStack, channel: str) -> list[str]:
    return [
        text_of(m)
        for m in stack.slack.channel_messages(channel)
        if m.bot_id and "is disconnected" in text_of(m)
    ]


async def test_an_uninstall_mid_run_disconnects_tells_once_and_fails_what_was_waiting(
    oauth_stack_on: OAuthStackFactory,
) -> None:
    sim = HighLevelSimulator(locations=3)
    async with oauth_stack_on(highlevel=sim) as stack:
        await two_linked_channels(stack)
        await send_sms(stack, PLUMBING_CHANNEL, f"{MARIE_PHONE} before the uninstall")
        await eventually(lambda: len(sends_by_location(sim).get(L2, [])) == 1)

        # Two sends of that thread waiting for a retry (as after HighLevel's 429), queued the
        # way the outbox keeps them: pending, claimed by no one, due in an hour.
        async with stack_store(stack) as store:
            (first,) = [e for e in await store.list_outbox() if e.location_id == L2]
            for number in range(2):
                await store.enqueue(
                    idempotency_key=f"waiting-{number}",
                    team_id=stack.slack.team_id,
                    channel_id=PLUMBING_CHANNEL,
                    slack_user_id=AGENT_USER,
                    location_id=L2,
                    contact_id=first.contact_id,
                    message_type="SMS",
                    payload={
                        "request": {
                            "type": "SMS",
                            "contactId": first.contact_id,
                            "message": f"waiting {number}",
                        },
                        "display": {
                            "contact_label": "Marie Curie",
                            "contact_address": MARIE_PHONE,
                            "created_contact": False,
                        },
                    },
                    thread_id=first.thread_id,
                    next_attempt_at=time.time() + 3600,
                )

        delivery = await sim.uninstall(L2)
        await sim.drain_webhooks()
        assert delivery.outcome == "delivered"

        async with stack_store(stack) as store:
            record = await store.get_location(L2)
            entries = await store.list_outbox()
            other = await store.get_location(L1)
        assert record is not None and record.status == "disconnected"
        assert record.access_token is None and record.refresh_token is None
        assert other is not None and other.status == "connected"
        waited = [e for e in entries if "waiting" in e.payload_json]
        assert [e.state for e in waited] == ["failed", "failed"]

        # The linked channel is told, once, with the way to reconnect it.
        told = await eventually(lambda: disconnect_notices(stack, PLUMBING_CHANNEL))
        assert f"{stack.bridge_url}/ghl/install" in told[0]
        assert "2 messages waiting to go out were not sent" in told[0]
        assert disconnect_notices(stack, SALES_CHANNEL) == []

        # The waiting sends' posts say they were not sent.
        def waiting_posts() -> list[str]:
            return [
                post_state(p)
                for p in all_posts(stack.slack, [PLUMBING_CHANNEL])
                if "waiting" in text_of(p) and "is disconnected" not in text_of(p)
            ]

        await eventually(lambda: waiting_posts() == [PostState.FAILED, PostState.FAILED])

        # The same UNINSTALL again (HighLevel retries webhooks): no second notice.
        again = await sim.uninstall(L2)
        await sim.drain_webhooks()
        assert again.outcome == "delivered"

        # A new send in that channel is refused with why; the other channel still sends.
        await send_sms(stack, PLUMBING_CHANNEL, f"{MARIE_PHONE} after the uninstall")
        refused = await eventually(
            lambda: "not connected any more" in notices(stack) and notices(stack)
        )
        assert "/ghl/install" in refused
        await send_sms(stack, SALES_CHANNEL, "+1 415 555 0100 dental still works")
        await eventually(lambda: len(sends_by_location(sim).get(L1, [])) == 1)
        assert len(disconnect_notices(stack, PLUMBING_CHANNEL)) == 1
        assert all(
            "after the uninstall" not in (r.body or {}).get("message", "")
            for r in sim.requests_to(*SEND)
        )
