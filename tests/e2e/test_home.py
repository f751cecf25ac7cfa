"""The App Home end to end, over real HTTP: `app_home_opened` → views.publish of the
conversations waiting for a reply (oldest first, per sub-account, linked with
chat.getPermalink), scoped to the person's workspace and sub-accounts; the contact search that
opens or finds a thread; refresh on re-open; a rate-limited publish made again.

Customers' messages arrive through the HighLevel simulator's webhooks, as in production, and
mark their threads waiting; a message sent from HighLevel's app answers one (bot/inbox/).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.sandbox.highlevel import (
    ADA_LOVELACE_ID,
    ALAN_TURING_ID,
    GRACE_HOPPER_ID,
    KATHERINE_JOHNSON_ID,
)
from bot.sandbox.highlevel._models import iso
from bot.sandbox.slack import SlackSimulator
from bot.sandbox.slack._models import SimView
from bot.sandbox.stack import AGENT_USER, INBOX_CHANNEL, SALES_CHANNEL, SandboxStack
from bot.ui.home_builder import (
    HOME_OPEN_ACTION,
    HOME_SEARCH_ACTION,
    QUERY_ACTION,
    QUERY_BLOCK,
)
from storage import create_store
from tests.e2e.conftest import eventually, query, url_of
from tests.e2e.test_outbound import roots, text_of
from tests.e2e.test_slack_install import (
    ACME,
    ACME_ADMIN,
    ACME_INBOX,
    MARIE_PHONE,
    contact_id,
    set_up,
    two_workspace_stack,
)

_LINK = re.compile(r"<(https://[^|>]+)\|")


def home_texts(view: SimView | None) -> str:
    if view is None:
        return ""
    parts: list[str] = []
    for block in view.blocks:
        if isinstance(block.get("text"), dict):
            parts.append(block["text"].get("text", ""))
        accessory = block.get("accessory") or {}
        if isinstance(accessory.get("text"), dict):
            parts.append(accessory["text"].get("text", ""))
        for element in block.get("elements") or []:
            if isinstance(element, dict) and isinstance(element.get("text"), str):
                parts.append(element["text"])
    return "\n".join(parts)


def links(view: SimView | None) -> list[str]:
    return _LINK.findall(home_texts(view))


async def customers_write(stack: SandboxStack, *messages: tuple[str, Any, str]) -> None:
    """Each (contact, channel, text) writes in, in turn; their threads open in #inbox.

    Each in a millisecond of its own: two written in the same one would wait equally long, and
    the Home tab's order between them would be a tie."""
    for contact, channel, text in messages:
        written = await stack.highlevel.customer_reply(contact, channel, text)
        at = iso(written.date_added)

        def later(at: str = at) -> bool:
            return iso(datetime.now(UTC)) > at

        await eventually(later)
    await eventually(lambda: len(roots(stack, INBOX_CHANNEL)) == len(messages))
    await stack.highlevel.drain_webhooks()


async def waiting_contacts(stack: SandboxStack) -> set[str]:
    rows = await query(
        stack, "SELECT contact_id FROM slack_threads WHERE waiting_since IS NOT NULL"
    )
    return {row[0] for row in rows}


async def wait_for_waiting(stack: SandboxStack, *contacts: str) -> None:
    """Until exactly these contacts' threads wait for a reply."""

    async def exactly() -> bool:
        return await waiting_contacts(stack) == set(contacts)

    await eventually(exactly)


async def answer_from_highlevel(stack: SandboxStack, contact: str, channel: Any = "SMS") -> None:
    """Someone answers the contact from HighLevel's app: mirrored into the thread."""
    await stack.highlevel.send_from_highlevel_app(contact, channel, "We're on it")
    await stack.highlevel.drain_webhooks()


async def opened_home(
    stack: SandboxStack, *, user: str = AGENT_USER, showing: str = "", sim: Any = None
) -> SimView:
    """Open the person's Home tab; the published view once it shows `showing`."""
    workspace = sim or stack.slack
    before = workspace.home_view(user)
    seen = len(before.history) if before is not None else -1
    driver = stack.driver if sim is None else stack.driver_for(workspace.team_id)
    result = await driver.app_home_opened(user)
    assert result.status == 200, result.text

    def published() -> SimView | None:
        view = workspace.home_view(user)
        if view is None or len(view.history) <= seen:
            return None
        return view if showing in home_texts(view) else None

    found: SimView = await eventually(published, within=12)
    return found


async def test_the_home_tab_lists_the_waiting_conversations_oldest_first(
    stack: SandboxStack,
) -> None:
    await customers_write(
        stack,
        (GRACE_HOPPER_ID, "Email", "Question about the <quote>"),
        (ALAN_TURING_ID, "SMS", "Is the shop open?"),
        (ADA_LOVELACE_ID, "SMS", "Is my order ready?"),
        (KATHERINE_JOHNSON_ID, "WhatsApp", "Thanks, all good"),
    )
    await answer_from_highlevel(stack, KATHERINE_JOHNSON_ID, "WhatsApp")
    await wait_for_waiting(stack, GRACE_HOPPER_ID, ALAN_TURING_ID, ADA_LOVELACE_ID)

    view = await opened_home(stack, showing="Ada Lovelace")

    shown = home_texts(view)
    assert view.view["type"] == "home"
    assert "3 waiting" in shown
    assert shown.index("Grace Hopper") < shown.index("Alan Turing") < shown.index("Ada Lovelace")
    assert "Katherine Johnson" not in shown and "all good" not in shown
    assert "> SMS: Is my order ready?" in shown
    assert "&lt;quote&gt;" in shown  # the customer's text, escaped
    assert "waiting under a minute" in shown
    # Each contact links to its own thread's root (chat.getPermalink).
    found = [stack.slack.message_at(link) for link in links(view)]
    assert [_name(m) if m else None for m in found] == [
        "Grace Hopper",
        "Alan Turing",
        "Ada Lovelace",
    ]
    assert all(m is not None and m.channel == INBOX_CHANNEL and not m.is_reply for m in found)


def _name(root: Any) -> str:
    for name in ("Grace Hopper", "Katherine Johnson", "Ada Lovelace", "Alan Turing"):
        if name in text_of(root):
            return name
    raise AssertionError(text_of(root))


async def test_each_workspace_sees_only_its_own_sub_accounts_waiting_conversations(
    database_url: str,
) -> None:
    stack = two_workspace_stack(database_url)
    await stack.start()
    try:
        acme = stack.slack.workspace(ACME)
        await set_up(stack)
        marie = contact_id(stack.highlevel, stack.highlevel.location_ids[1], MARIE_PHONE)
        await stack.highlevel.customer_reply(ADA_LOVELACE_ID, "SMS", "Ada for the sandbox")
        await stack.highlevel.customer_reply(marie, "SMS", "Marie for Acme")
        await eventually(lambda: roots(stack, INBOX_CHANNEL) and acme.channel_messages(ACME_INBOX))
        await stack.highlevel.drain_webhooks()
        await wait_for_waiting(stack, ADA_LOVELACE_ID, marie)
        # Another workspace's thread of the same sub-account and contact, waiting too.
        async with create_store(url_of(stack)) as store:
            foreign = await store.upsert_thread(
                team_id="T0ELSEWHERE",
                channel_id="C0ELSEWHERE",
                location_id=stack.highlevel.location_ids[0],
                contact_id=ADA_LOVELACE_ID,
                thread_ts="1700000000.000001",
                contact_label="Someone Elsewhere",
            )
            await store.mark_waiting(foreign.id, 1.0)

        ours = home_texts(await opened_home(stack, showing="Ada Lovelace"))
        theirs = home_texts(await opened_home(stack, user=ACME_ADMIN, showing="Marie", sim=acme))

        assert "Ada for the sandbox" in ours
        assert "Marie" not in ours and "Acme" not in ours and "Elsewhere" not in ours
        assert "Marie for Acme" in theirs
        assert "Ada" not in theirs.replace("Ada Admin", "") and "Elsewhere" not in theirs
        assert stack.highlevel.location_name(stack.highlevel.location_ids[0]) not in theirs
    finally:
        await stack.stop()


async def search_in_home(stack: SandboxStack, text: str) -> SimView:
    """Find a contact from the Home tab: open the search, submit `text`; the modal's answer."""
    home = await opened_home(stack)
    await stack.driver.block_action(HOME_SEARCH_ACTION, user_id=AGENT_USER, view_id=home.id)
    modal = (await eventually(lambda: stack.slack.open_views(AGENT_USER)))[-1]
    result = await stack.driver.view_submission(
        modal.id, user_id=AGENT_USER, values={QUERY_BLOCK: {QUERY_ACTION: text}}
    )
    assert result.status == 200 and result.modal_error is None, result.text
    assert result.elapsed_seconds < 3.0
    answered = stack.slack.view(modal.id)
    assert answered is not None
    return answered


def modal_text(stack: SandboxStack, view_id: str) -> str:
    return home_texts(stack.slack.view(view_id))


async def test_search_by_partial_name_opens_a_new_thread_or_links_the_existing_one(
    stack: SandboxStack,
) -> None:
    await customers_write(stack, (GRACE_HOPPER_ID, "Email", "Hello there"))
    (grace_root,) = roots(stack, INBOX_CHANNEL)

    modal = await search_in_home(stack, "lovel")
    assert "Ada Lovelace" in modal_text(stack, modal.id)
    await stack.driver.block_action(
        HOME_OPEN_ACTION,
        user_id=AGENT_USER,
        view_id=modal.id,
        block_id=f"contact-{ADA_LOVELACE_ID}",
    )
    shown = await eventually(lambda: "Opened <" in (t := modal_text(stack, modal.id)) and t)
    new_roots = [r for r in roots(stack, INBOX_CHANNEL) if r.ts != grace_root.ts]
    assert len(new_roots) == 1
    assert "Conversation with Ada Lovelace" in text_of(new_roots[0])
    assert "+14155550100" in text_of(new_roots[0])
    (link,) = _LINK.findall(shown)
    assert stack.slack.message_at(link) == new_roots[0]

    # A contact with a thread already: linked to it, nothing posted.
    stack.slack.close_view(modal.id)
    modal = await search_in_home(stack, "hopp")
    await stack.driver.block_action(
        HOME_OPEN_ACTION,
        user_id=AGENT_USER,
        view_id=modal.id,
        block_id=f"contact-{GRACE_HOPPER_ID}",
    )
    shown = await eventually(lambda: "Here is <" in (t := modal_text(stack, modal.id)) and t)
    (link,) = _LINK.findall(shown)
    assert stack.slack.message_at(link) == grace_root
    assert len(roots(stack, INBOX_CHANNEL)) == 2
    # The same Open again finds the thread it made: still one root for Ada.
    stack.slack.close_view(modal.id)
    modal = await search_in_home(stack, "ada")
    await stack.driver.block_action(
        HOME_OPEN_ACTION,
        user_id=AGENT_USER,
        view_id=modal.id,
        block_id=f"contact-{ADA_LOVELACE_ID}",
    )
    await eventually(lambda: "Here is <" in modal_text(stack, modal.id))
    assert len(roots(stack, INBOX_CHANNEL)) == 2


@pytest.mark.parametrize(
    "stack_overrides", [{"allowed_slack_channels": frozenset({SALES_CHANNEL})}]
)
async def test_the_home_tabs_search_works_where_only_some_channels_are_allowed(
    stack: SandboxStack,
) -> None:
    # The Home tab and its search belong to no channel: ALLOWED_SLACK_CHANNELS does not stop them.
    modal = await search_in_home(stack, "lovel")
    assert "Ada Lovelace" in modal_text(stack, modal.id)


async def test_a_contact_of_another_sub_account_cannot_be_opened(stack: SandboxStack) -> None:
    modal = await search_in_home(stack, "ada")
    forged = {**modal.view, "private_metadata": '{"location_id": "sbxSomeoneElses00001"}'}
    modal.view = forged
    await stack.driver.block_action(
        HOME_OPEN_ACTION,
        user_id=AGENT_USER,
        view_id=modal.id,
        block_id=f"contact-{ADA_LOVELACE_ID}",
    )
    await eventually(lambda: "not one this workspace works with" in modal_text(stack, modal.id))
    assert roots(stack, INBOX_CHANNEL) == []


async def test_reopening_the_home_tab_shows_what_changed(stack: SandboxStack) -> None:
    await customers_write(
        stack,
        (ADA_LOVELACE_ID, "SMS", "First question"),
        (KATHERINE_JOHNSON_ID, "WhatsApp", "First from Katherine"),
    )
    await answer_from_highlevel(stack, KATHERINE_JOHNSON_ID, "WhatsApp")
    await wait_for_waiting(stack, ADA_LOVELACE_ID)
    first = home_texts(await opened_home(stack, showing="Ada Lovelace"))
    assert "Katherine" not in first

    await stack.highlevel.customer_reply(KATHERINE_JOHNSON_ID, "WhatsApp", "Second question")
    await answer_from_highlevel(stack, ADA_LOVELACE_ID)  # someone answered Ada
    await wait_for_waiting(stack, KATHERINE_JOHNSON_ID)
    await opened_home(stack, showing="Katherine Johnson")
    # The open tab was also published as the two changes happened (each a publish of its
    # own): the last one shows the state after both.
    second = await eventually(
        lambda: "Ada" not in (t := home_texts(stack.slack.home_view(AGENT_USER))) and t,
        within=12,
    )
    assert "Katherine Johnson" in second and "Second question" in second


async def test_an_open_home_tab_follows_conversations_that_start_and_stop_waiting(
    stack: SandboxStack,
) -> None:
    assert "Nothing is waiting" in home_texts(await opened_home(stack))

    # No new open: the customer's message publishes the tab again, and so does the answer.
    await stack.highlevel.customer_reply(ADA_LOVELACE_ID, "SMS", "Are you open today?")
    shown = await eventually(
        lambda: "Are you open today?" in (t := home_texts(stack.slack.home_view(AGENT_USER))) and t,
        within=12,
    )
    assert "Ada Lovelace" in shown
    await answer_from_highlevel(stack, ADA_LOVELACE_ID)
    await eventually(
        lambda: "Nothing is waiting" in home_texts(stack.slack.home_view(AGENT_USER)), within=12
    )


async def test_the_empty_home_tab_says_nothing_waits(stack: SandboxStack) -> None:
    shown = home_texts(await opened_home(stack))
    assert "Nothing is waiting for a reply" in shown
    assert "Find a contact" in shown  # the sub-account is there, and its search


def publishes(sim: SlackSimulator) -> list[Any]:
    return sim.calls_to("views.publish")


async def test_a_rate_limited_publish_is_made_again_and_bursts_are_coalesced(
    stack: SandboxStack,
) -> None:
    await customers_write(stack, (ADA_LOVELACE_ID, "SMS", "Anyone there?"))
    await wait_for_waiting(stack, ADA_LOVELACE_ID)
    stack.slack.faults.rate_limit_next("views.publish", retry_after=1)

    view = await opened_home(stack, showing="Anyone there?")

    calls = publishes(stack.slack)
    assert [c.http_status for c in calls] == [429, 200]
    assert calls[1].at - calls[0].at >= 1.0  # after Retry-After
    assert view.view["type"] == "home"

    # Five opens in a burst: one publish at once... or, this soon after the last, one later.
    for _ in range(5):
        result = await stack.driver.app_home_opened(AGENT_USER)
        assert result.status == 200
    await eventually(lambda: len(publishes(stack.slack)) == 3, within=12)
    calls = publishes(stack.slack)
    assert calls[2].at - calls[1].at >= 2.5  # no sooner than the pace allows
