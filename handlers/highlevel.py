"""`/highlevel`: connect sub-accounts, link channels to them, choose inboxes and default From
addresses, see their status."""

from __future__ import annotations

import logging
import time
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import Block
from slack_sdk.web.async_client import AsyncWebClient

from bot.compose.draft import one_address
from bot.deps import Deps
from bot.recipients import RecipientError
from bot.settings import listed
from bot.tenancy.admin import SubAccountAdmin
from bot.ui.highlevel_builder import (
    admin_check_failed_message,
    admins_only_message,
    ambiguous_account_message,
    claim_first_message,
    connect_message,
    failure_message,
    inbox_message,
    link_announcement,
    link_first_message,
    linked_message,
    none_connected_message,
    sender_invalid_message,
    sender_message,
    status_message,
    taken_message,
    unknown_account_message,
    unknown_subcommand_message,
    usage_message,
)
from storage import StoreError

log = logging.getLogger(__name__)

HELP_WORDS = frozenset({"", "help", "-h", "--help", "?"})
ADMIN_ONLY = frozenset({"link", "inbox", "from"})  # `from` alone only shows: anyone may
CLEAR_WORD = "clear"
Message = tuple[str, list[Block]]


class AdminCheckFailed(Exception):
    """Slack did not say whether the person is an admin."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


async def is_workspace_admin(client: AsyncWebClient, user_id: str) -> bool:
    """The person is an admin or owner of the Slack workspace (users.info)."""
    try:
        response = await client.users_info(user=user_id)
    except SlackApiError as exc:
        raise AdminCheckFailed(str(exc.response.get("error") or "unknown_error")) from None
    user = response.get("user") or {}
    return bool(user.get("is_admin") or user.get("is_owner") or user.get("is_primary_owner"))


def register(app: AsyncApp, deps: Deps) -> None:
    """Attach the `/highlevel` listener."""
    settings = deps.settings
    install_url = f"{settings.public_url}/ghl/install" if settings.oauth_enabled else None
    admin = SubAccountAdmin(deps.routing, deps.accounts)

    async def may_change(client: AsyncWebClient, team_id: str, user_id: str) -> bool:
        if listed(settings.admin_slack_users, team_id, user_id):
            return True
        return await is_workspace_admin(client, user_id)

    async def link(command: dict[str, Any], query: str, client: AsyncWebClient) -> Message:
        team, channel, user = command.get("team_id", ""), command["channel_id"], command["user_id"]
        # An empty query too: the sub-accounts it lists are the ones this workspace may see.
        outcome = await admin.link(team, channel, query, user_id=user)
        if outcome.kind == "none_connected":
            return none_connected_message(install_url)
        if outcome.kind == "taken":
            return taken_message()
        if outcome.kind == "ambiguous":
            return ambiguous_account_message(query, outcome.choices)
        if outcome.kind == "unknown" or outcome.record is None:
            return unknown_account_message(query, outcome.choices)
        announced = outcome.already
        if not outcome.already:
            text, blocks = link_announcement(user, outcome.record)
            try:
                await client.chat_postMessage(channel=channel, text=text, blocks=blocks)
                announced = True
            except SlackApiError as exc:
                log.info("could not announce a link in %s: %s", channel, exc.response.get("error"))
        log.info(
            "channel %s linked to sub-account %s by %s", channel, outcome.record.location_id, user
        )
        return linked_message(
            outcome.record,
            channel,
            previous=outcome.previous,
            already=outcome.already,
            announced=announced,
        )

    async def inbox(command: dict[str, Any]) -> Message:
        team, channel = command.get("team_id", ""), command["channel_id"]
        outcome = await admin.set_inbox(team, channel)
        if outcome.kind == "link_first":
            return link_first_message(outcome.choices)
        if outcome.kind == "claim_first":
            return claim_first_message(outcome.choices)
        if outcome.kind == "taken":
            return taken_message()
        if outcome.kind == "none_connected" or outcome.record is None:
            return none_connected_message(install_url)
        log.info(
            "channel %s is the inbox of sub-account %s now (set by %s)",
            channel,
            outcome.record.location_id,
            command["user_id"],
        )
        return inbox_message(outcome.record, channel)

    async def sender(command: dict[str, Any], text: str) -> Message:
        """`/highlevel from`: show (no `text`), set or clear the default From address."""
        team, channel = command.get("team_id", ""), command["channel_id"]
        wanted = text.strip()
        address: str | None = None
        if wanted and wanted.lower() != CLEAR_WORD:
            try:
                address = one_address(wanted)
            except RecipientError as exc:
                return sender_invalid_message(str(exc))
            if address is None:
                return sender_invalid_message("no address was given.")
        outcome = await admin.default_sender(team, channel, change=bool(wanted), email_from=address)
        if outcome.kind == "link_first":
            return link_first_message(outcome.choices, "from")
        if outcome.kind == "claim_first":
            return claim_first_message(outcome.choices, "from")
        if outcome.kind == "taken":
            return taken_message()
        if outcome.kind == "none_connected" or outcome.record is None:
            return none_connected_message(install_url)
        if outcome.kind != "shown":
            # Never the address itself at INFO: it is a person's.
            log.info(
                "default From of sub-account %s %s by %s",
                outcome.record.location_id,
                outcome.kind,
                command["user_id"],
            )
        return sender_message(outcome.record, changed=outcome.kind != "shown")

    async def answer(command: dict[str, Any], client: AsyncWebClient) -> Message:
        word, _, rest = command.get("text", "").strip().partition(" ")
        sub = word.lower()
        if sub in HELP_WORDS:
            return usage_message()
        if sub == "connect":
            return connect_message(install_url)
        if sub == "status":
            overview = await admin.overview(command.get("team_id", ""))
            return status_message(overview, now=time.time())
        if sub == "from" and not rest.strip():
            return await sender(command, "")
        if sub not in ADMIN_ONLY:
            return unknown_subcommand_message(word)
        try:
            allowed = await may_change(client, command.get("team_id", ""), command["user_id"])
        except AdminCheckFailed as exc:
            return admin_check_failed_message(exc.error)
        if not allowed:
            return admins_only_message(sub, settings.admin_slack_users)
        if sub == "link":
            return await link(command, rest, client)
        if sub == "from":
            return await sender(command, rest)
        return await inbox(command)

    @app.command("/highlevel")
    async def highlevel(ack: AsyncAck, command: dict[str, Any], client: AsyncWebClient) -> None:
        try:
            text, blocks = await answer(command, client)
        except StoreError as exc:
            log.warning("/highlevel could not reach the database: %s", exc)
            text, blocks = failure_message(
                "The bridge's database did not answer, so nothing was changed."
            )
        except Exception:
            # A person gets a sentence, never a stack trace; the log keeps the trace.
            log.exception("/highlevel failed")
            text, blocks = failure_message(
                "Something went wrong in the bridge; nothing was changed."
            )
        await ack(text=text, blocks=blocks, response_type="ephemeral")
