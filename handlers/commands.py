"""Slash commands: `/sendsms` (quick send or composer) and `/sendemail` (composer, Email)."""

from __future__ import annotations

import logging
import time
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.compose import ComposeContext, Draft, FieldErrors, check_draft, contact_label
from bot.deps import Deps
from bot.highlevel import MessageChannel
from bot.outbound import ComposeRejected, NotInChannelError, SlackOrigin
from bot.recipients import RecipientError, RecipientKind, split_recipient
from bot.ui.help_builder import usage_blocks, usage_text
from bot.ui.notice_builder import error_notice, not_in_channel_notice, queued_notice
from handlers.compose import narrow_to_contact, open_composer

log = logging.getLogger(__name__)

HELP_WORDS = frozenset({"help", "-h", "--help", "?"})


def register(app: AsyncApp, deps: Deps) -> None:
    """Attach the slash-command listeners."""
    region = deps.settings.phone_default_region

    async def compose(client: AsyncWebClient, command: dict[str, Any], draft: Draft) -> None:
        context = ComposeContext(channel_id=command["channel_id"])
        view_id = await open_composer(client, command["trigger_id"], draft, context)
        if view_id and draft.recipient:
            await narrow_to_contact(deps, client, view_id, draft, context)

    @app.command("/sendsms")
    async def sendsms(
        ack: AsyncAck, command: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond
    ) -> None:
        text = command.get("text", "").strip()
        if text.lower() in HELP_WORDS:
            await ack(text=usage_text(), blocks=usage_blocks(), response_type="ephemeral")
            return
        if not text:
            await ack()
            await compose(client, command, Draft())
            return
        try:
            recipient, message = split_recipient(text, region)
        except RecipientError as exc:
            await ack(text=f"{exc} Try `/sendsms help`.", response_type="ephemeral")
            return
        is_email = recipient.kind is RecipientKind.EMAIL
        if not message or is_email:
            # An email needs a subject, so it always goes through the composer.
            await ack()
            channel = MessageChannel.EMAIL if is_email else MessageChannel.SMS
            await compose(
                client, command, Draft(recipient=recipient.value, channel=channel, message=message)
            )
            return
        await ack()
        await quick_send(deps, command, respond, Draft(recipient=recipient.value, message=message))

    @app.command("/sendemail")
    async def sendemail(ack: AsyncAck, command: dict[str, Any], client: AsyncWebClient) -> None:
        text = command.get("text", "").strip()
        if text.lower() in HELP_WORDS:
            await ack(
                text=usage_text("/sendemail"), blocks=usage_blocks(), response_type="ephemeral"
            )
            return
        await ack()
        await compose(client, command, Draft(recipient=text, channel=MessageChannel.EMAIL))


async def quick_send(
    deps: Deps, command: dict[str, Any], respond: AsyncRespond, draft: Draft
) -> None:
    """`/sendsms <recipient> <message>`: after the ack, queue the SMS and say what happened."""
    checked = check_draft(draft, now=time.time(), region=deps.settings.phone_default_region)
    if isinstance(checked, FieldErrors):
        await respond(text=" ".join(checked.errors.values()), response_type="ephemeral")
        return
    origin = SlackOrigin(
        team_id=command.get("team_id", ""),
        channel_id=command["channel_id"],
        user_id=command["user_id"],
    )
    try:
        submitted = await deps.outbound.submit(
            checked, origin, idempotency_key=f"command:{command['trigger_id']}"
        )
    except NotInChannelError:
        text, blocks = not_in_channel_notice(command["channel_id"])
        await respond(text=text, blocks=blocks, response_type="ephemeral")
        return
    except ComposeRejected as exc:
        text, blocks = error_notice(f"Couldn't send to {draft.recipient}", exc.message)
        await respond(text=text, blocks=blocks, response_type="ephemeral")
        return
    if submitted.created:
        text, blocks = queued_notice(
            contact_label(submitted.contact),
            checked.channel,
            created_contact=submitted.contact_created,
        )
        await respond(text=text, blocks=blocks, response_type="ephemeral")
