"""A bridge serves its own HighLevel location only: genuine webhooks of other sub-accounts (a
Marketplace app sends every installed location's to one URL, under one key) are never stored or
shown, answered 200 so HighLevel does not retry them, and counted in the log without a body."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bot.highlevel import HighLevelClient
from bot.sandbox.highlevel import ADA_LOVELACE_ID, HighLevelSimulator
from bot.sandbox.stack import INBOX_CHANNEL, SALES_CHANNEL, SandboxStack
from bot.tenancy.accounts import MISS_RELOAD_SECONDS, RELOAD_SECONDS, SubAccounts
from handlers.webhooks import NotServedTally
from storage import create_store
from tests.e2e.conftest import stack_on, stack_store
from tests.reliability._helpers import (
    all_posts,
    eventually,
    inbound_payload,
    signed_body,
    text_of,
)

OTHER_LOCATION = "OtherClientLocation01"
NOT_SERVED_LINE = "for locations this bridge does not serve"


async def _inbound_count(stack: SandboxStack) -> int:
    async with stack_store(stack) as store:
        return await store.count_inbound()


async def test_webhooks_of_other_locations_are_answered_200_and_never_stored_or_shown(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    key = Ed25519PrivateKey.generate()
    highlevel = HighLevelSimulator(signing_key=key)
    async with stack_on(database_url, highlevel=highlevel) as stack:

        def payload(text: str, location: Any, conversation: str) -> dict[str, Any]:
            body = inbound_payload(
                location_id="placeholder",
                contact_id=ADA_LOVELACE_ID,
                conversation_id=conversation,
                text=text,
            )
            if location is None:
                del body["locationId"]
            else:
                body["locationId"] = location
            return body

        foreign = {
            "another sub-account": payload(
                "foreign secret +14155550177 a@b.example", OTHER_LOCATION, "conversation-other"
            ),
            # The conversation of our own message below: only the location keeps it out.
            "another sub-account, our conversation": payload(
                "foreign words two", OTHER_LOCATION, "conversation-ours"
            ),
            "no locationId": payload("unattributed words", None, "conversation-ours"),
            "empty locationId": payload("empty location words", "", "conversation-ours"),
            "locationId not a string": payload("numbered location words", 42, "conversation-ours"),
            "our id, other case": payload(
                "case words", highlevel.location_id.upper(), "conversation-ours"
            ),
        }
        url = f"{stack.bridge_url}/ghl/webhooks"
        async with httpx.AsyncClient() as http:
            for name, body in foreign.items():
                webhook = signed_body(key, body)
                response = await http.post(url, content=webhook.body, headers=webhook.headers)
                assert response.status_code == 200, (name, response.text)
                assert response.json()["stored"] is False, name
            assert await _inbound_count(stack) == 0
            ours = signed_body(
                key, payload("our own customer", highlevel.location_id, "conversation-ours")
            )
            response = await http.post(url, content=ours.body, headers=ours.headers)
            assert response.json() == {"ok": True, "stored": True}
        # The simulator's own webhooks (a customer replying) name the location and are shown.
        await highlevel.customer_reply(ADA_LOVELACE_ID, "SMS", "a reply through the simulator")
        await eventually(
            lambda: (
                "a reply through the simulator"
                in "\n".join(text_of(p) for p in all_posts(stack.slack, [INBOX_CHANNEL]))
            )
        )
        shown = "\n".join(
            text_of(p) for p in all_posts(stack.slack, [INBOX_CHANNEL, SALES_CHANNEL])
        )
        assert "our own customer" in shown
        for body in foreign.values():
            assert body["body"] not in shown
        assert await _inbound_count(stack) == 2

    lines = [r for r in caplog.records if NOT_SERVED_LINE in r.getMessage()]
    assert lines and all(r.levelno == logging.INFO for r in lines)
    assert OTHER_LOCATION in lines[0].getMessage()
    # Every ignored webhook is counted in some line: those since the last line are logged at
    # the stop rather than lost with the process.
    counted = sum(int(r.getMessage().split()[1]) for r in lines)
    assert counted == len(foreign)
    for record in caplog.records:
        if record.levelno >= logging.INFO:
            message = record.getMessage()
            for body in foreign.values():
                assert body["body"] not in message
            assert "4155550177" not in message
            assert "a@b.example" not in message


def test_the_log_counts_ignored_webhooks_at_most_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="handlers.webhooks")
    now = [1000.0]
    tally = NotServedTally(interval=60.0, clock=lambda: now[0])

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if NOT_SERVED_LINE in r.getMessage()]

    tally.add("loc-a")
    assert lines() == ["ignored 1 webhook(s) for locations this bridge does not serve: loc-a (1)"]
    for location in ("loc-a", "loc-b", None):
        now[0] += 10
        tally.add(location)
    assert len(lines()) == 1  # counted, not logged yet
    now[0] += 31
    tally.add("x" * 500)
    assert lines()[-1] == (
        "ignored 4 webhook(s) for locations this bridge does not serve: "
        f"loc-a (1), loc-b (1), no locationId (1), {'x' * 40}… (1)"
    )
    assert tally.total == 5


async def test_sub_accounts_serve_connected_locations_by_exact_string_id(
    database_url: str,
) -> None:
    now = [1000.0]
    async with create_store(database_url) as store:
        await store.save_location("loc-1", auth="pit")
        accounts = SubAccounts(store, _no_client, clock=lambda: now[0])
        assert await accounts.serves({"locationId": "loc-1"})
        for other in ({"locationId": "loc-2"}, {"locationId": "LOC-1"}, {}, {"locationId": None}):
            assert not await accounts.serves(other)
        assert not await accounts.serves({"locationId": ["loc-1"]})
        # Another instance connects loc-2: an event naming it makes this one look again, at
        # most every MISS_RELOAD_SECONDS.
        await store.save_location("loc-2", auth="pit")
        assert not await accounts.serves({"locationId": "loc-2"})
        now[0] += MISS_RELOAD_SECONDS
        assert await accounts.serves({"locationId": "loc-2"})
        # Another instance saw loc-1 disconnect: gone here after RELOAD_SECONDS at the latest.
        await store.disconnect_location("loc-1", "the app was uninstalled")
        now[0] += RELOAD_SECONDS
        assert not await accounts.serves({"locationId": "loc-1"})
        # This instance saw it itself: gone at once.
        accounts.forget("loc-2")
        assert not await accounts.serves({"locationId": "loc-2"})


def _no_client(location_id: str) -> HighLevelClient:
    raise AssertionError(f"no HighLevel client is needed to know whether {location_id} is ours")
