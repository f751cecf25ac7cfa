"""`/highlevel` end to end: signed slash commands to a real bridge with several sub-accounts,
the Slack simulator answering users.info, and what the bridge stored."""

from __future__ import annotations

from typing import Any

from bot.sandbox.highlevel import ADA_LOVELACE_ID
from bot.sandbox.stack import AGENT_USER, INBOX_CHANNEL, OTHER_USER, SALES_CHANNEL, SandboxStack
from bot.tenancy.crypto import generate_key
from tests.e2e._routing_support import answer_text, blocks_text, several_accounts_stack
from tests.e2e.conftest import eventually, stack_store

SUPPORT_CHANNEL = "C0SUPPORT"


async def highlevel(
    stack: SandboxStack, text: str = "", *, user: str = AGENT_USER, channel: str = SALES_CHANNEL
) -> str:
    result = await stack.driver.slash_command("/highlevel", text, user_id=user, channel_id=channel)
    assert result.status == 200, result.text
    assert result.elapsed_seconds < 3.0
    return answer_text(result.json)


async def links(stack: SandboxStack) -> dict[str, str]:
    async with stack_store(stack) as store:
        return {link.channel_id: link.location_id for link in await store.list_channel_links()}


def bot_notes(stack: SandboxStack, channel: str) -> list[str]:
    return [blocks_text(m) for m in stack.slack.channel_messages(channel) if m.bot_id]


async def test_help_connect_and_unknown_words(database_url: str) -> None:
    async with await several_accounts_stack(database_url) as stack:
        for text in ("", "help"):
            usage = await highlevel(stack, text)
            for word in ("status", "connect", "link", "inbox"):
                assert f"/highlevel {word}" in usage, (text, usage)
        assert "has no `frobnicate`" in await highlevel(stack, "frobnicate")
        connect = await highlevel(stack, "connect")
        # Without the Marketplace app: one Private Integration Token, and how to switch it on.
        assert "Private Integration Token" in connect
        for setting in ("GHL_CLIENT_ID", "GHL_CLIENT_SECRET", "PUBLIC_URL", "TOKEN_ENCRYPTION_KEY"):
            assert setting in connect
        assert "/ghl/install" not in connect


async def test_connect_with_the_marketplace_app_links_to_the_install_page(
    database_url: str,
) -> None:
    overrides: dict[str, Any] = {
        "ghl_client_id": "sandbox-client-id",
        "ghl_client_secret": "sandbox-client-secret",
        "public_url": "https://bridge.example.com",
        "token_encryption_key": generate_key(),
    }
    async with await several_accounts_stack(database_url, settings_overrides=overrides) as stack:
        connect = await highlevel(stack, "connect")
        assert "<https://bridge.example.com/ghl/install|" in connect
        assert "GHL_CLIENT_ID" not in connect


async def test_link_by_name_or_id_tells_the_channel(database_url: str) -> None:
    async with await several_accounts_stack(database_url) as stack:
        first, second, third = stack.highlevel.location_ids
        stack.slack.add_channel(SUPPORT_CHANNEL, "support")

        # By name, case-insensitive, a unique prefix being enough.
        answer = await highlevel(stack, "link sandbox plumb")
        name = stack.highlevel.location_name(second)
        assert f"<#{SALES_CHANNEL}> is now linked to *{name}*" in answer
        assert await links(stack) == {SALES_CHANNEL: second}
        note = (await eventually(lambda: bot_notes(stack, SALES_CHANNEL)))[-1]
        assert f"<@{AGENT_USER}> linked this channel" in note and name in note

        # By id, in another channel; relinking #sales replaces its link.
        await highlevel(stack, f"link {third}", channel=SUPPORT_CHANNEL)
        answer = await highlevel(stack, f'link "{stack.highlevel.location_name(first)}"')
        assert f"it was linked to `{second}`" in answer
        assert await links(stack) == {SALES_CHANNEL: first, SUPPORT_CHANNEL: third}
        assert "already linked" in await highlevel(stack, f"link {first}")
        assert len(bot_notes(stack, SALES_CHANNEL)) == 2  # "already" says nothing to the channel


async def test_ambiguous_unknown_and_missing_names_change_nothing(database_url: str) -> None:
    async with await several_accounts_stack(database_url) as stack:
        names = [stack.highlevel.location_name(i) for i in stack.highlevel.location_ids]
        ambiguous = await highlevel(stack, "link Sandbox")
        assert "could be any of these" in ambiguous
        assert all(name in ambiguous for name in names)
        unknown = await highlevel(stack, "link Nowhere Bakery")
        assert "No connected HighLevel sub-account" in unknown and "Nowhere Bakery" in unknown
        assert all(name in unknown for name in names)  # the connected ones, to pick from
        assert "Name the sub-account" in await highlevel(stack, "link")
        assert await links(stack) == {}
        assert bot_notes(stack, SALES_CHANNEL) == []


async def test_link_and_inbox_are_for_admins(database_url: str) -> None:
    async with await several_accounts_stack(database_url) as stack:
        for text in ("link Sandbox Dental", "inbox"):
            refusal = await highlevel(stack, text, user=OTHER_USER)
            assert "Only Slack workspace admins and owners" in refusal, refusal
        assert await links(stack) == {}
        # status and connect are for everyone.
        assert "HighLevel sub-accounts" in await highlevel(stack, "status", user=OTHER_USER)


async def test_admin_slack_users_may_link_too(database_url: str) -> None:
    overrides = {"admin_slack_users": OTHER_USER}
    async with await several_accounts_stack(
        database_url, admins=(), settings_overrides=overrides
    ) as stack:
        refusal = await highlevel(stack, "link Sandbox Dental", user=AGENT_USER)
        assert f"<@{OTHER_USER}> (`ADMIN_SLACK_USERS`)" in refusal
        answer = await highlevel(stack, "link Sandbox Dental", user=OTHER_USER)
        assert "is now linked to" in answer
        assert await links(stack) == {SALES_CHANNEL: stack.highlevel.location_ids[0]}


async def test_inbox_needs_a_link_when_several_then_new_conversations_open_there(
    database_url: str,
) -> None:
    async with await several_accounts_stack(database_url) as stack:
        first = stack.highlevel.location_ids[0]
        need = await highlevel(stack, "inbox")
        assert "link it first" in need.lower() and "/highlevel link" in need
        await highlevel(stack, f"link {first}")
        done = await highlevel(stack, "inbox")
        assert f"now open their threads in <#{SALES_CHANNEL}>" in done
        async with stack_store(stack) as store:
            record = await store.get_location(first)
        assert record is not None and record.inbox_channel_id == SALES_CHANNEL

        # A customer writing for the first time: the thread opens in #sales, not #inbox.
        await stack.highlevel.customer_reply(ADA_LOVELACE_ID, "SMS", "Do you open on Sunday?")
        root = await eventually(
            lambda: [n for n in bot_notes(stack, SALES_CHANNEL) if "New conversation" in n]
        )
        assert "Do you open on Sunday?" in root[0]
        assert bot_notes(stack, INBOX_CHANNEL) == []


async def test_inbox_with_one_sub_account_needs_no_link(database_url: str) -> None:
    async with await several_accounts_stack(database_url, locations=1) as stack:
        done = await highlevel(stack, "inbox")
        assert f"<#{SALES_CHANNEL}>" in done and "Sandbox Dental" in done


async def test_status_shows_every_sub_account_and_no_token(database_url: str) -> None:
    async with await several_accounts_stack(
        database_url, disconnected={"3": "the app was uninstalled"}
    ) as stack:
        first, second, third = stack.highlevel.location_ids
        await highlevel(stack, f"link {second}")
        await highlevel(stack, "inbox")
        status = await highlevel(stack, "status")
        assert "2 connected, 1 disconnected" in status
        for location in (first, second, third):
            assert location in status and stack.highlevel.location_name(location) in status
        assert "Private Integration Token" in status
        assert "Disconnected" in status and "the app was uninstalled" in status
        assert f"Linked channels: <#{SALES_CHANNEL}>" in status
        assert f"Inbox: <#{SALES_CHANNEL}>" in status  # second's own inbox
        assert f"Inbox: <#{INBOX_CHANNEL}> (`SLACK_INBOX_CHANNEL`)" in status  # the others'
        assert "Last webhook never" in status
        for location in (first, second, third):
            assert stack.highlevel.pit_for(location) not in status
        assert stack.highlevel.token not in status
