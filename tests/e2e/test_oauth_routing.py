"""Channels routed to sub-accounts, end to end: each linked channel's sends reach its own
location with that location's token, and nothing crosses from one sub-account to another."""

from __future__ import annotations

from functools import partial
from typing import Any

from bot.sandbox.highlevel import HighLevelSimulator
from bot.sandbox.slack import SlackMessage
from bot.sandbox.stack import AGENT_USER, SALES_CHANNEL, SandboxStack
from tests.e2e.conftest import eventually, stack_store
from tests.e2e.test_oauth_install import L1, L2, L3, token_location
from tests.e2e.test_outbound import notices, roots, went_out
from tests.reliability._helpers import text_of

SEND = ("POST", "/conversations/messages")
PLUMBING_CHANNEL = "C0PLUMBING"
UNLINKED_CHANNEL = "C0UNLINKED"
MARIE_PHONE = "+14155550201"  # Marie Curie, a contact of location 2


def sends_by_location(sim: HighLevelSimulator) -> dict[str, list[dict[str, Any]]]:
    """The send requests HighLevel accepted, by the location of the token they carried."""
    found: dict[str, list[dict[str, Any]]] = {}
    for record in sim.requests_to(*SEND):
        if record.status == 200:
            found.setdefault(token_location(sim, record) or "?", []).append(record.body)
    return found


def refused_requests(sim: HighLevelSimulator) -> list[tuple[str, str, int]]:
    return [(r.method, r.path, r.status) for r in sim.requests if r.status in (401, 403)]


async def link(stack: SandboxStack, channel: str, location_id: str) -> None:
    """`/highlevel link <id>` in `channel`, as the workspace admin types it."""
    result = await stack.driver.slash_command(
        "/highlevel", f"link {location_id}", user_id=AGENT_USER, channel_id=channel
    )
    assert result.status == 200, result.text
    async with stack_store(stack) as store:
        linked = await store.get_channel_link(stack.slack.team_id, channel)
    assert linked is not None and linked.location_id == location_id, result.text


async def send_sms(stack: SandboxStack, channel: str, text: str) -> None:
    result = await stack.driver.slash_command(
        "/sendsms", text, user_id=AGENT_USER, channel_id=channel
    )
    assert result.status == 200, result.text


def send_roots(stack: SandboxStack, channel: str) -> list[SlackMessage]:
    """The channel's thread roots, without the note `/highlevel link` posted there."""
    return [m for m in roots(stack, channel) if "linked this channel" not in text_of(m)]


def first_went_out(stack: SandboxStack, channel: str) -> bool:
    return went_out(send_roots(stack, channel)[0])


async def two_linked_channels(stack: SandboxStack) -> None:
    """Locations 1 and 2 connected by their own installs; #sales → 1, #plumbing → 2."""
    stack.slack.add_channel(PLUMBING_CHANNEL, "plumbing")
    stack.slack.add_channel(UNLINKED_CHANNEL, "unlinked")
    for location_id in (L1, L2):
        page = await stack.install(location=location_id)
        assert page.status == 200, page.text
    await link(stack, SALES_CHANNEL, L1)
    await link(stack, PLUMBING_CHANNEL, L2)


async def test_each_linked_channel_sends_from_its_own_sub_account(
    oauth_stack: SandboxStack,
) -> None:
    sim = oauth_stack.highlevel
    await two_linked_channels(oauth_stack)

    await send_sms(oauth_stack, SALES_CHANNEL, "+1 415 555 0100 hello from dental")
    await send_sms(oauth_stack, PLUMBING_CHANNEL, f"{MARIE_PHONE} hello from plumbing")
    await eventually(lambda: sum(map(len, sends_by_location(sim).values())) == 2)
    by_location = sends_by_location(sim)
    assert [b["contactId"] for b in by_location[L1]] == ["sbxAdaLovelace000001"]
    assert [b["contactId"] for b in by_location[L2]] == ["sbxL002Contact000001"]
    # Every HighLevel call of the bridge named (or touched) its token's own location.
    for record in sim.requests:
        location = record.query.get("locationId") or (
            record.body.get("locationId") if isinstance(record.body, dict) else None
        )
        if location:
            assert location == token_location(sim, record), record
    assert refused_requests(sim) == []
    for channel, text in ((SALES_CHANNEL, "from dental"), (PLUMBING_CHANNEL, "from plumbing")):
        posted = await eventually(partial(send_roots, oauth_stack, channel))
        await eventually(partial(first_went_out, oauth_stack, channel))
        assert text in text_of(posted[0])
    async with stack_store(oauth_stack) as store:
        entries = await store.list_outbox()
    assert sorted((e.channel_id, e.location_id, e.state) for e in entries) == [
        (PLUMBING_CHANNEL, L2, "sent"),
        (SALES_CHANNEL, L1, "sent"),
    ]

    # An unlinked channel with several sub-accounts connected: told how to choose, no send.
    await send_sms(oauth_stack, UNLINKED_CHANNEL, "+1 415 555 0100 which account?")
    told = await eventually(
        lambda: "/highlevel link" in notices(oauth_stack) and notices(oauth_stack)
    )
    assert "Several HighLevel sub-accounts" in told
    assert sum(map(len, sends_by_location(sim).values())) == 2


async def test_a_contact_of_another_sub_account_is_never_reached_across_accounts(
    oauth_stack: SandboxStack,
) -> None:
    sim = oauth_stack.highlevel
    await two_linked_channels(oauth_stack)
    marie = sim.contacts_of(L2)[0]
    assert marie.phone == MARIE_PHONE

    # Marie's number typed in the channel of location 1: location 1 has no such contact, so
    # it is created there (as HighLevel would); location 2's Marie gets nothing.
    await send_sms(oauth_stack, SALES_CHANNEL, f"{MARIE_PHONE} dental writing")
    await eventually(lambda: len(sends_by_location(sim).get(L1, [])) == 1)
    created = sends_by_location(sim)[L1][0]["contactId"]
    assert created != marie.id
    assert sim.contacts[created].location_id == L1
    assert "Created contact" in await eventually(lambda: notices(oauth_stack))
    assert sim.conversation_for(marie.id) is None

    # A send whose entry names location 1 but location 2's contact (what a bug mixing
    # accounts would queue): HighLevel refuses location 1's token for it, and the send fails
    # with that reason instead of being made with another sub-account's token.
    async with stack_store(oauth_stack) as store:
        entry, created_entry = await store.enqueue(
            idempotency_key="crossed-accounts",
            team_id=oauth_stack.slack.team_id,
            channel_id=SALES_CHANNEL,
            slack_user_id=AGENT_USER,
            location_id=L1,
            contact_id=marie.id,
            message_type="SMS",
            payload={
                "request": {"type": "SMS", "contactId": marie.id, "message": "crossed"},
                "display": {
                    "contact_label": "Marie Curie",
                    "contact_address": MARIE_PHONE,
                    "created_contact": False,
                },
            },
        )
    assert created_entry

    async def failed() -> Any:
        async with stack_store(oauth_stack) as store:
            found = await store.get_outbox(entry.id)
        return found if found is not None and found.state == "failed" else None

    final = await eventually(failed, within=15)
    assert "access to this location" in (final.last_error or "")
    refused = [r for r in sim.requests_to(*SEND) if r.status == 403]
    assert len(refused) == 1
    assert token_location(sim, refused[0]) == L1
    assert sim.conversation_for(marie.id) is None
    assert L3 not in sends_by_location(sim)
