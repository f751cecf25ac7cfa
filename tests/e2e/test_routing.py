"""Slack ↔ sub-account routing end to end: the composer's sub-account select, quick sends in an
unlinked channel, and thread roots naming their sub-account when several are connected."""

from __future__ import annotations

from typing import Any, cast

from bot.highlevel import HighLevelClient
from bot.outbound import SendPresenter
from bot.posting.poster import SlackPosters
from bot.sandbox.highlevel import ADA_LOVELACE_ID
from bot.sandbox.slack import SimView
from bot.sandbox.stack import AGENT_USER, INBOX_CHANNEL, SALES_CHANNEL, SandboxStack
from bot.tenancy.accounts import SubAccounts
from storage import create_store
from tests.e2e._routing_support import blocks_text, several_accounts_stack
from tests.e2e.conftest import eventually, query, stack_store

SUB_ACCOUNT = "sub_account"
SEND = ("POST", "/conversations/messages")


async def open_composer(stack: SandboxStack, text: str = "") -> SimView:
    before = {view.id for view in stack.slack.open_views(AGENT_USER)}
    result = await stack.driver.slash_command(
        "/sendsms", text, user_id=AGENT_USER, channel_id=SALES_CHANNEL
    )
    assert result.status == 200, result.text
    views = await eventually(
        lambda: [v for v in stack.slack.open_views(AGENT_USER) if v.id not in before]
    )
    return cast(SimView, views[-1])


def block(view: SimView, block_id: str) -> dict[str, Any] | None:
    current = view.view.get("blocks", [])
    return next((b for b in current if b.get("block_id") == block_id), None)


def offered(view: SimView) -> list[str]:
    found = block(view, SUB_ACCOUNT)
    assert found is not None, "the composer has no sub-account select"
    return [option["value"] for option in found["element"]["options"]]


async def submit(stack: SandboxStack, view: SimView, values: dict[str, Any]) -> dict[str, Any]:
    answers = {field: {field: value} for field, value in values.items()}
    result = await stack.driver.view_submission(view.id, user_id=AGENT_USER, values=answers)
    assert result.status == 200, result.text
    assert result.elapsed_seconds < 3.0
    return cast(dict[str, Any], result.json or {})


def selected(location_id: str) -> dict[str, Any]:
    """A sub-account select's state entry with `location_id` chosen."""
    return {
        "type": "static_select",
        "selected_option": {"text": {"type": "plain_text", "text": "x"}, "value": location_id},
    }


async def link(stack: SandboxStack, location_id: str) -> None:
    result = await stack.driver.slash_command(
        "/highlevel", f"link {location_id}", user_id=AGENT_USER, channel_id=SALES_CHANNEL
    )
    assert "is now linked" in (result.json or {}).get("text", ""), result.json


async def test_the_composer_asks_for_the_sub_account_only_when_the_channel_does_not_decide(
    database_url: str,
) -> None:
    async with await several_accounts_stack(database_url) as stack:
        locations = stack.highlevel.location_ids
        view = await open_composer(stack)
        assert offered(view) == locations
        assert block(view, SUB_ACCOUNT)["optional"] is False  # type: ignore[index]
        # Re-rendered as the person types: the select (and its options) stay.
        await stack.driver.block_action(
            "message", user_id=AGENT_USER, view_id=view.id, values={"message": {"message": "hi"}}
        )
        await eventually(
            lambda: "2 characters" in str(block(stack.slack.view(view.id), "message"))  # type: ignore[arg-type]
        )
        assert offered(cast(SimView, stack.slack.view(view.id))) == locations

        await link(stack, locations[1])
        linked = await open_composer(stack)
        assert block(linked, SUB_ACCOUNT) is None


async def test_one_sub_account_needs_no_select(database_url: str) -> None:
    async with await several_accounts_stack(database_url, locations=1) as stack:
        view = await open_composer(stack)
        assert block(view, SUB_ACCOUNT) is None
        assert block(view, "recipient") is not None


async def test_the_chosen_sub_account_sends_and_its_thread_decides_replies(
    database_url: str,
) -> None:
    async with await several_accounts_stack(database_url) as stack:
        first = stack.highlevel.location_ids[0]
        view = await open_composer(stack, "+1 415 555 0100")
        answer = await submit(stack, view, {SUB_ACCOUNT: selected(first), "message": "Table ready"})
        assert answer.get("response_action") != "errors", answer
        await eventually(lambda: len(stack.highlevel.requests_to(*SEND)) == 1)
        rows = await query(stack, "SELECT location_id FROM outbox")
        assert rows == [(first,)]

        root = await eventually(
            lambda: [m for m in stack.slack.channel_messages(SALES_CHANNEL) if m.bot_id]
        )
        await stack.driver.block_action(
            "reply", user_id=AGENT_USER, channel_id=SALES_CHANNEL, message_ts=root[0].ts
        )
        reply = await eventually(
            lambda: [v for v in stack.slack.open_views(AGENT_USER) if v.id != view.id]
        )
        assert block(reply[-1], SUB_ACCOUNT) is None  # the thread fixes the sub-account


async def test_a_submit_without_a_usable_sub_account_gets_the_field_error(
    database_url: str,
) -> None:
    async with await several_accounts_stack(
        database_url, disconnected={"3": "uninstalled"}
    ) as stack:
        gone = stack.highlevel.location_ids[2]
        view = await open_composer(stack)
        assert gone not in offered(view)
        # Slack keeps a required select from being submitted empty; a blank value still is.
        answer = await submit(
            stack, view, {SUB_ACCOUNT: selected(""), "recipient": "+14155550100", "message": "x"}
        )
        assert answer.get("response_action") == "errors", answer
        assert "Choose the HighLevel sub-account" in answer["errors"][SUB_ACCOUNT]
        # One that was disconnected since the composer opened.
        answer = await submit(
            stack, view, {SUB_ACCOUNT: selected(gone), "recipient": "+14155550100", "message": "x"}
        )
        assert answer.get("response_action") == "errors", answer
        assert "not connected any more" in answer["errors"][SUB_ACCOUNT]
        assert stack.highlevel.requests_to(*SEND) == []


async def test_a_quick_send_in_an_unlinked_channel_says_how_to_choose(database_url: str) -> None:
    async with await several_accounts_stack(database_url) as stack:
        result = await stack.driver.slash_command(
            "/sendsms", "+1 415 555 0100 hello", user_id=AGENT_USER, channel_id=SALES_CHANNEL
        )
        assert result.status == 200
        told = await eventually(
            lambda: "\n".join(e.text for e in stack.slack.ephemerals(user=AGENT_USER))
        )
        assert "Several HighLevel sub-accounts are connected" in told
        assert "/highlevel link" in told and "/sendsms" in told
        assert stack.highlevel.requests_to(*SEND) == []
        async with stack_store(stack) as store:
            assert await store.list_channel_links() == []


async def test_a_new_conversation_root_names_its_sub_account_when_there_are_several(
    database_url: str,
) -> None:
    async with await several_accounts_stack(database_url) as stack:
        name = stack.highlevel.location_name(stack.highlevel.location_ids[0])
        await stack.highlevel.customer_reply(ADA_LOVELACE_ID, "SMS", "Running late")
        root = await eventually(
            lambda: [m for m in stack.slack.channel_messages(INBOX_CHANNEL) if m.bot_id]
        )
        shown = blocks_text(root[0])
        assert f"HighLevel sub-account: *{name}*" in shown
        assert root[0].text.startswith(f"[{name}] ")


async def test_with_one_sub_account_the_root_names_none(database_url: str) -> None:
    async with await several_accounts_stack(database_url, locations=1) as stack:
        await stack.highlevel.customer_reply(ADA_LOVELACE_ID, "SMS", "Running late")
        root = await eventually(
            lambda: [m for m in stack.slack.channel_messages(INBOX_CHANNEL) if m.bot_id]
        )
        assert "HighLevel sub-account" not in blocks_text(root[0])


async def test_the_send_presenter_names_the_sub_account_only_among_several(
    database_url: str,
) -> None:
    def no_client(location_id: str) -> HighLevelClient:
        raise AssertionError("naming a sub-account calls nobody")

    async with create_store(database_url) as store:
        accounts = SubAccounts(store, no_client)
        presenter = SendPresenter(
            store=store, slack=cast(SlackPosters, object()), accounts=accounts
        )
        await store.save_location("locA", auth="pit", name="Alpha Dental")
        await accounts.reload()
        assert await presenter.account_label("locA") is None
        await store.save_location("locB", auth="pit", name="Beta Realty")
        await accounts.reload()
        assert await presenter.account_label("locA") == "Alpha Dental"
        assert await presenter.account_label("locB") == "Beta Realty"
        assert (
            await SendPresenter(store=store, slack=cast(SlackPosters, object())).account_label(
                "locA"
            )
            is None
        )
