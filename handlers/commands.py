"""Slash commands: `/sendsms` (quick send or composer) and `/sendemail` (composer, Email)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.compose import ComposeContext, Draft, FieldErrors, check_draft
from bot.deps import Deps
from bot.highlevel import HighLevelError, MessageChannel
from bot.outbound import NOT_SAVED, SlackOrigin
from bot.outbound.intents import Notice, QuickSendIntent
from bot.recipients import RecipientError, RecipientKind, split_recipient
from bot.ui.help_builder import usage_blocks, usage_text
from bot.ui.notice_builder import error_notice
from bot.ui.quick_send_builder import contact_choices_notice
from handlers.compose_view import enrich_composer, open_composer, sub_account_choices

log = logging.getLogger(__name__)

HELP_WORDS = frozenset({"help", "-h", "--help", "?"})
# How long the ack waits for the quick send's intent to be saved (normally a millisecond).
# A database slower than this does not make Slack's 3 s window pass: the ack goes out and
# the person learns the outcome in a moment.
INTENT_SAVE_WAIT_SECONDS = 2.0
# How long the person's notice may take to reach Slack: what Bolt's respond() allows.
RESPOND_TIMEOUT_SECONDS = 30.0
# A name in a quick send is looked up before the ack, inside Slack's 3 s.
NAME_LOOKUP_SECONDS = 2.0
NAME_LOOKUP_SLOW = (
    "HighLevel took too long to look that name up, so nothing was sent. Use the customer's "
    "number or email, or open the composer with `/sendsms` and search there."
)


def register(app: AsyncApp, deps: Deps) -> None:
    """Attach the slash-command listeners."""
    region = deps.settings.phone_default_region

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
            await compose(deps, client, command, Draft())
            return
        try:
            recipient, message = split_recipient(text, region)
        except RecipientError as exc:
            await by_name(deps, ack, command, respond, client, text, exc)
            return
        is_email = recipient.kind is RecipientKind.EMAIL
        if not message or is_email:
            # An email needs a subject, so it always goes through the composer.
            await ack()
            channel = MessageChannel.EMAIL if is_email else MessageChannel.SMS
            await compose(
                deps,
                client,
                command,
                Draft(recipient=recipient.value, channel=channel, message=message),
            )
            return
        await quick_send(
            deps, ack, command, respond, Draft(recipient=recipient.value, message=message), client
        )

    @app.command("/sendemail")
    async def sendemail(ack: AsyncAck, command: dict[str, Any], client: AsyncWebClient) -> None:
        text = command.get("text", "").strip()
        if text.lower() in HELP_WORDS:
            await ack(
                text=usage_text("/sendemail"), blocks=usage_blocks(), response_type="ephemeral"
            )
            return
        await ack()
        await compose(deps, client, command, Draft(recipient=text, channel=MessageChannel.EMAIL))


async def compose(
    deps: Deps, client: AsyncWebClient, command: dict[str, Any], draft: Draft
) -> None:
    """Open the composer, then fill in what needs look-ups (the contact, the signature)."""
    context = ComposeContext(channel_id=command["channel_id"])
    origin = SlackOrigin(
        team_id=command.get("team_id", ""),
        channel_id=command["channel_id"],
        user_id=command["user_id"],
    )
    # Several sub-accounts and an unlinked channel: the composer asks which one.
    choices = await sub_account_choices(deps, origin.team_id, origin.channel_id, context)
    opened = await open_composer(
        client, command["trigger_id"], draft, context, sub_accounts=choices
    )
    if opened:
        await enrich_composer(deps, client, opened, draft, context, origin, sub_accounts=choices)


async def quick_send(
    deps: Deps,
    ack: AsyncAck,
    command: dict[str, Any],
    respond: AsyncRespond,
    draft: Draft,
    client: AsyncWebClient,
) -> None:
    """`/sendsms <recipient> <message>`: saved before the ack, then queued, and the person told.

    The intent is saved before `ack()`: once Slack has its 200 the send survives a stop or a
    crash of this process (the next start finishes it and tells the person).
    """
    checked = check_draft(draft, now=time.time(), region=deps.settings.phone_default_region)
    if isinstance(checked, FieldErrors):
        await ack(text=" ".join(checked.errors.values()), response_type="ephemeral")
        return
    intent = QuickSendIntent(
        key=f"command:{command['trigger_id']}",
        origin=SlackOrigin(
            team_id=command.get("team_id", ""),
            channel_id=command["channel_id"],
            user_id=command["user_id"],
        ),
        draft=draft,
        response_url=command.get("response_url") or None,
    )
    recording = await deps.intents.record(intent, wait=INTENT_SAVE_WAIT_SECONDS)
    if recording.refused:
        text, blocks = error_notice(f"Couldn't send to {draft.recipient}", NOT_SAVED)
        await ack(text=text, blocks=blocks, response_type="ephemeral")
        return
    await ack()
    notice = await deps.intents.finish(intent, recording=recording, announce_queued=True)
    if notice is not None:
        await tell(client, respond, notice)


async def by_name(
    deps: Deps,
    ack: AsyncAck,
    command: dict[str, Any],
    respond: AsyncRespond,
    client: AsyncWebClient,
    text: str,
    not_an_address: RecipientError,
) -> None:
    """`/sendsms Ada Lovelace Running late`: the contact named at the start of the text.

    One match sends; several are held (saved, nothing sent) for the person to pick from;
    none, or a HighLevel too slow to say, answers how to name the customer instead.
    """
    origin = SlackOrigin(
        team_id=command.get("team_id", ""),
        channel_id=command["channel_id"],
        user_id=command["user_id"],
    )
    location_id = await deps.outbound.quick_location(origin)
    if location_id is None:
        await ack(text=f"{not_an_address} Try `/sendsms help`.", response_type="ephemeral")
        return
    try:
        match = await asyncio.wait_for(deps.assist.named(location_id, text), NAME_LOOKUP_SECONDS)
    except (HighLevelError, TimeoutError):
        await ack(text=NAME_LOOKUP_SLOW, response_type="ephemeral")
        return
    if not match.contacts:
        await ack(
            text=f"{not_an_address} No contact has that name either. Try `/sendsms help`.",
            response_type="ephemeral",
        )
        return
    if not match.rest.strip():
        await ack()
        contact = match.contacts[0]
        if len(match.contacts) == 1:
            await compose(deps, client, command, Draft(recipient=contact.id))
        else:
            await compose(deps, client, command, Draft())
        return
    draft = Draft(message=match.rest.strip(), location_id=location_id)
    if len(match.contacts) == 1:
        await quick_send(
            deps,
            ack,
            command,
            respond,
            dataclasses.replace(draft, recipient=match.contacts[0].id),
            client,
        )
        return
    intent = QuickSendIntent(
        key=f"command:{command['trigger_id']}",
        origin=origin,
        draft=draft,
        response_url=command.get("response_url") or None,
    )
    if not await deps.intents.hold(intent):
        text, blocks = error_notice("Couldn't send it", NOT_SAVED)
        await ack(text=text, blocks=blocks, response_type="ephemeral")
        return
    name = " ".join(text.split()[: len(text.split()) - len(match.rest.split())])
    await ack()
    # Through the response_url, as the send's own notices go: its buttons answer there.
    notice = Notice(*contact_choices_notice(name, match.contacts, intent.key))
    await tell(client, respond, notice)


async def tell(client: AsyncWebClient, respond: AsyncRespond, notice: Notice) -> None:
    """The person's ephemeral notice, through the command's response_url.

    Bolt's respond() opens an HTTP session of its own for each call: a new connection (and,
    to Slack, a TLS handshake) for every quick send. The Web API client's session keeps its
    connections open, so the notice goes through that instead, as respond() would send it.
    """
    if respond.response_url is None:
        await respond(text=notice.text, blocks=notice.blocks, response_type="ephemeral")
        return
    webhook = AsyncWebhookClient(
        respond.response_url, proxy=respond.proxy, ssl=respond.ssl, session=client.session
    )
    # A shared session has no timeout of its own per request: the one respond() would have.
    async with asyncio.timeout(RESPOND_TIMEOUT_SECONDS):
        await webhook.send(text=notice.text, blocks=notice.blocks, response_type="ephemeral")
